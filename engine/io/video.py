"""Video probing and frame decoding with PyAV (imported lazily; FFmpeg does the decoding).

Frames are numbered 0, 1, 2, ... in presentation order, exactly as they come out of the decoder, and
carry their presentation time ``pts * time_base`` (seconds from the start of the stream). Times
never come from ``index / fps``, so variable-frame-rate footage (phones, screen captures) keeps
the right timing. Decoding is sequential from the first frame: seeking would make frame numbers
depend on keyframe placement, so we never seek. Display rotation stored in the container (portrait
phone video) is applied, so frames come out upright.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VideoReadError", "VideoInfo", "VideoFrame", "probe_video", "read_frames"]

_TIME_TOLERANCE_S = 1e-6  # timestamps closer than this are the same instant


class VideoReadError(ValueError):
    """A video could not be read, or a frame selection picked nothing; the message says what to do."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds. width/height are the *displayed* size (after rotation)."""

    path: str
    width: int
    height: int
    fps: float  # average frame rate
    frame_count: int  # exact: from the container, or counted from the stream's packets
    duration_s: float
    rotation_deg: int  # counter-clockwise rotation applied to decoded frames: 0, 90, 180 or 270
    nominal_fps: float = 0.0  # the stream's declared rate (what players such as Blender time frames by)


@dataclass(frozen=True)
class VideoFrame:
    index: int  # 0-based source frame number in decode (presentation) order
    timestamp_s: float  # presentation time, seconds from the start of the stream
    image: np.ndarray  # (H, W, 3) uint8 RGB, upright


# --------------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------------


def _import_av():
    try:
        import av
    except ImportError as exc:
        raise VideoReadError(
            "Reading video needs PyAV in the engine environment: `pip install av`, "
            "or extract the frames to images first."
        ) from exc
    return av


def _open(path: str | Path):
    """(container, video stream) or VideoReadError with a message for the user."""
    av = _import_av()
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not a video file" if p.is_dir() else "does not exist"
        raise VideoReadError(f"Cannot read video '{p}': the path {what}. Check the file name.")
    try:
        container = av.open(str(p))
    except Exception as exc:
        raise VideoReadError(
            f"Cannot read video '{p.name}' ({p}): {_describe(exc)}. The file may be damaged or not a "
            "video FFmpeg understands; try re-encoding it (e.g. to H.264 MP4) or extracting its frames."
        ) from exc
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"'{p.name}' ({p}) has no video track. Pick a video file or a folder of images.")
    stream = container.streams.video[0]
    return container, stream


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rotation_of(frame, stream) -> int:
    """Counter-clockwise display rotation in degrees, one of 0, 90, 180, 270."""
    degrees = getattr(frame, "rotation", None)
    if degrees is None:  # old PyAV: the legacy 'rotate' tag is clockwise
        try:
            degrees = -float(stream.metadata.get("rotate", 0))
        except (TypeError, ValueError):
            degrees = 0
    return int(round(float(degrees) / 90.0)) % 4 * 90


