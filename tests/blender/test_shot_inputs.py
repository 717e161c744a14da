"""Shot inputs: scene frames ↔ movie frames for Movie Clips, trimmed and offset movie strips and files.

The movie's frames carry their numbers as a barcode (tests/engine/media.py), and Blender itself says
what it shows on a scene frame: the Video Sequencer's render for a strip, the compositor's Movie Clip
node for a clip (the same clip a camera background shows). So these tests check our frame arithmetic
against Blender, not against a copy of it: the imported camera's keys must sit on the scene frames
where the strip (and the background clip) show the very movie frames the camera was solved on.
"""

from __future__ import annotations

import os

import bpy
import numpy as np
import pytest

from tests.engine.media import make_test_images, read_frame_number, write_test_video

from .shots import write_shot_bundle

MOVIE_FRAMES = 40


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """40 frames of 96×64, frame k showing the number k (lossless, 24 fps)."""
    folder = tmp_path_factory.mktemp("movie")
    return str(write_test_video(folder / "numbers.mkv", make_test_images(MOVIE_FRAMES, 64, 96), fps=24))


def _plain_output(scene, tmp_path):
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 96, 64, 100
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = os.path.join(str(tmp_path), "frame.png")


def _shown_number(scene, frame: int) -> int:
    """Render scene ``frame`` (sequencer or compositor, whatever is set up) and read its barcode."""
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(scene.render.filepath)
    try:
        pixels = np.empty(len(image.pixels), np.float32)
        image.pixels.foreach_get(pixels)
        rgb = pixels.reshape(image.size[1], image.size[0], image.channels)[::-1, :, :3]
    finally:
        bpy.data.images.remove(image)
    return read_frame_number((rgb * 255 + 0.5).astype(np.uint8))


def _show_clip_in_compositor(scene, clip):
    """Render the clip as the compositor's Movie Clip node sees it on the current frame."""
    scene.render.use_sequencer = False
    scene.render.use_compositing = True
    if bpy.app.version >= (5, 0, 0):
        tree = bpy.data.node_groups.new("Clip", "CompositorNodeTree")
        scene.compositing_node_group = tree
        out = tree.nodes.new("NodeGroupOutput")
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        target = out.inputs[0]
    else:
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        target = tree.nodes.new("CompositorNodeComposite").inputs["Image"]
    node = tree.nodes.new("CompositorNodeMovieClip")
    node.clip = clip
    tree.links.new(node.outputs["Image"], target)


def _strips(scene):
    editor = scene.sequence_editor_create()
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def _key_frames(sub, cam) -> np.ndarray:
    """The scene frames the camera's location is keyed on (the importer's own key reader)."""
    return sub("scene.animation").key_values(cam, "location", 3)[0].astype(int)


def test_a_trimmed_offset_strip_lands_on_the_right_scene_frames(clean_scene, sub, tmp_path, movie):
    inputs, shot, session_shot = sub("scene.shot_inputs"), sub("scene.shot"), sub("session.shot")
    scene = clean_scene
    _plain_output(scene, tmp_path)
    strip = _strips(scene).new_movie("plate", movie, channel=2, frame_start=10)
    strip.animation_offset_start = 2  # the strip's content starts at movie frame 2 ...
    strip.frame_offset_start = 3  # ... and is trimmed by 3 at the start (it plays from movie frame 5)
    strip.frame_offset_end = 5
    scene.sequence_editor.active_strip = strip
    strip.select = True

    source = inputs.strip_source(inputs.selected_movie_strip(scene))
    timing = sub("scene.compat").strip_timing(strip)
    assert source.frame_map.scene_range == (timing.first, timing.end - 1)
    scene.render.use_sequencer = True
    for frame in (timing.first, 20, timing.end - 1):
        assert _shown_number(scene, frame) == source.frame_map.position(frame)

    # A job over scene frames 15..36 every 4th frame, then the camera of those movie frames.
    start, end, step = session_shot.select_frames(source.frame_map, 15, 36, 4)
    solved = np.arange(start, end, step)
    folder = write_shot_bundle(tmp_path / "strip", solved, source_frames=MOVIE_FRAMES, plate_hw=(64, 96))
    result = shot.import_shot(bpy.context, folder, shot.ShotImportOptions(points=False), source)
    keys = _key_frames(sub, result.cameras[0])
    assert keys[0] == 15 and len(keys) == len(solved)
    assert (scene.frame_start, scene.frame_end) == (keys[0], keys[-1])
    shown = [_shown_number(scene, int(f)) for f in keys]
    assert shown == solved.tolist()  # the strip shows, on each key, the frame the camera was solved on

    # The background clip loaded for the strip shows the same frames on the same scene frames.
    strip.mute = True
    _show_clip_in_compositor(scene, result.clip)
    assert [_shown_number(scene, int(f)) for f in keys[::2]] == solved[::2].tolist()


