"""Importing a shot bundle: one camera keyed on the right scene frames, a steady lens, the plate behind
it, the scene set up for the footage, the root carrying the world alignment, and the solve report."""

from __future__ import annotations

import math

import bpy
import numpy as np
import pytest

from engine.formats.bundle import read_bundle
from engine.geometry.trajectory import euler_xyz_to_matrix
from tests.engine.media import make_test_images, write_test_video

from .shots import FOCAL_PLATE, PLATE_HW, shot_arrays, shot_meta, write_shot_bundle


def _similarity(scale=1.7, angle=0.4, t=(0.3, -0.2, 0.1)) -> np.ndarray:
    m = np.eye(4)
    c, s = math.cos(angle), math.sin(angle)
    m[:3, :3] = scale * np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    m[:3, 3] = t
    return m


def _fcurves(sub, id_block) -> dict[tuple[str, int], bpy.types.FCurve]:
    return {(fc.data_path, fc.array_index): fc for fc in sub("scene.animation").fcurves_of(id_block)}


def _key_frames(fcurve) -> np.ndarray:
    co = np.empty(2 * len(fcurve.keyframe_points), np.float32)
    fcurve.keyframe_points.foreach_get("co", co)
    return co[0::2]


def _c2w_blender(w2c: np.ndarray) -> np.ndarray:
    out = np.tile(np.eye(4), (len(w2c), 1, 1))
    rot = np.swapaxes(w2c[:, :, :3], 1, 2)
    out[:, :3, :3] = rot @ np.diag([1.0, -1.0, -1.0])
    out[:, :3, 3] = -np.einsum("nij,nj->ni", rot, w2c[:, :, 3])
    return out


def test_a_shot_becomes_one_camera_keyed_on_its_scene_frames(clean_scene, sub, tmp_path):
    shot = sub("scene.shot")
    frames = np.arange(4, 40, 3)  # a stride of 3 from movie frame 4
    alignment = _similarity()
    folder = write_shot_bundle(
        tmp_path / "shot", frames, world_alignment=alignment, fps=30000 / 1001, focal_jitter=0.01
    )
    result = shot.import_shot(bpy.context, folder)
    scene = clean_scene

    cameras = [o for o in bpy.data.objects if o.type == "CAMERA"]
    assert len(cameras) == 1 and result.cameras == cameras
    cam = cameras[0]
    assert cam.parent == result.root and result.points.parent == result.root
    assert np.allclose(np.array(result.root.matrix_world), alignment, atol=1e-6)

    # The movie starts on scene frame 1, so movie frame k is keyed on scene frame k + 1.
    curves = _fcurves(sub, cam)
    assert set(curves) >= {("location", i) for i in range(3)} | {("rotation_quaternion", i) for i in range(4)}
    assert np.array_equal(_key_frames(curves["location", 0]), frames + 1)
    assert (scene.frame_start, scene.frame_end) == (5, 38)
    assert (scene.render.fps, scene.render.fps_base) == (30, pytest.approx(1.001))
    assert (scene.render.resolution_x, scene.render.resolution_y) == (PLATE_HW[1], PLATE_HW[0])
    assert scene.camera == cam

    # One lens for the whole shot: the bundle's robust focal, not the per-frame jitter.
    assert cam.data.animation_data is None
    focal = read_bundle(folder).shot["focal_px"]
    assert focal == pytest.approx(FOCAL_PLATE, rel=0.01)
    assert cam.data.lens == pytest.approx(focal * 36.0 / PLATE_HW[1], rel=1e-6)

    # At every key the camera sits where the bundle says, through the root's alignment.
    expected = alignment @ _c2w_blender(shot_arrays(frames)["extrinsics"])
    for row in (0, 5, len(frames) - 1):
        scene.frame_set(int(frames[row]) + 1)
        assert np.allclose(np.array(cam.matrix_world), expected[row], atol=1e-4)


def test_euler_keys_are_filtered_and_give_the_same_camera(clean_scene, sub, tmp_path):
    shot = sub("scene.shot")
    n = 24
    # A camera panning through ±180° about Z: raw Euler angles would jump by 2π.
    yaw = np.linspace(2.6, 3.8, n)
    c2w = euler_xyz_to_matrix(np.column_stack([np.full(n, 1.4), np.zeros(n), yaw]))
    rot_cv = np.swapaxes(c2w @ np.diag([1.0, -1.0, -1.0]), 1, 2)
    w2c = np.concatenate([rot_cv, np.zeros((n, 3, 1))], axis=2)
    folder = write_shot_bundle(tmp_path / "pan", np.arange(n), w2c=w2c)
    options = shot.ShotImportOptions(rotation_mode="EULER", points=False)
    cam = shot.import_shot(bpy.context, folder, options).cameras[0]
    assert cam.rotation_mode == "XYZ"
    z = _fcurves(sub, cam)["rotation_euler", 2]
    values = np.array([z.evaluate(f) for f in range(1, n + 1)])
    assert np.abs(np.diff(values)).max() < 0.1  # no 360° jump where the raw angle wraps
    for f in (1, 12, n):
        clean_scene.frame_set(f)
        world = np.array(cam.matrix_world)[:3, :3]
        assert np.allclose(world, (np.array(cam.parent.matrix_world)[:3, :3] @ c2w[f - 1]), atol=1e-4)


