"""Tracking a shot end to end: a movie strip in the Video Sequencer → the real engine → one camera.

The modal path is driven as in test_reconstruct (``begin``, then TIMER events into ``modal_step``). The
engine is the real one (``python -m engine serve`` with this venv's Python) on a generated da3-small
checkpoint, so the geometry is meaningless but every step is real: the strip's frames are decoded by
the engine, solved in chunks with progress per chunk, written as a shot bundle and imported.
"""

from __future__ import annotations

import sys

import bpy
import numpy as np
import pytest

from tests.engine.media import write_test_video
from tests.engine.synthetic_shot import render

from .conftest import ENGINE_PYTHON, draw
from .test_reconstruct import FakeOperator, drive

MOVIE_FRAMES = 16


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """16 frames (64×48, 24 fps, lossless) of the analytic dolly shot of tests/engine/synthetic_shot."""
    shot = render(MOVIE_FRAMES)
    path = tmp_path_factory.mktemp("movie") / "dolly.mkv"
    return str(write_test_video(path, list(shot.images), fps=24))


def _location_keys(sub, cam) -> np.ndarray:
    """The scene frames the camera's location is keyed on (the importer's own key reader)."""
    return sub("scene.animation").key_values(cam, "location", 3)[0].astype(int)


def test_a_shot_request_takes_the_strip_range_stride_and_chunks(clean_scene, sub, tmp_path, movie):
    jobspec, session_shot = sub("session.jobspec"), sub("session.shot")
    source = session_shot.ShotSource(
        "STRIP", movie, "dolly", session_shot.FrameMap(offset=9, first=2, last=13), 24.0, (64, 48)
    )
    settings = {"model": "DA3_SMALL", "process_res": 56, "shot_range": (12, 40), "shot_stride": 3}
    request = jobspec.build_shot_request(
        {**settings, "chunk_size": 6, "chunk_overlap": 2},
        {"default_model": "DA3_SMALL"},
        str(tmp_path),
        source,
    )
    assert request.inputs == (movie,)
    assert request.options.frames == (3, 14, 3)  # scene 12..22 shows movie frames 3..13
    assert (request.options.chunk_size, request.options.chunk_overlap) == (6, 2)
    assert request.options.frame_positions_fps == 24.0  # movie positions, as Blender numbers VFR footage
    with pytest.raises(jobspec.JobSpecError, match="smaller than the chunk size"):
        jobspec.build_shot_request(
            {**settings, "chunk_size": 4, "chunk_overlap": 4}, {"default_model": "DA3_SMALL"}, "", source
        )
    with pytest.raises(jobspec.JobSpecError, match="misses the movie"):
        jobspec.build_shot_request(
            {**settings, "shot_range": (30, 40)}, {"default_model": "DA3_SMALL"}, "", source
        )


