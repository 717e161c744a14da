"""One reconstruction job, from a ``ReconstructRequest`` to a finished result bundle.

The engine process (``worker``) and the command line (``cli``) both call ``run_reconstruct`` with
their own context: progress events on the pipe, or a progress bar on stderr. Stages, each timed and
reported as ``progress(stage, current, total)``:

``decode``       frames are decoded one at a time (``inputs.load_frames``) and each is shrunk at once
                 by DA3's per-image resize, so a long 4K shot never sits in memory at full size (the
                 resize time is counted as ``preprocess``);
``load``         the model, through ``context.model_for`` (the worker keeps it loaded between jobs);
``preprocess``,
``network``,
``postprocess``  ``pipeline.predict`` on the shrunk frames; with ``metric`` and a relative model, the
                 metric model runs on the same frames and scales the result (``metric`` stage);
``export``       the optional files (``job_exports``), then reconstruction.npz, then the manifest
                 (``BundleWriter``); ``export.<name>`` times each file on its own.

Resizing before ``predict`` gives exactly DA3's preprocessing: each frame is already at its final
per-image size, so ``predict`` (asked for that size) only applies the batch crop of mixed sizes.
Both steps' ``ImageTransform`` are composed, so ``intrinsics_original`` maps to the original pixels.

Cancel is checked before every frame, between stages and between exported files; it raises
``JobCancelled`` before the manifest is written, so a cancelled job's folder never reads as a
finished bundle. Problems the user can fix raise ``UserError`` saying what to do.

A video shot (one video input, or any frames with ``chunk_size`` set; see ``shot_job.is_shot_request``)
goes through the network in overlapping chunks instead and writes a shot bundle (``shot_job``).
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import JobCancelled, UserError
from ..formats.bundle import BundleWriter
from ..geometry.metric_scale import MetricScaleError, fit_scale, scale_prediction
from ..io.imaging import ImageReadError
from ..io.inputs import Cancelled, FrameRef, load_frames
from ..model.presets import METRIC_PRESETS, NESTED_PRESET, PRESETS
from ..preprocess import ImageTransform, preprocess_images, process_res_note
from ..process.protocol import JobOptions, ReconstructRequest
from .exports import EXPORTERS, NOT_AVAILABLE, JobResult

__all__ = ["Context", "KnownCameras", "read_cameras", "run_reconstruct"]


class Context(Protocol):
    """What a job needs from its runner (``worker.JobContext``, ``cli.CliContext``)."""

    job: str

    def model_for(self, source: str, device: str = "auto", dtype: str = "auto") -> Any: ...
    def progress(self, stage: str, current: int, total: int, message: str = "") -> None: ...
    def log(self, level: str, message: str) -> None: ...
    def result(self, files: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> None: ...
    def cancelled(self) -> bool: ...
    def check_cancel(self) -> None: ...


def run_reconstruct(request: ReconstructRequest, context: Context) -> dict[str, Any]:
    """Run one job and write its bundle into ``request.output``; returns the summary for ``finished``."""
    started = time.perf_counter()
    options = request.options
    _check_options(options, context)
    from . import shot as shot_job  # it builds on this module's stages

    if shot_job.is_shot_request(request):
        return shot_job.run_shot(request, context)
    cameras = read_cameras(options.cameras) if options.cameras else None
    folder = _output_folder(request.output)
    stages = _Stages(context)

    frames = _decode(request, context, stages)
    if cameras is not None:
        cameras.check_count(len(frames.refs))
    model = _load_model(request, context, stages)
    prediction = _predict(model, frames, cameras, options, stages)
    prediction = _metric(prediction, frames, request, context, stages)
    for note in prediction.notes:
        context.log("warning", note)
    prediction, k_original = _to_original(prediction, frames)
    result = JobResult(request, frames.refs, frames.original_sizes, prediction, k_original)
    frames.images.clear()  # the shrunk frames are no longer needed (the prediction keeps its own copy)

    files = _export(folder, result, context, stages)
    p = result.prediction
    n, h, w = p.depth.shape
    summary = {
        "views": n,
        "height": h,
        "width": w,
        "units": p.units,
        "is_metric": bool(p.is_metric),
        "scale_factor": p.scale_factor,
        "model": request.model,
        "model_name": p.model_name,
        "ref_view": p.ref_view_idx,
        "output": str(folder),
        "files": files,
        "timings": {name: round(s, 4) for name, s in stages.seconds.items()},
        "seconds": round(time.perf_counter() - started, 3),
    }
    context.result(files, summary)
    return summary


# --- checks before any work -----------------------------------------------------------------------------


def _check_options(options: JobOptions, context: Context) -> None:
    for name in options.exports:
        if name in NOT_AVAILABLE:
            raise UserError(f"The '{name}' export cannot be made: {NOT_AVAILABLE[name]}.")
    if options.metric and options.cameras:
        raise UserError(
            "Known cameras already fix the units of the result, so 'metric' cannot rescale it: "
            "turn off 'metric', or leave out the cameras file."
        )
    note = process_res_note(options.process_res, options.process_res_method)
    if note:
        context.log("info", note)


def _output_folder(path: str) -> Path:
    """The output folder, checked before any work (it is created only when the result is written)."""
    folder = Path(path).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"The output '{folder}' is a file, not a folder. Choose a folder for the result.")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"Cannot write the output folder '{folder}' ('{existing}' is not writable). "
            "Choose a folder you can write to."
        )
    return folder


@dataclass(frozen=True)
class KnownCameras:
    """Cameras the user already has (a solve from another tool, a calibrated rig), one per frame."""

    path: str
    intrinsics: np.ndarray  # (N, 3, 3) float64, pixels of the ORIGINAL images
    extrinsics: np.ndarray | None  # (N, 4, 4) float64 world-to-camera, OpenCV; None: intrinsics only

    def check_count(self, frames: int) -> None:
        if len(self.intrinsics) != frames:
            raise UserError(
                f"The cameras file {self.path} has {len(self.intrinsics)} cameras but the job has {frames} "
                "frames. Give one camera per frame, in frame order (check the frame range, and that no "
                "image was skipped)."
            )


_CAMERAS_HELP = (
    "It needs 'intrinsics' (N, 3, 3) in pixels of the original images and 'extrinsics' (N, 4, 4) or "
    "(N, 3, 4) world-to-camera matrices with OpenCV axes (x right, y down, z forward)."
)


def read_cameras(path: str) -> KnownCameras:
    """Read and check a known-cameras file: ``.npz`` or ``.json`` with ``intrinsics`` and ``extrinsics``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(
            f"The cameras file '{p}' does not exist. Choose a .npz or .json file. {_CAMERAS_HELP}"
        )
    if p.suffix.lower() not in (".npz", ".json"):
        raise UserError(f"The cameras file '{p.name}' must be a .npz or .json file. {_CAMERAS_HELP}")

    def bad(problem: str) -> UserError:
        return UserError(f"The cameras file '{p}' {problem}. {_CAMERAS_HELP}")

    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as npz:
                data = {key: npz[key] for key in npz.files}
        else:
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise bad("holds no JSON object")
        arrays = {
            key: np.asarray(data[key], np.float64) for key in ("intrinsics", "extrinsics") if key in data
        }
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise bad(f"cannot be read ({exc})") from None
    k = arrays.get("intrinsics")
    if k is None:
        raise bad("has no 'intrinsics'")
    if k.ndim != 3 or k.shape[1:] != (3, 3) or not len(k):
        raise bad(f"has 'intrinsics' of shape {k.shape}, not (N, 3, 3)")
    if not np.isfinite(k).all() or (k[:, 0, 0] <= 0).any() or (k[:, 1, 1] <= 0).any():
        raise bad("has intrinsics with non-finite or non-positive focal lengths")
    if not np.allclose(k[:, 2], [0.0, 0.0, 1.0]):
        raise bad("has intrinsics whose last row is not [0, 0, 1]")
    e = arrays.get("extrinsics")
    if e is not None:
        if e.ndim != 3 or e.shape[1:] not in ((3, 4), (4, 4)) or len(e) != len(k):
            raise bad(f"has 'extrinsics' of shape {e.shape} for {len(k)} intrinsics")
        rot = e[:, :3, :3]
        orthonormal = np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-4)
        if not np.isfinite(e).all() or not orthonormal or (np.linalg.det(rot) <= 0).any():
            raise bad("has extrinsics whose rotation part is not a rotation (scaled, mirrored or not finite)")
        e4 = np.tile(np.eye(4), (len(e), 1, 1))
        e4[:, :3, :] = e[:, :3, :]
        e = e4
    return KnownCameras(str(p), k, e)


