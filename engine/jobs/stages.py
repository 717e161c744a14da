"""The stages every job shares, still or shot: option checks, the output folder, decoding and shrinking
the frames, loading the model, the metric model's scale, writing the bundle, and the bundle's metadata
and the job's summary (one definition each, so the two kinds of job cannot drift apart).

Each stage is timed and opens with a ``progress(stage, current, total)`` event after a cancel check
(``Stages``); cancel raises ``JobCancelled``; problems the user can fix raise ``UserError`` saying what
to do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import JobCancelled, UserError, explain_os_error
from ..formats.bundle import BundleError, BundleWriter
from ..formats.bundle.publish import OutputFolder
from ..geometry.metric_scale import MetricScaleError, fit_scale
from ..io.imaging import ImageReadError
from ..io.inputs import Cancelled, FrameRef, load_frames
from ..model.presets import METRIC_PRESETS, NESTED_PRESET, PRESETS
from ..preprocess import ImageTransform, preprocess_images, process_res_note
from ..process.protocol import JobOptions, ReconstructRequest
from .context import Context
from .exports import EXPORTERS, NOT_AVAILABLE, SHOT_NOT_AVAILABLE, JobResult

__all__ = [
    "ATTENTION_EVENT_S",
    "BundleArrays",
    "Frames",
    "StageClock",
    "Stages",
    "batch_side",
    "bundle_meta",
    "check_options",
    "crop_warning",
    "decode",
    "export",
    "job_summary",
    "load_model",
    "metric_scale",
    "network_steps",
    "open_output",
    "per_view_arrays",
    "refuse_non_finite",
    "unprocess",
]


# --- checks before any work ---------------------------------------------------------------------------


def check_options(request: ReconstructRequest, context: Context) -> None:
    """Refuse what this job cannot make (the request's kind decides: still or shot), before any work."""
    options = request.options
    shot = request.kind == "shot"
    unavailable = {**NOT_AVAILABLE, **SHOT_NOT_AVAILABLE} if shot else NOT_AVAILABLE
    for name in options.exports:
        if name in unavailable:
            raise UserError(f"The '{name}' export cannot be made: {unavailable[name]}.")
    if shot and options.infer_gs:
        raise UserError(
            "3D Gaussians are not made when a shot runs in chunks: leave 'chunk size' empty to run all "
            "frames at once, or turn off Gaussians."
        )
    if options.metric and options.cameras:
        raise UserError(
            "Known cameras already fix the units of the result, so 'metric' cannot rescale it: "
            "turn off 'metric', or leave out the cameras file."
        )
    note = process_res_note(options.process_res, options.process_res_method)
    if note:
        context.log("info", note)


@contextmanager
def open_output(request: ReconstructRequest) -> Iterator[OutputFolder]:
    """The job's output folder, locked for this job and repaired, with a fresh staging folder (checked
    before any work; the result is swapped in only when it is complete, by ``export``)."""
    target = OutputFolder(request.output, request.job)
    try:
        target.__enter__()
    except BundleError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(
            explain_os_error(exc)
            or f"Cannot write the output folder '{target.out}' ({exc.strerror or exc}). "
            "Choose a folder you can write to."
        ) from None
    try:
        yield target
    finally:
        target.__exit__(None, None, None)


# --- timing -------------------------------------------------------------------------------------------


class StageClock:
    """Adds the seconds of named sub-stages to ``seconds``; ``__call__(name)`` opens one (closing the
    last) after a cancel check: the ``on_stage`` hook of ``pipeline.predict``."""

    def __init__(self, seconds: dict[str, float], check_cancel: Callable[[], None]) -> None:
        self.seconds = seconds
        self._check_cancel = check_cancel
        self._open: tuple[str, float] | None = None

    def __call__(self, name: str) -> None:
        self.close()
        self._check_cancel()
        self._open = (name, time.perf_counter())

    def close(self) -> None:
        if self._open is not None:
            name, t0 = self._open
            self.add(name, time.perf_counter() - t0)
            self._open = None

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds


ATTENTION_EVENT_S = 1.0  # inside a long attention, a progress event at most this often


def network_steps(
    context: Context, emit: Callable[[tuple[int, int, str]], None]
) -> Callable[[str, int, int], None]:
    """``on_step`` for ``pipeline.predict``: a cancel check at every step, and ``emit((done, total, text))``
    before every block ("block 3/12") and head view ("head, view 1/4"), and inside a long global attention
    at most every ``ATTENTION_EVENT_S`` ("block 6/12, attention 40 %")."""
    last = {"block": (0, 1, ""), "at": time.monotonic()}

    def step(part: str, done: int, total: int) -> None:
        context.check_cancel()
        now = time.monotonic()
        if part == "attention":
            if now - last["at"] >= ATTENTION_EVENT_S:
                b_done, b_total, text = last["block"]
                emit((b_done, b_total, f"{text}, attention {100 * done // max(total, 1)} %"))
                last["at"] = now
            return
        what = "block" if part == "backbone" else "head, view"
        last["block"] = (done, total, f"{what} {done + 1}/{total}")
        last["at"] = now
        emit(last["block"])

    return step


class Stages(StageClock):
    """Stage timings in seconds, and the progress event that opens each stage (after a cancel check)."""

    def __init__(self, context: Context) -> None:
        super().__init__({}, context.check_cancel)
        self.context = context

    def begin(self, name: str, total: int = 1, message: str = "") -> None:
        self(name)
        self.context.progress(name, 0, total, message)

    def end(self) -> None:
        self.close()

    def steps(self, stage: str) -> Callable[[str, int, int], None]:
        """``on_step`` for ``pipeline.predict``: a cancel check and a progress event before every block
        of the network pass ("block 3/12", "head, view 1/4"; ``network_steps``)."""
        return network_steps(self.context, lambda event: self.context.progress(stage, *event))

    def clock(self) -> StageClock:
        """A silent clock for sub-stages (a chunk's preprocess/network/postprocess) into these timings."""
        return StageClock(self.seconds, self.context.check_cancel)

    def rounded(self) -> dict[str, float]:
        return {name: round(s, 4) for name, s in self.seconds.items()}


# --- frames and model ---------------------------------------------------------------------------------


@dataclass
class Frames:
    images: list[Any]  # (h_i, w_i, 3) uint8 after DA3's per-image resize (or what ``spill`` kept)
    transforms: list[ImageTransform]  # original pixels → those pixels, per frame
    refs: list[FrameRef]  # where each frame came from
    original_sizes: np.ndarray  # (N, 2) int64 (H, W) as decoded


def decode(
    request: ReconstructRequest,
    context: Context,
    stages: Stages,
    spill: Callable[[np.ndarray], Any] | None = None,
) -> Frames:
    """Decode and shrink every frame. ``spill(shrunk)`` (optional) takes each shrunk frame away (e.g. to
    a file) and returns what ``Frames.images`` keeps in its place, so a long shot never sits in memory."""
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
    cropped = crop_warning(transforms, loaded.refs)
    if cropped:
        context.log("warning", cropped)
    return Frames(loaded.images, transforms, loaded.refs, loaded.original_sizes)


CROP_WARNING_SHARE = 0.3  # a view losing more than this share of its pixels to the common size is said


def crop_warning(transforms: list[ImageTransform], refs: list[FrameRef]) -> str | None:
    """Frames of different shapes are centre-cropped to the smallest height and width (DA3's rule); say
    which views that cuts by more than ``CROP_WARNING_SHARE`` of their pixels, and how to avoid it."""
    h = min(t.final_hw[0] for t in transforms)
    w = min(t.final_hw[1] for t in transforms)
    lost = [1.0 - h * w / (t.final_hw[0] * t.final_hw[1]) for t in transforms]
    worst = [i for i, share in enumerate(lost) if share > CROP_WARNING_SHARE]
    if not worst:
        return None
    names = ", ".join(f"{_frame_name(refs[i])} ({lost[i]:.0%})" for i in worst[:5])
    more = f" and {len(worst) - 5} more" if len(worst) > 5 else ""
    return (
        f"The images differ in shape, so every view is cropped to the common {w}x{h} px; that cuts away a "
        f"large part of {names}{more}. Reconstruct images of one shape together (split the set, or leave "
        "out the odd ones)."
    )


def _has_gaussian_head(model_name: str) -> bool:
    return model_name == NESTED_PRESET or (model_name in PRESETS and PRESETS[model_name].gaussians)


def load_model(request: ReconstructRequest, context: Context, stages: Stages) -> Any:
    """The job's model (kept loaded by the context between jobs); refuses Gaussians without their head."""
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


def batch_side(transforms: list[ImageTransform], method: str) -> int:
    """The bounded side every shrunk frame shares (the longer one for upper_bound_*, else the shorter)."""
    side = max if method.startswith("upper") else min
    sides = {side(t.final_hw) for t in transforms}
    if len(sides) != 1:
        raise RuntimeError(f"frames were resized to different bounded sides {sorted(sides)}")
    return sides.pop()


def unprocess(transforms, intrinsics: np.ndarray) -> np.ndarray:
    """(N,3,3) processed-pixel K → (N,3,3) float64 K in the pixels each transform started from."""
    pairs = zip(transforms, intrinsics, strict=True)
    return np.stack([t.processed_to_original_intrinsics(k) for t, k in pairs])


def metric_scale(images, transforms, intrinsics, depth, conf, options: JobOptions, context, stages, where=""):
    """Run the metric model (``options.metric_model``) on ``images`` with the relative model's
    ``intrinsics`` (pixels of those images) and fit metres per unit of ``depth`` (N,H,W) on confident
    ground pixels. Returns (scale, the metric model's sky mask or None); ``where`` names the frames used
    in the log line."""
    from ..pipeline import predict  # torch: imported when a job runs

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
        process_res=batch_side(transforms, options.process_res_method),
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


def metric_needed(options: JobOptions, units: str, model_name: str, context: Context) -> bool:
    """With ``metric``: whether the metric model must run (not when the prediction is in metres already)."""
    if not options.metric:
        return False
    if units == "metre":
        context.log("info", f"{model_name} is already metric: no metric model needed.")
        return False
    return True


def refuse_non_finite(
    refs: list[FrameRef], extrinsics: np.ndarray, intrinsics: np.ndarray, depth: np.ndarray | None = None
) -> None:
    """Fail the job, saying which views and what to try, when the network gave non-finite numbers: a
    camera with a NaN or infinity, or a depth map that is not finite on most of its pixels (a damaged
    checkpoint, or a precision the device does not handle). Nothing non-finite is ever written."""
    n = len(extrinsics)
    bad = ~np.isfinite(np.asarray(extrinsics).reshape(n, -1)).all(1)
    bad |= ~np.isfinite(np.asarray(intrinsics).reshape(n, -1)).all(1)
    if depth is not None:
        bad |= np.isfinite(np.asarray(depth).reshape(n, -1)).mean(1) < 0.5
    if not bad.any():
        return
    names = [_frame_name(refs[i]) if i < len(refs) else f"view {i + 1}" for i in np.flatnonzero(bad)]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise UserError(
        f"The network gave numbers that are not finite (NaN) for {len(names)} of {n} views ({shown}), so "
        "nothing was written. Try full precision (fp32), another device (CPU), or another model; if every "
        "view fails, the checkpoint may be damaged: download it again."
    )


def _frame_name(ref: FrameRef) -> str:
    name = Path(ref.path).name
    return f"{name} frame {ref.frame_index}" if ref.frame_index >= 0 else name


# --- the bundle ---------------------------------------------------------------------------------------


BundleArrays = Callable[[JobResult], dict[str, Any]]


def export(
    target: OutputFolder,
    r: JobResult,
    context: Context,
    stages: Stages,
    bundle_arrays: BundleArrays,
    meta: dict[str, Any],
) -> dict[str, str]:
    """Write the exports, then reconstruction.npz (``bundle_arrays(result)`` and ``meta``, with the
    timings), then the manifest, all into the staging folder; then swap it in as the result.

    Returns name → final path ("bundle" for reconstruction.npz); each export's seconds go to
    ``stages.seconds["export." + name]``."""
    exports = r.request.options.exports
    total = len(exports) + 1
    stages.begin("export", total, "Writing the result")
    writer = BundleWriter(target.staging)
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
    files["bundle"] = str(writer.write_arrays(bundle_arrays(r), {**meta, "timings": stages.rounded()}))
    context.check_cancel()
    writer.finish()
    context.check_cancel()  # the last moment a cancel keeps the earlier result
    target.publish()
    stages.add("export", time.perf_counter() - t0)
    stages.add("export.bundle", time.perf_counter() - t0)
    context.progress("export", total, total, "Wrote reconstruction.npz")
    return {name: target.final_path(path) for name, path in files.items()}


def per_view_arrays(r: JobResult) -> dict[str, Any]:
    """The bundle arrays every job writes per view: where each came from and its original camera."""
    return {
        "intrinsics_original": r.intrinsics_original,
        "source_paths": [os.path.abspath(ref.path) for ref in r.refs],
        "frame_indices": np.array([ref.frame_index for ref in r.refs], np.int64),
        "timestamps_s": np.array([ref.timestamp_s for ref in r.refs], np.float64),
        "original_sizes": r.original_sizes,
    }


def bundle_meta(
    request: ReconstructRequest, *, is_metric: bool, units: str, scale_factor, ref_view_idx: int, **extra
) -> dict[str, Any]:
    """The bundle's metadata (the timings are added when the arrays are written)."""
    return {
        "is_metric": is_metric,
        "units": units,
        "scale_factor": scale_factor,
        "model_id": request.model,
        "options": request.options.to_dict(),
        "ref_view_idx": ref_view_idx if ref_view_idx >= 0 else None,
        **extra,
    }


def job_summary(
    request: ReconstructRequest,
    folder: Path,
    meta: dict[str, Any],
    *,
    views: int,
    image_hw: tuple[int, int],
    model_name: str,
    ref_view: int,
    files: dict[str, str],
    stages: Stages,
    started: float,
    **extra,
) -> dict[str, Any]:
    """The summary a job ends with (``finished`` event, CLI line)."""
    return {
        "views": views,
        "height": int(image_hw[0]),
        "width": int(image_hw[1]),
        "units": meta["units"],
        "is_metric": bool(meta["is_metric"]),
        "scale_factor": meta["scale_factor"],
        "model": request.model,
        "model_name": model_name,
        "ref_view": ref_view,
        "output": str(folder),
        "files": files,
        "timings": stages.rounded(),
        **extra,
        "seconds": round(time.perf_counter() - started, 3),
    }