def test_a_movie_clip_with_start_and_offset_maps_like_the_clip_editor(clean_scene, sub, tmp_path, movie):
    inputs, shot, session_shot = sub("scene.shot_inputs"), sub("scene.shot"), sub("session.shot")
    scene = clean_scene
    _plain_output(scene, tmp_path)
    clip = bpy.data.movieclips.load(movie)
    clip.frame_start, clip.frame_offset = 20, 4  # scene frame 20 shows movie frame 4
    scene.active_clip = clip
    source = inputs.clip_source(inputs.active_clip(bpy.context))
    assert source.kind == "CLIP" and source.clip == clip.name
    assert source.frame_map.scene_range == (20, 20 + MOVIE_FRAMES - 1 - 4)
    _show_clip_in_compositor(scene, clip)
    for frame in (20, 33, source.frame_map.scene_range[1]):
        assert _shown_number(scene, frame) == source.frame_map.position(frame)

    start, end, step = session_shot.select_frames(source.frame_map, None, None, 5)
    solved = np.arange(start, end, step)
    assert solved[0] == 4
    folder = write_shot_bundle(tmp_path / "clip", solved, source_frames=MOVIE_FRAMES, plate_hw=(64, 96))
    result = shot.import_shot(bpy.context, folder, shot.ShotImportOptions(points=False), source)
    assert result.clip == clip and result.cameras[0].data.background_images[0].clip == clip
    keys = _key_frames(sub, result.cameras[0])
    assert [_shown_number(scene, int(f)) for f in keys[::2]] == solved[::2].tolist()


def test_a_video_file_starts_on_frame_one(clean_scene, sub, movie):
    inputs = sub("scene.shot_inputs")
    source = inputs.file_source(movie)
    assert source.frame_map.scene_range == (1, MOVIE_FRAMES)
    assert source.size == (96, 64) and source.fps == pytest.approx(24.0)
    assert len(bpy.data.movieclips) == 0  # probing the file leaves no clip behind


def test_inputs_that_cannot_be_tracked_say_what_to_do(clean_scene, sub, tmp_path, movie):
    inputs, session_shot = sub("scene.shot_inputs"), sub("session.shot")
    scene = clean_scene
    with pytest.raises(session_shot.ShotError, match="open one in the Clip Editor"):
        inputs.clip_source(inputs.active_clip(bpy.context))
    with pytest.raises(session_shot.ShotError, match="select the movie strip"):
        inputs.selected_movie_strip(scene)
    a = _strips(scene).new_movie("a", movie, channel=1, frame_start=1)
    b = _strips(scene).new_movie("b", movie, channel=2, frame_start=1)
    a.select = b.select = True
    scene.sequence_editor.active_strip = None
    with pytest.raises(session_shot.ShotError, match="2 movie strips are selected"):
        inputs.selected_movie_strip(scene)
    a.use_reverse_frames = True
    with pytest.raises(session_shot.ShotError, match="Reverse Frames"):
        inputs.strip_source(a)
    with pytest.raises(session_shot.ShotError, match="is missing"):
        inputs.file_source(str(tmp_path / "gone.mp4"))
    with pytest.raises(session_shot.ShotError, match="retimed"):
        session_shot.strip_frame_map(1, 1, 30, 0, frame_duration=29, movie_frames=40)


def test_frame_selection_fps_and_keys(sub):
    session_shot = sub("session.shot")
    fm = session_shot.FrameMap(offset=10, first=3, last=30)  # scene frames 13..40
    assert session_shot.select_frames(fm) == (3, 31, 1)
    assert session_shot.select_frames(fm, 1, 100, 2) == (3, 31, 2)  # clipped to the movie
    assert session_shot.select_frames(fm, 20, 25, 3) == (10, 16, 3)
    with pytest.raises(session_shot.ShotError, match="misses the movie"):
        session_shot.select_frames(fm, 50, 60)
    with pytest.raises(session_shot.ShotError, match="at least 2"):
        session_shot.select_frames(fm, 20, 22, 5)
    assert session_shot.exact_fps(30000 / 1001) == (30, 1.001)
    assert session_shot.exact_fps(24000 / 1001) == (24, 1.001)
    assert session_shot.exact_fps(25.0) == (25, 1.0)
    assert session_shot.exact_fps(12.5) == (25, 2.0)
    # Variable frame rate: two decoded frames in one frame interval → the later one is the one shown.
    frames, rows = session_shot.scene_keys([0, 1, 2, 3], [0.0, 1 / 24, 1.4 / 24, 3 / 24], 24.0, fm)
    assert frames.tolist() == [10, 11, 13] and rows.tolist() == [0, 2, 3]
