"""What the user picked (files, folders, videos) -> the frames to reconstruct from.

``expand_inputs`` turns paths into a plan without decoding pixels: still images (files, or the
images of a folder in natural order) and videos with their frame selection. ``load_frames`` decodes
the plan into RGB arrays, skipping unreadable stills with a warning, reporting progress and
honouring cancellation between frames.

Frame selection ``frames = (start, end, step)`` works on a sequence: every run of consecutive still
inputs forms one sequence (a folder of images, or many image files selected together), and each
video is its own sequence. ``target_fps`` picks video frames on a uniform time grid; stills have no
timestamps, so it does not apply to them.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..process.protocol.options import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS  # the job contract
from .imaging import ImageReadError, load_image
from .video import VideoReadError, probe_video, read_frames

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "natural_sort_key",
    "InputError",
    "Cancelled",
    "FrameRef",
    "VideoSelection",
    "LoadedFrames",
    "expand_inputs",
    "iter_frames",
    "load_frames",
]


FrameRange = tuple[int, int | None, int]  # (start, end exclusive or None, step)


class InputError(ValueError):
    """Bad or unusable input paths or frame selection; the message says what to do."""


class Cancelled(Exception):
    """The user cancelled while frames were loading (the worker reports it as ``interrupted``)."""


@dataclass(frozen=True)
class FrameRef:
    """Where one frame came from."""

    path: str
    frame_index: int  # source frame number in a video; -1 for a still image
    timestamp_s: float  # presentation time in a video; nan for a still image


@dataclass(frozen=True)
class VideoSelection:
    """A video and which of its frames to decode (resolved while decoding: VFR needs timestamps)."""

    path: str
    start: int
    end: int | None
    step: int
    target_fps: float | None
    positions_fps: float | None = None  # start/end/step count movie positions at this rate (VFR, Blender)


@dataclass
class LoadedFrames:
    images: list[np.ndarray]  # each (H_i, W_i, 3) uint8 RGB
    refs: list[FrameRef]
    original_sizes: np.ndarray  # (N, 2) int64 (H, W) as decoded, before any transform
    warnings: list[str] = field(default_factory=list)


def natural_sort_key(name: str) -> tuple:
    """Sort key that orders numbers by value: 'img2' < 'img10'; case-insensitive, stable on ties."""
    parts = re.split(r"(\d+)", name)
    return (tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)), name)


def _accepted() -> str:
    return f"images ({' '.join(IMAGE_EXTENSIONS)}) or videos ({' '.join(VIDEO_EXTENSIONS)})"


# --------------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------------


def _is_whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_frames(
    frames: FrameRange, target_fps: float | None, positions_fps: float | None = None
) -> FrameRange:
    try:
        start, end, step = frames
    except (TypeError, ValueError):
        raise InputError(f"frames must be (start, end, step), got {frames!r}") from None
    if not _is_whole(start) or start < 0:
        raise InputError(f"the first frame must be a whole number >= 0, got {start!r}")
    if end is not None and (not _is_whole(end) or end <= start):
        raise InputError(f"the end frame must be after the first frame ({start}), got {end!r}")
    if not _is_whole(step) or step < 1:
        raise InputError(f"the frame step must be a whole number >= 1, got {step!r}")
    if target_fps is not None:
        if not isinstance(target_fps, numbers.Real) or not math.isfinite(target_fps) or target_fps <= 0:
            raise InputError(f"the target frame rate must be a positive number, got {target_fps!r}")
        if step != 1:
            raise InputError("give either a frame step or a target frame rate, not both")
    if positions_fps is not None:
        if (
            not isinstance(positions_fps, numbers.Real)
            or not math.isfinite(positions_fps)
            or positions_fps <= 0
        ):
            raise InputError(f"the frame-position rate must be a positive number, got {positions_fps!r}")
        if target_fps is not None:
            raise InputError("give either a target frame rate or frame positions, not both")
    return int(start), None if end is None else int(end), int(step)


def _folder_images(folder: Path) -> list[Path]:
    visible = [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file()]
    images = [p for p in visible if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        videos = [p.name for p in visible if p.suffix.lower() in VIDEO_EXTENSIONS]
        listed = ", ".join(sorted(videos)[:3])
        hint = f" It holds {len(videos)} video file(s) ({listed}): select the video itself." if videos else ""
        raise InputError(
            f"The folder '{folder}' contains no images. Accepted image types: "
            f"{' '.join(IMAGE_EXTENSIONS)}.{hint}"
        )
    return sorted(images, key=lambda p: natural_sort_key(p.name))


def expand_inputs(
    paths: list[str],
    *,
    frames: FrameRange = (0, None, 1),
    target_fps: float | None = None,
    positions_fps: float | None = None,
) -> list[FrameRef | VideoSelection]:
    """Files and folders -> the plan: selected stills (FrameRef, frame_index -1) and videos to decode.

    Folders give their images in natural order (hidden files and subfolders ignored). Raises
    InputError for missing paths, unsupported files, image-less folders and empty selections.
    """
    start, end, step = _check_frames(frames, target_fps, positions_fps)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not paths:
        raise InputError(f"No inputs given. Pick {_accepted()}, or a folder of images.")

    plan: list[FrameRef | VideoSelection] = []
    run: list[Path] = []  # consecutive stills, selected as one sequence

    def close_run() -> None:
        if run:
            chosen = run[start:end:step]
            if not chosen:
                last = "the end" if end is None else end - 1
                raise InputError(
                    f"The frame range {start} to {last} (step {step}) selects none of the {len(run)} "
                    f"images (numbered 0-{len(run) - 1}). Choose a range inside it."
                )
            plan.extend(FrameRef(str(p), -1, math.nan) for p in chosen)
            run.clear()

    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            run.extend(_folder_images(p))
        elif p.is_file():
            suffix = p.suffix.lower()
            if suffix in IMAGE_EXTENSIONS:
                run.append(p)
            elif suffix in VIDEO_EXTENSIONS:
                close_run()
                plan.append(VideoSelection(str(p), start, end, step, target_fps, positions_fps))
            else:
                raise InputError(f"'{p.name}' ({p}) is not a supported file type. Accepted: {_accepted()}.")
        else:
            raise InputError(f"The input '{p}' does not exist. Check the path, or pick the files again.")
    close_run()
    return plan


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


def _estimate_count(item: FrameRef | VideoSelection) -> int:
    """Frames this plan item will give (exact for stills and strides, estimated for target_fps)."""
    if isinstance(item, FrameRef):
        return 1
    try:
        info = probe_video(item.path)
    except VideoReadError:
        return 1
    frames = info.frame_count
    if item.positions_fps is not None and info.duration_s > 0:  # positions up to the video's end
        frames = max(1, int(round(info.duration_s * item.positions_fps)))
    stop = frames if item.end is None else min(item.end, frames)
    count = len(range(item.start, stop, item.step))
    if item.target_fps is not None and info.fps > 0 and count > 0:
        span_s = (count - 1) / info.fps
        count = min(count, int(span_s * item.target_fps + 1e-6) + 1)
    return max(count, 1)


def iter_frames(
    plan: list[FrameRef | VideoSelection], *, skip_unreadable: bool = True, warnings: list[str] | None = None
) -> Iterator[tuple[FrameRef, np.ndarray]]:
    """Decode a plan frame by frame: (FrameRef, (H, W, 3) uint8). Problems skipped go to ``warnings``."""
    warnings = [] if warnings is None else warnings
    for item in plan:
        if isinstance(item, FrameRef):
            try:
                image = load_image(item.path)
            except ImageReadError as exc:
                if not skip_unreadable:
                    raise InputError(str(exc)) from exc
                warnings.append(f"Skipped: {exc}")
                continue
            yield item, image
            continue
        got = 0
        try:
            selected = read_frames(
                item.path,
                start=item.start,
                end=item.end,
                step=item.step,
                target_fps=item.target_fps,
                positions_fps=item.positions_fps,
            )
            for frame in selected:
                got += 1
                yield FrameRef(item.path, frame.index, frame.timestamp_s), frame.image
            missing = _missing_frames(item, got)
            if missing:
                warnings.append(missing)
        except VideoReadError as exc:
            if got and skip_unreadable:  # keep what decoded before the damage
                warnings.append(f"Video '{Path(item.path).name}' stopped early after {got} frames: {exc}")
                continue
            raise InputError(str(exc)) from exc


def _missing_frames(item: VideoSelection, got: int) -> str | None:
    """A warning when a video ended before the end of an explicit frame range: which requested frames
    (or movie positions) it could not give, and why that happens."""
    if item.end is None or item.target_fps is not None:
        return None
    requested = range(item.start, item.end, item.step)
    if got >= len(requested):
        return None
    missing = list(requested[got:])
    shown = ", ".join(map(str, missing[:8])) + (f" … ({len(missing)} in all)" if len(missing) > 8 else "")
    unit = "frames" if item.positions_fps is None else "movie positions"
    return (
        f"Video '{Path(item.path).name}' ended early: requested {unit} {shown} could not be decoded (the file "
        "is shorter than the range, or cut short or damaged). The job goes on without them; check the file "
        "or choose a range inside it."
    )


def load_frames(
    paths: list[str],
    *,
    frames: FrameRange = (0, None, 1),
    target_fps: float | None = None,
    positions_fps: float | None = None,
    skip_unreadable: bool = True,
    should_cancel: Callable[[], bool] = lambda: False,
    on_progress: Callable[[int, int, str], None] = lambda done, total, message: None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> LoadedFrames:
    """Decode every selected frame of ``paths``.

    - Unreadable stills are skipped with a warning (``skip_unreadable=True``) or raise InputError.
    - ``should_cancel()`` is checked before every frame; when it returns True, ``Cancelled`` is raised.
    - ``on_progress(done, total, message)`` after every frame; ``total`` is exact except for
      ``target_fps``, where it is estimated from the frame rate (and grows if needed).
    - ``positions_fps``: the video frame range counts movie positions at that rate
      (``video.movie_positions``, how Blender numbers variable-frame-rate footage), not decoded frames.
    - ``transform`` (optional) is applied to each frame as soon as it is decoded, e.g. the DA3
      resize, so a long high-resolution shot never sits in memory at full size.
    Raises InputError when no usable frame remains.
    """
    plan = expand_inputs(paths, frames=frames, target_fps=target_fps, positions_fps=positions_fps)
    warnings: list[str] = []
    if target_fps is not None and any(isinstance(item, FrameRef) for item in plan):
        warnings.append("The target frame rate applies to videos only; still images use the frame range.")
    total = sum(_estimate_count(item) for item in plan)
    images, refs, sizes = [], [], []
    if should_cancel():
        raise Cancelled("Loading frames was cancelled.")
    decoded = iter_frames(plan, skip_unreadable=skip_unreadable, warnings=warnings)
    try:
        for ref, image in decoded:
            sizes.append(image.shape[:2])
            images.append(transform(image) if transform is not None else image)
            refs.append(ref)
            total = max(total, len(images))
            on_progress(len(images), total, f"Loaded {Path(ref.path).name}" + _frame_label(ref))
            if should_cancel():
                raise Cancelled("Loading frames was cancelled.")
    finally:
        decoded.close()  # closes an open video at once, also on cancel
    if not images:
        detail = f" {warnings[-1]}" if warnings else ""
        raise InputError(f"None of the inputs gave a usable frame.{detail}")
    return LoadedFrames(images, refs, np.asarray(sizes, dtype=np.int64).reshape(-1, 2), warnings)


def _frame_label(ref: FrameRef) -> str:
    return "" if ref.frame_index < 0 else f" frame {ref.frame_index}"
