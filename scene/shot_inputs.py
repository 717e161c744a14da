"""Blender's movie datablocks → a ``session.shot.ShotSource``: the Clip Editor's Movie Clip, a movie strip
in the Video Sequencer, or a video file.

Only reading here (and loading a file as a Movie Clip to learn its length); the frame arithmetic is
``session.shot``'s. Each function raises ``ShotError`` with a message that says what to do.
"""

from __future__ import annotations

import os

import bpy

from ..session.shot import ShotError, ShotSource, clip_frame_map, file_frame_map, strip_frame_map
from .compat import sequencer_strips, strip_timing

__all__ = [
    "active_clip",
    "clip_source",
    "file_source",
    "load_clip",
    "movie_strips",
    "selected_movie_strip",
    "strip_source",
]


def active_clip(context: bpy.types.Context) -> bpy.types.MovieClip | None:
    """The Movie Clip of the Clip Editor the operator runs in, else the scene's active clip (the one the
    Clip Editor and the camera's "Active Clip" use)."""
    space = getattr(context, "space_data", None)
    if space is not None and space.type == "CLIP_EDITOR" and space.clip is not None:
        return space.clip
    return context.scene.active_clip


def _movie_path(filepath: str, what: str, library=None) -> str:
    path = os.path.abspath(bpy.path.abspath(filepath, library=library))
    if not os.path.isfile(path):
        raise ShotError(f"The movie of {what} is missing: {path}. Relink it (or pick another input).")
    return path


def clip_source(clip: bpy.types.MovieClip | None) -> ShotSource:
    """A Movie Clip as it plays: ``frame_start`` shows the footage's frame ``frame_offset``."""
    if clip is None:
        raise ShotError("No Movie Clip: open one in the Clip Editor (or pick it in the Inputs section).")
    if clip.source != "MOVIE":
        raise ShotError(
            f"The clip '{clip.name}' is an image sequence; track a movie file (or reconstruct the images "
            "with the Images or Folder input)."
        )
    path = _movie_path(clip.filepath, f"the clip '{clip.name}'", clip.library)
    frame_map = clip_frame_map(clip.frame_start, clip.frame_offset, clip.frame_duration)
    width, height = clip.size
    return ShotSource(
        "CLIP", path, clip.name, frame_map, float(clip.fps), (int(width), int(height)), clip.name
    )


def movie_strips(scene: bpy.types.Scene) -> list:
    """Every movie strip of the scene's sequencer (top level and inside meta strips)."""
    return [s for s in sequencer_strips(scene) if s.type == "MOVIE"]


def selected_movie_strip(scene: bpy.types.Scene):
    """The active movie strip if it is selected, else the only selected movie strip."""
    editor = scene.sequence_editor
    active = editor.active_strip if editor is not None else None
    if active is not None and active.type == "MOVIE" and active.select:
        return active
    selected = [s for s in movie_strips(scene) if s.select]
    if len(selected) == 1:
        return selected[0]
    if not selected:
        raise ShotError("No movie strip selected: select the movie strip to track in the Video Sequencer.")
    raise ShotError(
        f"{len(selected)} movie strips are selected: click the one to track so it is the active strip."
    )


def load_clip(path: str, *, reuse: bool = False) -> bpy.types.MovieClip:
    """Load a movie file as a Movie Clip (a new datablock unless ``reuse`` and one exists for the file)."""
    try:
        return bpy.data.movieclips.load(path, check_existing=reuse)
    except RuntimeError as exc:
        raise ShotError(
            f"Blender cannot read the movie {path} ({exc}); re-encode it (e.g. H.264 MP4)."
        ) from None


def _movie_length(path: str) -> tuple[int, float, tuple[int, int]]:
    """(positions, fps, (width, height)) of a movie, from a throwaway Movie Clip."""
    clip = load_clip(path)
    try:
        return int(clip.frame_duration), float(clip.fps), (int(clip.size[0]), int(clip.size[1]))
    finally:
        bpy.data.movieclips.remove(clip)


def strip_source(strip) -> ShotSource:
    """A movie strip as the sequencer plays it: its start frame, hold offsets and trimmed range."""
    if strip is None or strip.type != "MOVIE":
        raise ShotError("Pick a movie strip (not an image, scene or effect strip).")
    path = _movie_path(strip.filepath, f"the strip '{strip.name}'")
    frames, clip_fps, size = _movie_length(path)
    timing = strip_timing(strip)
    frame_map = strip_frame_map(
        timing.start,
        timing.first,
        timing.end,
        timing.trim_start,
        frame_duration=timing.length,
        movie_frames=frames,
        animation_offset_end=timing.trim_end,
        reversed_frames=timing.reversed,
    )
    fps = float(strip.fps) if strip.fps > 0 else clip_fps
    if strip.elements and strip.elements[0].orig_width > 0:
        size = (int(strip.elements[0].orig_width), int(strip.elements[0].orig_height))
    return ShotSource("STRIP", path, strip.name, frame_map, fps, size)


def file_source(filepath: str, start_frame: int = 1) -> ShotSource:
    """A video file, placed like a freshly loaded clip: its first frame on scene frame ``start_frame``."""
    if not filepath:
        raise ShotError("No video file chosen: pick one in the Inputs section.")
    path = _movie_path(filepath, "the chosen video")
    frames, fps, size = _movie_length(path)
    return ShotSource("VIDEO", path, os.path.basename(path), file_frame_map(frames, start_frame), fps, size)
