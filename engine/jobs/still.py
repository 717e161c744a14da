"""A still job: every frame through the network at once, into a result bundle with per-view depth.

``decode``       frames are decoded one at a time and each is shrunk at once by DA3's per-image resize
                 (``stages.decode``), so a large photo set never sits in memory at full size (the resize
                 time is counted as ``preprocess``);
``load``         the model, through ``context.model_for`` (the worker keeps it loaded between jobs);
``preprocess``,
``network``,
``postprocess``  ``pipeline.predict`` on the shrunk frames, with the known cameras when the job has them;
                 with ``metric`` and a relative model, the metric model runs on the same frames and
                 scales the result (``metric`` stage);
``fuse``         with the ``mesh`` export: the depth maps fused into one mesh (``meshing.fuse_stage``);
``export``       the optional files (``exports``), then reconstruction.npz, then the manifest
                 (``stages.export``); ``export.<name>`` times each file on its own.

Resizing before ``predict`` gives exactly DA3's preprocessing: each frame is already at its final
per-image size, so ``predict`` (asked for that size) only applies the batch crop of mixed sizes.
Both steps' ``ImageTransform`` are composed, so ``intrinsics_original`` maps to the original pixels.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import UserError
from ..geometry.metric_scale import scale_prediction
from ..process.protocol import JobOptions, ReconstructRequest
from .cameras_file import KnownCameras, read_cameras
from .context import Context
from .exports import JobResult
from .meshing import DepthBlock, fuse_stage
from .stages import (
    Frames,
    Stages,
    batch_side,
    bundle_meta,
    decode,
    export,
    job_summary,
    load_model,
    metric_needed,
    metric_scale,
    open_output,
    per_view_arrays,
    refuse_non_finite,
    unprocess,
)

__all__ = ["run_still"]


def run_still(request: ReconstructRequest, context: Context, started: float) -> dict[str, Any]:
    """Run a still job into ``request.output``; returns the summary for ``finished``."""
    options = request.options
    cameras = read_cameras(options.cameras) if options.cameras else None
    with open_output(request) as target:
        stages = Stages(context)
        frames = decode(request, context, stages)
        if cameras is not None:
            cameras.check_count(len(frames.refs))
        model = load_model(request, context, stages)
        prediction = _predict(model, frames, cameras, options, stages)
        refuse_non_finite(frames.refs, prediction.extrinsics, prediction.intrinsics, prediction.depth)
        prediction = _metric(prediction, frames, request, context, stages)
        for note in prediction.notes:
            context.log("warning", note)
        prediction, k_original = _to_original(prediction, frames)
        result = JobResult(request, frames.refs, frames.original_sizes, prediction, k_original)
        frames.images.clear()  # the shrunk frames are no longer needed (the prediction keeps its own copy)
        p = result.prediction
        if "mesh" in options.exports:
            block = DepthBlock(p.depth, p.extrinsics, p.intrinsics, p.processed_images, p.conf, p.sky)
            result.mesh = fuse_stage([block], len(p.depth), options, context, stages, p.units)
        meta = bundle_meta(
            request,
            is_metric=p.is_metric,
            units=p.units,
            scale_factor=p.scale_factor,
            ref_view_idx=p.ref_view_idx,
        )
        files = export(target, result, context, stages, _bundle_arrays, meta)
    summary = job_summary(
        request,
        target.out,
        meta,
        views=len(p.depth),
        image_hw=p.depth.shape[1:],
        model_name=p.model_name,
        ref_view=p.ref_view_idx,
        files=files,
        stages=stages,
        started=started,
    )
    context.result(files, summary)
    return summary


def _predict(model, frames: Frames, cameras: KnownCameras | None, options: JobOptions, stages: Stages):
    from ..pipeline import predict  # torch: imported when a job runs, not when this module loads

    given: dict[str, np.ndarray] = {}
    if cameras is not None:
        if cameras.extrinsics is None and getattr(model, "predicts_cameras", True):
            raise UserError(
                f"The cameras file {cameras.path} has intrinsics only; this model predicts poses, so it "
                "needs 'extrinsics' too (or leave out the cameras file)."
            )
        given["intrinsics"] = np.stack(
            [t.apply_to_intrinsics(k) for t, k in zip(frames.transforms, cameras.intrinsics, strict=True)]
        )
        if cameras.extrinsics is not None:
            given["extrinsics"] = cameras.extrinsics
    return predict(
        model,
        frames.images,
        process_res=batch_side(frames.transforms, options.process_res_method),
        process_res_method=options.process_res_method,
        ref_view_strategy=options.ref_view_strategy,
        use_ray_pose=options.use_ray_pose,
        infer_gs=options.infer_gs,
        seed=options.seed,
        on_stage=stages.begin,
        on_step=stages.steps("network"),
        **given,
    )


def _metric(prediction, frames: Frames, request: ReconstructRequest, context: Context, stages: Stages):
    """With ``metric``: scale a relative prediction to metres with the metric model (see metric_scale)."""
    options = request.options
    if not metric_needed(options, prediction.units, prediction.model_name, context):
        return prediction
    k_shrunk = unprocess(prediction.transforms, prediction.intrinsics)  # in pixels both models see
    scale, sky = metric_scale(
        frames.images,
        frames.transforms,
        k_shrunk,
        prediction.depth,
        prediction.conf,
        options,
        context,
        stages,
    )
    return scale_prediction(prediction, scale, sky=sky)


def _to_original(prediction, frames: Frames) -> tuple[Any, np.ndarray]:
    """Compose the per-frame resize with predict's batch crop; returns (prediction, intrinsics_original)."""
    transforms = []
    for first, second in zip(frames.transforms, prediction.transforms, strict=True):
        if second.original_hw != first.final_hw or second.divisible_hw != first.final_hw:
            raise RuntimeError(f"predict resized a pre-sized frame again: {first} then {second}")
        transforms.append(
            replace(first, batch_crop_offset_yx=second.batch_crop_offset_yx, final_hw=second.final_hw)
        )
    k_original = unprocess(transforms, prediction.intrinsics).astype(np.float32)
    return replace(prediction, transforms=tuple(transforms)), k_original


def _bundle_arrays(r: JobResult) -> dict[str, Any]:
    """A still bundle's arrays: per-view images, depth, confidence, sky and cameras (and Gaussians)."""
    p = r.prediction
    arrays: dict[str, Any] = {
        "images": p.processed_images,
        "depth": p.depth,
        "conf": p.conf,
        "sky": p.sky,
        "extrinsics": p.extrinsics,
        "intrinsics": p.intrinsics,
        **per_view_arrays(r),
    }
    g = p.gaussians
    if g is not None:
        gs_keys = ("gs_means", "gs_scales", "gs_rotations", "gs_harmonics", "gs_opacities")
        arrays.update(zip(gs_keys, (g.means, g.scales, g.rotations, g.harmonics, g.opacities), strict=True))
    return arrays