def _to_rgb(frame, rotation_deg: int) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
    if rotation_deg:
        image = np.rot90(image, k=rotation_deg // 90)  # counter-clockwise, like the display matrix
    return np.ascontiguousarray(image)


def _time_of(frame, stream, origin: float) -> float | None:
    """Presentation time in seconds from the stream start, or None when the frame has no pts."""
    time_base = frame.time_base if frame.time_base is not None else stream.time_base
    if frame.pts is None or time_base is None:
        return None
    return float(frame.pts * time_base) - origin


def _stream_origin(stream) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


# --------------------------------------------------------------------------------------------------
# Probing
# --------------------------------------------------------------------------------------------------


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate, exact frame count, duration and rotation of a video file."""
    container, stream = _open(path)
    try:
        rotation = 0
        try:
            for frame in container.decode(stream):
                rotation = _rotation_of(frame, stream)
                break
            else:
                raise VideoReadError(f"'{Path(path).name}' ({path}) contains no decodable video frames.")
        except VideoReadError:
            raise
        except Exception as exc:
            raise VideoReadError(
                f"Cannot decode video '{Path(path).name}' ({path}): {_describe(exc)}. "
                "The file may be damaged; try re-encoding it or extracting its frames."
            ) from exc
        width, height = stream.codec_context.width, stream.codec_context.height
        time_base = stream.time_base
        duration = float(stream.duration * time_base) if stream.duration and time_base else 0.0
        if duration <= 0 and container.duration:
            duration = container.duration / 1_000_000.0  # AV_TIME_BASE
        rate = stream.average_rate or stream.guessed_rate
        nominal = stream.guessed_rate or stream.base_rate or rate
        count = int(stream.frames or 0)
    finally:
        container.close()
    if count <= 0:
        count = _count_packets(path)
    fps = float(rate) if rate else (count / duration if duration > 0 else 0.0)
    if duration <= 0 and fps > 0:
        duration = count / fps
    if rotation in (90, 270):
        width, height = height, width
    nominal_fps = float(nominal) if nominal else fps
    return VideoInfo(str(path), int(width), int(height), fps, count, duration, rotation, nominal_fps)


def _count_packets(path: str | Path) -> int:
    """Frame count when the container does not store it: one packet per frame, no decoding."""
    container, stream = _open(path)
    try:
        return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except Exception as exc:
        raise VideoReadError(f"Cannot read video '{Path(path).name}' ({path}): {_describe(exc)}.") from exc
    finally:
        container.close()


# --------------------------------------------------------------------------------------------------
# Frame selection
# --------------------------------------------------------------------------------------------------


class _Pick:
    __slots__ = ("index", "time", "frame")

    def __init__(self, index: int, time: float, frame) -> None:
        self.index, self.time, self.frame = index, time, frame


class _StrideSelector:
    """Every ``step``-th frame counted from ``start``."""

    def __init__(self, start: int, step: int) -> None:
        self.start, self.step = start, step

    def push(self, pick: _Pick) -> list[_Pick]:
        return [pick] if (pick.index - self.start) % self.step == 0 else []


class _UniformTimeSelector:
    """For each time t0 + k / fps (t0 = first frame's time, up to the last frame's time) the frame
    whose timestamp is nearest (ties go to the earlier frame); each frame at most once.

    Streams: it keeps only the previous frame, which is all a nearest-neighbour choice needs.
    """

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.t0: float | None = None
        self.k = 0
        self.previous: _Pick | None = None
        self.last_index = -1

    def push(self, pick: _Pick) -> list[_Pick]:
        if self.t0 is None:
            self.t0 = pick.time
        chosen = []
        grid = self.t0 + self.k * self.period
        while pick.time >= grid - _TIME_TOLERANCE_S:
            prev = self.previous
            nearer_now = prev is None or (pick.time - grid) < (grid - prev.time) - _TIME_TOLERANCE_S
            best = pick if nearer_now else prev
            if best.index != self.last_index:
                chosen.append(best)
                self.last_index = best.index
            self.k += 1
            grid = self.t0 + self.k * self.period
        self.previous = pick
        return chosen


def movie_positions(timestamps_s: np.ndarray, fps: float) -> np.ndarray:
    """Movie positions ``round(t · fps)`` (int64) of frames at times ``t`` (seconds from the stream start).

    This is how players such as Blender number a video's frames (one position per 1/fps of time), which
    differs from the decode order for variable-frame-rate footage; the Blender side uses the same rule.
    """
    return np.rint(np.asarray(timestamps_s, np.float64) * float(fps)).astype(np.int64)


class _PositionSelector:
    """The frames on movie positions ``start, start + step, …`` before ``end`` (``movie_positions``); when
    two frames fall on one position, the later one (the one a player shows there)."""

    def __init__(self, start: int, end: int | None, step: int, fps: float) -> None:
        self.start, self.end, self.step, self.fps = start, end, step, fps
        self.pending: _Pick | None = None
        self.pending_position = -1

    def position(self, pick: _Pick) -> int:
        return int(movie_positions(pick.time, self.fps))

    def push(self, pick: _Pick) -> list[_Pick]:
        pos = self.position(pick)
        out = self.flush() if self.pending is not None and pos != self.pending_position else []
        wanted = (
            pos >= self.start and (self.end is None or pos < self.end) and (pos - self.start) % self.step == 0
        )
        if wanted:
            self.pending, self.pending_position = pick, pos
        return out

    def flush(self) -> list[_Pick]:
        out = [self.pending] if self.pending is not None else []
        self.pending = None
        return out


def _check_selection(start: int, end: int | None, step: int, target_fps: float | None) -> None:
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise VideoReadError(f"the first frame must be a whole number >= 0, got {start!r}")
    if end is not None and (isinstance(end, bool) or not isinstance(end, (int, np.integer)) or end <= start):
        raise VideoReadError(f"the end frame must be after the first frame ({start}), got {end!r}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise VideoReadError(f"the frame step must be a whole number >= 1, got {step!r}")
    if target_fps is not None:
        if not np.isfinite(target_fps) or target_fps <= 0:
            raise VideoReadError(f"the target frame rate must be a positive number, got {target_fps!r}")
        if step != 1:
            raise VideoReadError("give either a frame step or a target frame rate, not both")


def read_frames(
    path: str | Path,
    *,
    start: int = 0,
    end: int | None = None,
    step: int = 1,
    target_fps: float | None = None,
    positions_fps: float | None = None,
) -> Iterator[VideoFrame]:
    """Decode the frames ``start <= index < end`` (end None: to the last frame), every ``step``-th.

    With ``target_fps`` the frames in that range are picked on a uniform time grid at that rate
    instead (the frame nearest each grid time, no duplicates). With ``positions_fps``, ``start``,
    ``end`` and ``step`` count movie positions at that rate (``movie_positions``: how Blender numbers
    the frames of variable-frame-rate footage) instead of decoded frames; the frames keep their decode
    index. Raises VideoReadError when the file cannot be read or when the selection contains no frame
    (the message gives the video's range).
    """
    _check_selection(start, end, step, target_fps)
    if positions_fps is not None and (target_fps is not None or not positions_fps > 0):
        raise VideoReadError("counting frames by movie position needs a positive rate and no target rate")
    container, stream = _open(path)
    name = Path(path).name
    if positions_fps is not None:
        selector = _PositionSelector(start, end, step, positions_fps)
    elif target_fps is not None:
        selector = _UniformTimeSelector(target_fps)
    else:
        selector = _StrideSelector(start, step)
    by_index = positions_fps is None  # else the range is in positions, checked by the selector
    origin = _stream_origin(stream)
    fallback_period = 1.0 / float(stream.average_rate or stream.guessed_rate or 24)
    index, produced, last_time, rotation = -1, 0, None, None
    try:
        stream.thread_type = "AUTO"  # frame threads: faster, same frames and timestamps
        try:
            for frame in container.decode(stream):
                index += 1
                if by_index and end is not None and index >= end:
                    break
                time = _time_of(frame, stream, origin)
                if time is None:  # no timestamp at all: continue the previous frame's timing
                    time = 0.0 if last_time is None else last_time + fallback_period
                last_time = time
                if by_index and index < start:
                    continue
                if not by_index and end is not None and selector.position(_Pick(index, time, None)) >= end:
                    break
                if rotation is None:
                    rotation = _rotation_of(frame, stream)
                for pick in selector.push(_Pick(index, time, frame)):
                    produced += 1
                    yield VideoFrame(pick.index, pick.time, _to_rgb(pick.frame, rotation))
            for pick in selector.flush() if not by_index else ():
                produced += 1
                yield VideoFrame(pick.index, pick.time, _to_rgb(pick.frame, rotation))
        except VideoReadError:
            raise
        except Exception as exc:
            raise VideoReadError(
                f"Decoding '{name}' failed after {index} frames: {_describe(exc)}. The file may be damaged; "
                "try re-encoding it or extracting its frames."
            ) from exc
    finally:
        container.close()
    if produced == 0:  # only possible when the whole video ended before `start`
        if index < 0:
            raise VideoReadError(f"'{name}' contains no decodable video frames.")
        unit = "frame" if by_index else f"position (at {positions_fps:g} fps)"
        raise VideoReadError(
            f"No frames selected from '{name}': it has {index + 1} frames (0-{index}, the last at "
            f"{last_time or 0.0:.2f} s), but the selection starts at {unit} {start}. "
            "Choose a frame range inside the video."
        )