def test_animated_focal_keys_the_lens_for_zoom_shots(clean_scene, sub, tmp_path):
    shot = sub("scene.shot")
    frames = np.arange(10)
    arrays = shot_arrays(frames, focal_jitter=0.05)
    folder = write_shot_bundle(tmp_path / "zoom", frames, focal_jitter=0.05)
    options = shot.ShotImportOptions(animated_focal=True, points=False)
    cam = shot.import_shot(bpy.context, folder, options).cameras[0]
    lens = _fcurves(sub, cam.data)["lens", 0]
    assert np.array_equal(_key_frames(lens), frames + 1)
    expected = arrays["intrinsics_original"][:, 0, 0] * 36.0 / PLATE_HW[1]
    assert np.allclose([lens.evaluate(f + 1) for f in frames], expected, rtol=1e-5)


def test_variable_frame_rate_frames_land_where_their_timestamps_are(clean_scene, sub, tmp_path):
    shot = sub("scene.shot")
    frames = np.arange(6)
    times = np.array([0, 1, 2, 4, 5, 7]) / 24.0  # two dropped frames: decode order ≠ movie position
    folder = write_shot_bundle(tmp_path / "vfr", frames, timestamps_s=times)
    cam = shot.import_shot(bpy.context, folder, shot.ShotImportOptions(points=False)).cameras[0]
    assert np.array_equal(_key_frames(_fcurves(sub, cam)["location", 0]), [1, 2, 3, 5, 6, 8])


def test_the_solve_report_goes_on_the_root_into_a_text_and_the_summary(clean_scene, sub, tmp_path):
    shot = sub("scene.shot")
    frames = np.arange(10, 30, 2)
    errors = [0.3] * 10
    errors[4] = 2.5  # view 4 = movie frame 18 = scene frame 19
    joints = [{"chunk": 1, "relative_residual": 0.004, "inlier_fraction": 0.9, "method": "points"}]
    meta = shot_meta(10, errors=errors, joints=joints)
    folder = write_shot_bundle(tmp_path / "report", frames, meta=meta)
    result = shot.import_shot(bpy.context, folder)
    root = result.root
    assert root["da3_solve_error_px"] == pytest.approx(0.3)
    assert list(root["da3_solve_worst_frames"])[0] == 19
    assert root["da3_solve_worst_errors"][0] == pytest.approx(2.5)
    assert root["da3_solve_joint_residuals"][0] == pytest.approx(0.004)
    text = bpy.data.texts[root["da3_solve_text"]].as_string()
    assert "   19  2.500" in text and "chunk 1: 0.400 %" in text
    assert "0.30 px (usable)" in result.summary and "frames 11-29" in result.summary
    summary = sub("scene.solve_report").solve_summary_of(root)
    assert summary.worst[0] == (19, pytest.approx(2.5)) and summary.joints[0].relative_residual == 0.004


def test_the_movie_file_becomes_the_background_on_the_same_frames(clean_scene, sub, tmp_path):
    shot = sub("scene.shot")
    session_shot = sub("session.shot")
    movie = write_test_video(tmp_path / "plate.mkv", make_test_images(30, 48, 64), fps=24)
    frames = np.arange(0, 30, 2)
    arrays_path = write_shot_bundle(tmp_path / "bg", frames, source_frames=30)
    source = session_shot.ShotSource(
        "STRIP", str(movie), "plate", session_shot.FrameMap(offset=7, first=3, last=25), 24.0, (64, 48)
    )
    result = shot.import_shot(bpy.context, arrays_path, shot_source=source)
    cam = result.cameras[0]
    background = cam.data.background_images[0]
    assert cam.data.show_background_images and background.source == "MOVIE_CLIP"
    clip = background.clip
    assert clip == result.clip and bpy.path.abspath(clip.filepath) == str(movie)
    # The clip shows movie position p on scene frame p + 7, like the strip.
    assert clip.frame_start - clip.frame_offset == 7
    assert np.array_equal(_key_frames(_fcurves(sub, cam)["location", 0]), frames + 7)


def test_a_failed_shot_import_leaves_nothing_behind(clean_scene, sub, tmp_path):
    shot = sub("scene.shot")
    folder = write_shot_bundle(tmp_path / "bad", np.arange(5))
    before = {name: len(getattr(bpy.data, name)) for name in ("objects", "cameras", "texts", "collections")}
    with pytest.raises(ValueError):
        shot.import_shot(bpy.context, folder, shot.ShotImportOptions(rotation_mode="SIDEWAYS"))
    assert {name: len(getattr(bpy.data, name)) for name in before} == before


def test_file_import_takes_a_shot_bundle_and_logs_the_solve(clean_scene, tmp_path, capfd):
    folder = write_shot_bundle(tmp_path / "farm", np.arange(0, 20, 2))
    result = bpy.ops.import_scene.da3_reconstruction(
        filepath=str(folder / "manifest.json"), camera_rotation="EULER", backgrounds=False
    )
    assert result == {"FINISHED"}
    cameras = [o for o in bpy.data.objects if o.type == "CAMERA"]
    assert len(cameras) == 1 and cameras[0].rotation_mode == "XYZ"
    assert (clean_scene.frame_start, clean_scene.frame_end) == (1, 19)
    printed = capfd.readouterr().out
    assert "Imported a camera on frames 1-19" in printed and "Worst frames:" in printed