def test_tracking_a_trimmed_strip_with_the_real_engine(clean_scene, sub, prefs, checkpoint, movie):
    reconstruct, panels = sub("operators.reconstruct"), sub("panels.reconstruct")
    scene = clean_scene
    editor = scene.sequence_editor_create()
    strips = editor.strips if hasattr(editor, "strips") else editor.sequences
    strip = strips.new_movie("dolly", movie, channel=1, frame_start=10)
    strip.animation_offset_start = 1  # hold offset: the content starts at movie frame 1 ...
    strip.frame_offset_start = 2  # ... trimmed by 2: the strip plays from movie frame 3
    strip.frame_offset_end = 1  # to movie frame 14
    editor.active_strip, strip.select = strip, True
    # Where the strip puts movie frame 0, from the strip's own timing: 4.x keeps the content's start on
    # scene 10 when the hold offset changes (scene 10 shows movie frame 1), 5.x moves it to 11.
    timing = sub("scene.compat").strip_timing(strip)
    offset = int(timing.start) - timing.trim_start
    assert timing.first == offset + 3 and timing.end == offset + 15

    s = scene.da3
    s.input_mode = "STRIP"
    s.shot_stride = 2
    s.chunk_size, s.chunk_overlap = 4, 2
    s.model, s.custom_model, s.process_res = "CUSTOM", str(checkpoint), 56
    s.max_points = 5000
    prefs.engine_python, prefs.device = ENGINE_PYTHON, "cpu"
    assert reconstruct.why_not_ready(bpy.context) is None

    job = reconstruct.begin(bpy.context)
    assert (job.frames, job.unit) == (6, "frames")  # movie frames 3, 5, …, 13
    op = FakeOperator()
    seen = []

    def watch(_i):
        seen.extend(draw(panels.VIEW3D_PT_da3_reconstruct).texts("progress"))

    assert drive(sub, op, on_tick=watch, timeout=240) == {"FINISHED"}, op.reports
    assert any(text.startswith("Solving chunk") and "/" in text for text in seen), seen

    cameras = [o for o in bpy.data.objects if o.type == "CAMERA"]
    assert len(cameras) == 1
    cam = cameras[0]
    keys = _location_keys(sub, cam)
    assert keys.tolist() == [offset + m for m in (3, 5, 7, 9, 11, 13)]  # where the strip shows them
    assert (scene.frame_start, scene.frame_end) == (offset + 3, offset + 13) and scene.camera == cam
    assert (scene.render.resolution_x, scene.render.resolution_y) == (64, 48)
    assert (scene.render.fps, scene.render.fps_base) == (24, 1.0)
    background = cam.data.background_images[0]
    assert background.source == "MOVIE_CLIP" and bpy.path.abspath(background.clip.filepath) == movie
    assert background.clip.frame_start - background.clip.frame_offset == offset  # the strip's placement
    root = cam.parent
    assert root.get("da3_job") == job.job and root.get("da3_kind") == "shot"
    assert any(o.type == "MESH" for o in root.children)
    assert f"Imported a camera on frames {offset + 3}-{offset + 13}" in op.reports[0][1]
    assert any("Solve" in text for _, text in op.reports)  # the solve report went to the Info log
    assert sys.modules.get("torch") is None


def test_tracking_the_clip_editors_clip_keys_it_and_shows_it(clean_scene, sub, tmp_path, movie):
    """The Movie Clip path with the scripted fake engine (its result: a prepared shot bundle)."""
    from tests.fakes.fake_engine import fake_engine_argv, fake_env

    from .shots import write_shot_bundle

    scene = clean_scene
    clip = bpy.data.movieclips.load(movie)
    clip.frame_start = 5  # movie frame k on scene frame k + 5
    scene.active_clip = clip
    s = scene.da3
    s.input_mode, s.shot_stride, s.model = "CLIP", 3, "DA3_SMALL"
    solved = np.arange(0, MOVIE_FRAMES, 3)
    bundle = write_shot_bundle(tmp_path / "bundle", solved, source_frames=MOVIE_FRAMES, plate_hw=(48, 64))
    sub("operators.runtime").set_engine_override(fake_engine_argv(), fake_env("ok", bundle=str(bundle)))
    job = sub("operators.reconstruct").begin(bpy.context)
    assert job.frames == len(solved) and job.meta["shot"]["clip"] == clip.name
    assert drive(sub, FakeOperator()) == {"FINISHED"}
    cam = next(o for o in bpy.data.objects if o.type == "CAMERA")
    assert _location_keys(sub, cam).tolist() == (solved + 5).tolist()
    assert cam.data.background_images[0].clip == clip and len(bpy.data.movieclips) == 1
    assert (scene.frame_start, scene.frame_end) == (5, 20)


def test_cancel_between_chunks_imports_nothing(clean_scene, sub, prefs, checkpoint, movie):
    from .test_reconstruct import ESC

    scene = clean_scene
    s = scene.da3
    s.input_mode, s.video_file = "VIDEO", movie
    s.chunk_size, s.chunk_overlap = 4, 2
    s.model, s.custom_model, s.process_res = "CUSTOM", str(checkpoint), 56
    prefs.engine_python, prefs.device = ENGINE_PYTHON, "cpu"
    runtime = sub("operators.runtime")
    sub("operators.reconstruct").begin(bpy.context)

    def cancel_after_first_chunk(_i):
        job = runtime.service().job
        return ESC if job.stage == "network" and job.current >= 1 and job.cancel_requested is None else None

    assert drive(sub, FakeOperator(), on_tick=cancel_after_first_chunk, timeout=240) == {"CANCELLED"}
    assert runtime.service().job.outcome == "cancelled"
    assert not [o for o in bpy.data.objects if o.type == "CAMERA"] and len(bpy.data.movieclips) == 0