# --- stages -------------------------------------------------------------------------------------------


class _Stages:
    """Stage timings in seconds, and the progress event that opens each stage (after a cancel check)."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.seconds: dict[str, float] = {}
        self._open: tuple[str, float] | None = None

    def begin(self, name: str, total: int = 1, message: str = "") -> None:
        self.end()
        self.context.check_cancel()
        self._open = (name, time.perf_counter())
        self.context.progress(name, 0, total, message)

    def end(self) -> None:
        if self._open is not None:
            name, t0 = self._open
            self.add(name, time.perf_counter() - t0)
            self._open = None

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


@dataclass
class _Frames:
    images: list[np.ndarray]  # (h_i, w_i, 3) uint8 after DA3's per-image resize
    transforms: list[ImageTransform]  # original pixels → those pixels, per frame
    refs: list[FrameRef]  # where each frame came from
    original_sizes: np.ndarray  # (N, 2) int64 (H, W) as decoded


def _decode(
    request: ReconstructRequest,
    context: Context,
    stages: _Stages,
    spill: Callable[[np.ndarray], Any] | None = None,
) -> _Frames:
    """Decode and shrink every frame. ``spill(shrunk)`` (optional) takes each shrunk frame away (e.g. to
    a file) and returns what ``_Frames.images`` keeps in its place, so a long shot never sits in memory."""
    options = request.options
    transforms: list[ImageTransform] = []
    resize_seconds = 0.0

    def shrink(image: np.ndarray) -> Any:
        nonlocal resize_seconds
        t0 = time.perf_counter()
        batch, (transform,) = preprocess_images([image], options.process_res, options.process_res_method)
        transforms.append(transform)
        resize_seconds += time.perf_counter() - t0
        return batch[0] if spill is None else spill(batch[0])

    stages.begin("decode", 0, "Reading the inputs")
    try:
        loaded = load_frames(
            list(request.inputs),
            frames=options.frames or (0, None, 1),
            target_fps=options.target_fps,
            positions_fps=options.frame_positions_fps,
            skip_unreadable=options.skip_unreadable,
            should_cancel=context.cancelled,
            on_progress=lambda done, total, message: context.progress("decode", done, total, message),
            transform=shrink,
        )
    except Cancelled:
        raise JobCancelled() from None
    except ValueError as exc:  # InputError (paths, frames, unreadable files), or too thin to crop
        hint = ""
        if isinstance(exc.__cause__, ImageReadError) and not options.skip_unreadable:
            hint = " Or turn on skipping unreadable images to go on without it."
        raise UserError(f"{exc}{hint}") from None
    stages.end()
    stages.add("decode", -resize_seconds)
    stages.add("preprocess", resize_seconds)
    for warning in loaded.warnings:
        context.log("warning", warning)
    return _Frames(loaded.images, transforms, loaded.refs, loaded.original_sizes)


def _has_gaussian_head(model_name: str) -> bool:
    return model_name == NESTED_PRESET or (model_name in PRESETS and PRESETS[model_name].gaussians)


def _load_model(request: ReconstructRequest, context: Context, stages: _Stages) -> Any:
    options = request.options
    stages.begin("load", 1, f"Loading {request.model}")
    model = context.model_for(request.model, options.device, options.dtype)
    name = getattr(model, "model_name", "")
    context.progress("load", 1, 1, f"Loaded {name or request.model}")
    if options.infer_gs and not _has_gaussian_head(name):
        raise UserError(
            f"3D Gaussians need a giant model (DA3-GIANT or DA3NESTED-GIANT-LARGE), but {request.model} is "
            f"{name or 'another model'}. Choose a giant model, or turn off Gaussians."
        )
    return model


def _batch_side(transforms: list[ImageTransform], method: str) -> int:
    """The bounded side every shrunk frame shares (the longer one for upper_bound_*, else the shorter)."""
    side = max if method.startswith("upper") else min
    sides = {side(t.final_hw) for t in transforms}
    if len(sides) != 1:
        raise RuntimeError(f"frames were resized to different bounded sides {sorted(sides)}")
    return sides.pop()


def _predict(model, frames: _Frames, cameras: KnownCameras | None, options: JobOptions, stages: _Stages):
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
        process_res=_batch_side(frames.transforms, options.process_res_method),
        process_res_method=options.process_res_method,
        ref_view_strategy=options.ref_view_strategy,
        use_ray_pose=options.use_ray_pose,
        infer_gs=options.infer_gs,
        seed=options.seed,
        on_stage=stages.begin,
        **given,
    )


def _metric(prediction, frames: _Frames, request: ReconstructRequest, context: Context, stages: _Stages):
    """With ``metric``: scale a relative prediction to metres with the metric model (see metric_scale)."""
    options = request.options
    if not options.metric:
        return prediction
    if prediction.units == "metre":
        context.log("info", f"{prediction.model_name} is already metric: no metric model needed.")
        return prediction
    k_shrunk = _unprocess(prediction.transforms, prediction.intrinsics)  # in pixels both models see
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


def metric_scale(images, transforms, intrinsics, depth, conf, options: JobOptions, context, stages, where=""):
    """Run the metric model (``options.metric_model``) on ``images`` with the relative model's
    ``intrinsics`` (pixels of those images) and fit metres per unit of ``depth`` (N,H,W) on confident
    ground pixels. Returns (scale, the metric model's sky mask or None); ``where`` names the frames used
    in the log line."""
    from ..pipeline import predict

    stages.begin("metric", 2, f"Loading the metric model {options.metric_model}")
    metric_model = context.model_for(options.metric_model, options.device, options.dtype)
    if getattr(metric_model, "model_name", "") not in METRIC_PRESETS:
        raise UserError(
            f"The metric model {options.metric_model} is not a metric depth model: choose "
            "depth-anything/DA3METRIC-LARGE (or a folder with it)."
        )
    context.progress("metric", 1, 2, f"Running the metric model{where}")
    metric = predict(
        metric_model,
        images,
        process_res=_batch_side(transforms, options.process_res_method),
        process_res_method=options.process_res_method,
        intrinsics=intrinsics,
        seed=options.seed,
        on_stage=lambda name: context.check_cancel(),
    )
    try:
        scale = fit_scale(depth, metric.depth, conf, metric.sky)
    except MetricScaleError as exc:
        raise UserError(f"Metric scale failed: {exc}. Try without 'metric'.") from None
    context.progress("metric", 2, 2, f"1 unit = {scale:.4g} m")
    context.log("info", f"Metric scale from {options.metric_model}{where}: 1 unit = {scale:.4g} m")
    return scale, metric.sky


def _to_original(prediction, frames: _Frames) -> tuple[Any, np.ndarray]:
    """Compose the per-frame resize with predict's batch crop; returns (prediction, intrinsics_original)."""
    transforms = []
    for first, second in zip(frames.transforms, prediction.transforms, strict=True):
        if second.original_hw != first.final_hw or second.divisible_hw != first.final_hw:
            raise RuntimeError(f"predict resized a pre-sized frame again: {first} then {second}")
        transforms.append(
            replace(first, batch_crop_offset_yx=second.batch_crop_offset_yx, final_hw=second.final_hw)
        )
    k_original = _unprocess(transforms, prediction.intrinsics).astype(np.float32)
    return replace(prediction, transforms=tuple(transforms)), k_original


def _unprocess(transforms, intrinsics: np.ndarray) -> np.ndarray:
    """(N,3,3) processed-pixel K → (N,3,3) float64 K in the pixels each transform started from."""
    pairs = zip(transforms, intrinsics, strict=True)
    return np.stack([t.processed_to_original_intrinsics(k) for t, k in pairs])


# --- export -------------------------------------------------------------------------------------------


BundleArrays = Callable[[JobResult, dict[str, float]], tuple[dict[str, Any], dict[str, Any]]]


def _export(
    folder: Path, r: JobResult, context: Context, stages: _Stages, bundle_arrays: BundleArrays | None = None
) -> dict[str, str]:
    """Write the exports, then reconstruction.npz (with the timings), then the manifest.

    ``bundle_arrays(result, timings) -> (arrays, meta)`` gives the bundle's content (default: the
    prediction's, ``_bundle_arrays``). Returns name → path ("bundle" for reconstruction.npz); each
    export's seconds go to ``stages.seconds["export." + name]``."""
    bundle_arrays = bundle_arrays or _bundle_arrays
    exports = r.request.options.exports
    total = len(exports) + 1
    stages.begin("export", total, "Writing the result")
    writer = BundleWriter(folder)  # removes an old manifest: the folder reads incomplete until finish()
    files: dict[str, str] = {}
    for done, name in enumerate(exports, 1):
        context.check_cancel()
        filename, write = EXPORTERS[name]
        t0 = time.perf_counter()
        listed = write(writer.path(filename), r, context)
        for entry in [filename] if listed is None else [f"{filename}/{sub}" for sub in listed]:
            writer.add_file(entry)
        files[name] = str(writer.folder / filename)
        stages.add(f"export.{name}", time.perf_counter() - t0)
        context.progress("export", done, total, f"Wrote {filename}")
    context.check_cancel()
    stages.end()
    t0 = time.perf_counter()
    files["bundle"] = str(writer.write_arrays(*bundle_arrays(r, stages.seconds)))
    context.check_cancel()
    writer.finish()
    stages.add("export", time.perf_counter() - t0)
    stages.add("export.bundle", time.perf_counter() - t0)
    context.progress("export", total, total, "Wrote reconstruction.npz")
    return files


def _bundle_arrays(r: JobResult, timings: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    p, refs = r.prediction, r.refs
    arrays: dict[str, Any] = {
        "images": p.processed_images,
        "depth": p.depth,
        "conf": p.conf,
        "sky": p.sky,
        "extrinsics": p.extrinsics,
        "intrinsics": p.intrinsics,
        "intrinsics_original": r.intrinsics_original,
        "source_paths": [os.path.abspath(ref.path) for ref in refs],
        "frame_indices": np.array([ref.frame_index for ref in refs], np.int64),
        "timestamps_s": np.array([ref.timestamp_s for ref in refs], np.float64),
        "original_sizes": r.original_sizes,
    }
    g = p.gaussians
    if g is not None:
        gs_keys = ("gs_means", "gs_scales", "gs_rotations", "gs_harmonics", "gs_opacities")
        arrays.update(zip(gs_keys, (g.means, g.scales, g.rotations, g.harmonics, g.opacities), strict=True))
    meta = {
        "is_metric": p.is_metric,
        "units": p.units,
        "scale_factor": p.scale_factor,
        "model_id": r.request.model,
        "options": r.request.options.to_dict(),
        "timings": {name: round(s, 4) for name, s in timings.items()},
        "ref_view_idx": p.ref_view_idx if p.ref_view_idx >= 0 else None,
    }
    return arrays, meta
