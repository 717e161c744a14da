"""A video shot seen from Blender's timeline: which scene frame shows which movie frame (no bpy, no torch).

Blender shows a movie one *movie frame* per scene frame, whatever the scene's frame rate (checked for
Movie Clips and VSE movie strips in tests/blender/test_shot_inputs.py). A movie frame is a position on
the movie's own time grid: position ``p`` shows the decoded frame whose timestamp is nearest ``p / fps``
(``fps`` the rate Blender reads from the file), so for constant frame rate footage the position is the
0-based decode index, and for variable frame rate footage it comes from the frame's timestamp. The
engine numbers frames by decode index and writes both ``frame_indices`` and ``timestamps_s`` into the
bundle; ``movie_positions`` turns those into positions.

Each input places the movie on the timeline by its own rules (``FrameMap``: scene = position + offset):

- **Movie Clip** (``clip_frame_map``): scene frame ``f`` shows position ``f − frame_start + frame_offset``;
  the clip starts at ``frame_start`` (``frame_offset`` skips frames of the footage).
- **Movie strip** (``strip_frame_map``): scene frame ``f`` shows position
  ``f − frame_start + animation_offset_start`` for ``frame_final_start ≤ f < frame_final_end`` (the
  trimmed range; ``animation_offset_start`` is the strip's hold offset).
- **Video file** (``file_frame_map``): loaded as a clip starting at scene frame 1, Blender's default.

A job gets the positions of the chosen scene range and stride (``select_frames``); the import puts each
camera key on ``offset + position`` (``scene_keys``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from ..engine.io import video

__all__ = [
    "FrameMap",
    "ShotError",
    "ShotSource",
    "clip_frame_map",
    "exact_fps",
    "file_frame_map",
    "movie_positions",
    "scene_keys",
    "select_frames",
    "strip_frame_map",
]


class ShotError(ValueError):
    """The shot input or its frame range cannot be tracked; the message says what to change."""


@dataclass(frozen=True)
class FrameMap:
    """Scene frame = movie position + ``offset``, for the positions ``first`` … ``last`` the input shows."""

    offset: int  # scene frame that shows position 0 (it may lie outside the shown range)
    first: int  # first movie position shown (inclusive)
    last: int  # last movie position shown (inclusive)

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ShotError("The movie shows no frames on the timeline: check its trim and offsets.")

    def scene_frame(self, position):
        """Scene frame(s) of movie position(s) (int or array)."""
        return np.asarray(position) + self.offset if np.ndim(position) else int(position) + self.offset

    def position(self, scene_frame):
        """Movie position(s) shown at scene frame(s) (not clipped to the shown range)."""
        return (
            np.asarray(scene_frame) - self.offset if np.ndim(scene_frame) else int(scene_frame) - self.offset
        )

    @property
    def scene_range(self) -> tuple[int, int]:
        """(first, last) scene frames that show the movie, inclusive."""
        return self.first + self.offset, self.last + self.offset

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FrameMap:
        return cls(int(data["offset"]), int(data["first"]), int(data["last"]))


def _whole(value: float, what: str) -> int:
    if abs(value - round(value)) > 1e-6:
        raise ShotError(f"{what} is {value:g}, between two frames: move it to a whole frame.")
    return int(round(value))


def clip_frame_map(frame_start: int, frame_offset: int, frame_duration: int) -> FrameMap:
    """A Movie Clip's placement: ``frame_start`` shows position ``frame_offset``; the footage has
    ``frame_duration`` positions (0 … duration − 1)."""
    if frame_duration < 1:
        raise ShotError("The Movie Clip has no frames: check that its file can be read.")
    first = max(0, frame_offset)
    last = min(frame_duration - 1, frame_offset + frame_duration - 1)
    return FrameMap(int(frame_start) - int(frame_offset), first, last)


def strip_frame_map(
    frame_start: float,
    frame_final_start: int,
    frame_final_end: int,
    animation_offset_start: int,
    *,
    frame_duration: int | None = None,
    movie_frames: int | None = None,
    animation_offset_end: int = 0,
    reversed_frames: bool = False,
) -> FrameMap:
    """A VSE movie strip's placement (its RNA values, under their 4.x names; 5.x calls them
    ``content_start``, ``left_handle``, ``right_handle``, ``content_trim_start``, ``content_duration``):
    scene ``f`` shows ``f − frame_start + animation_offset_start`` within the trimmed range
    ``[frame_final_start, frame_final_end)``.

    ``frame_duration`` (the strip's content length) and ``movie_frames`` (the file's length) check that
    the strip plays the movie one frame per scene frame: a retimed strip does not, and is refused.
    """
    if reversed_frames:
        raise ShotError("The movie strip plays its frames in reverse: turn off Reverse Frames to track it.")
    start = _whole(frame_start, "The movie strip's start")
    if frame_duration is not None and movie_frames is not None:
        expected = movie_frames - animation_offset_start - animation_offset_end
        if frame_duration != expected:
            raise ShotError(
                f"The movie strip lasts {frame_duration} frames but its movie has {expected} frames to show: "
                "it is retimed or its speed changed. Reset the strip's speed (Strip > Retiming > Reset) "
                "or track the movie as a Movie Clip."
            )
    offset = start - int(animation_offset_start)
    return FrameMap(offset, int(frame_final_start) - offset, int(frame_final_end) - 1 - offset)


def file_frame_map(movie_frames: int, start_frame: int = 1) -> FrameMap:
    """A video file loaded as a clip that starts at ``start_frame`` (Blender's default is 1)."""
    return clip_frame_map(start_frame, 0, movie_frames)


@dataclass(frozen=True)
class ShotSource:
    """What a shot job tracks: the movie file, where it sits on the timeline, how Blender plays it."""

    kind: str  # "CLIP", "STRIP" or "VIDEO"
    path: str  # absolute path of the movie file
    name: str  # the clip, strip or file name (for messages and object names)
    frame_map: FrameMap
    fps: float  # the rate Blender reads from the movie (positions per second)
    size: tuple[int, int]  # (width, height) of the footage in pixels
    clip: str = ""  # name of the Movie Clip datablock that shows the footage ("" = load the file)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["frame_map"] = self.frame_map.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ShotSource:
        return cls(
            kind=str(data["kind"]),
            path=str(data["path"]),
            name=str(data["name"]),
            frame_map=FrameMap.from_dict(data["frame_map"]),
            fps=float(data["fps"]),
            size=(int(data["size"][0]), int(data["size"][1])),
            clip=str(data.get("clip", "")),
        )


def select_frames(
    frame_map: FrameMap, scene_start: int | None = None, scene_end: int | None = None, stride: int = 1
) -> tuple[int, int, int]:
    """The engine's ``frames = (start, end, step)`` (end exclusive) for scene frames ``scene_start`` …
    ``scene_end`` (inclusive; None: where the movie starts or ends) every ``stride`` frames.

    Raises ShotError when the range misses the movie or keeps fewer than 2 frames.
    """
    if stride < 1:
        raise ShotError(f"The frame step must be at least 1, got {stride}.")
    lo, hi = frame_map.scene_range
    start = lo if scene_start is None else max(lo, int(scene_start))
    end = hi if scene_end is None else min(hi, int(scene_end))
    if end < start:
        raise ShotError(
            f"The frame range {scene_start}–{scene_end} misses the movie, which is on scene frames {lo}–{hi}. "
            "Choose a range inside it."
        )
    count = (end - start) // stride + 1
    if count < 2:
        raise ShotError(
            f"Frames {start}–{end} every {stride} give {count} frame: a camera track needs at least 2. "
            "Widen the range or lower the step."
        )
    first = frame_map.position(start)
    return first, frame_map.position(end) + 1, int(stride)


def movie_positions(frame_indices: np.ndarray, timestamps_s: np.ndarray | None, fps: float) -> np.ndarray:
    """Movie positions ``(F,)`` int64 of decoded frames: ``round(t · fps)`` where the timestamp is known
    (right for variable frame rate), else the decode index."""
    idx = np.asarray(frame_indices, np.int64).reshape(-1)
    if timestamps_s is None or not fps or not math.isfinite(fps):
        return idx.copy()
    t = np.asarray(timestamps_s, np.float64).reshape(-1)
    known = np.isfinite(t)
    return np.where(known, video.movie_positions(np.where(known, t, 0.0), fps), idx)


def scene_keys(
    frame_indices: np.ndarray, timestamps_s: np.ndarray | None, fps: float, frame_map: FrameMap
) -> tuple[np.ndarray, np.ndarray]:
    """Where each view of a shot is keyed: ``(scene_frames (K,), rows (K,))``.

    ``rows`` index the bundle's views. Two views on the same scene frame (variable frame rate footage
    faster than ``fps``) keep the later one, the frame Blender shows there. Views must be in time order.
    """
    frames = frame_map.scene_frame(movie_positions(frame_indices, timestamps_s, fps))
    frames = np.asarray(frames, np.int64).reshape(-1)
    if len(frames) == 0:
        raise ShotError("The shot has no frames.")
    if np.any(np.diff(frames) < 0):
        raise ShotError("The shot's frames are not in time order; the bundle is damaged.")
    keep = np.append(frames[1:] != frames[:-1], True)  # the last view of each scene frame
    rows = np.flatnonzero(keep)
    return frames[rows], rows


def exact_fps(fps: float) -> tuple[int, float]:
    """Blender's ``(render.fps, render.fps_base)`` for a frame rate: the exact rational where there is one.

    29.97… (30000/1001) → (30, 1.001); 23.976… → (24, 1.001); 25 → (25, 1.0); 12.5 → (25, 2.0).
    """
    if not fps or not math.isfinite(fps) or fps <= 0:
        raise ShotError(f"The footage's frame rate {fps!r} is not a positive number.")
    rate = Fraction(fps).limit_denominator(1001)
    if abs(float(rate) - fps) > 1e-6 * fps:
        rate = Fraction(fps).limit_denominator(100_000)
    if rate.denominator == 1001:  # NTSC rates: 24000/1001, 30000/1001, 60000/1001
        return int(round(rate.numerator / 1000)), 1.001
    if rate.numerator > 32767:
        return int(round(fps)), round(fps) / fps
    return int(rate.numerator), float(rate.denominator)
