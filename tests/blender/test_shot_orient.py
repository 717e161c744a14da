"""Set Floor, Set Origin, Set Scale and the Camera Solve panel on an imported shot.

The shot's ground truth has its floor at Z = 0 (80 % of the cloud) and box tops at Z = 1; the bundle's
engine world is that truth moved by a random similarity, and the bundle has no alignment, so the
imported floor is tilted and off in height until Set Floor runs. Every operator may change the root's
transform and nothing else: the points and keyframes under it keep their engine coordinates.
"""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from tests.engine.synthetic_shot import random_sim3

from .conftest import draw
from .shots import shot_arrays, shot_meta, write_shot_bundle

FRAMES = np.arange(0, 48, 4)
WORLD = random_sim3(np.random.default_rng(3))  # ground truth → the bundle's engine world


@pytest.fixture
def shot_scene(clean_scene, sub, tmp_path):
    """An imported shot whose engine world is the truth moved by WORLD (no alignment in the bundle)."""
    folder = write_shot_bundle(tmp_path / "shot", FRAMES, world=WORLD)
    result = sub("scene.shot").import_shot(bpy.context, folder)
    bpy.context.view_layer.objects.active = result.points
    arrays = shot_arrays(FRAMES, world=WORLD)
    return result, arrays


def _world(root, xyz):
    m = np.array(root.matrix_world)
    return xyz @ m[:3, :3].T + m[:3, 3]


def _camera_centres(w2c):
    return -np.einsum("nji,nj->ni", w2c[:, :, :3], w2c[:, :, 3])


def _untouched(result, arrays):
    """The cloud still holds the bundle's engine coordinates (nothing baked in)."""
    xyz = np.empty(3 * len(result.points.data.vertices), np.float32)
    result.points.data.attributes["position"].data.foreach_get("vector", xyz)
    return np.allclose(xyz.reshape(-1, 3), arrays["points_xyz"], atol=1e-6)


def _check_floor(result, arrays):
    root = result.root
    points = _world(root, arrays["points_xyz"].astype(np.float64))
    n_top = len(points) // 5
    cams = _world(root, _camera_centres(arrays["extrinsics"]))
    truth = _camera_centres(shot_arrays(FRAMES)["extrinsics"])
    scale = np.cbrt(np.linalg.det(np.array(root.matrix_world)[:3, :3])) * WORLD.s
    assert np.abs(points[n_top:, 2]).max() < 1e-4 * scale  # the floor is Z = 0 ...
    assert np.allclose(points[:n_top, 2], scale, rtol=1e-4)  # ... box tops 1 m above it, ...
    assert np.allclose(cams[:, 2], scale * truth[:, 2], rtol=1e-4)  # ... and the cameras on the up side
    assert _untouched(result, arrays)


def test_set_floor_finds_the_floor_in_the_whole_cloud(shot_scene):
    result, arrays = shot_scene
    assert bpy.ops.da3.set_floor() == {"FINISHED"}
    _check_floor(result, arrays)


def test_set_floor_from_three_selected_points_in_edit_mode(shot_scene):
    result, arrays = shot_scene
    cloud = result.points
    n_top = len(arrays["points_xyz"]) // 5
    mask = np.zeros(len(cloud.data.vertices), bool)
    mask[[n_top + 3, n_top + 50, n_top + 200]] = True  # three floor points
    cloud.data.vertices.foreach_set("select", mask)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        assert bpy.ops.da3.set_floor() == {"FINISHED"}
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    _check_floor(result, arrays)


def test_set_origin_and_set_scale_keep_the_floor(shot_scene):
    result, arrays = shot_scene
    root = result.root
    assert bpy.ops.da3.set_floor() == {"FINISHED"}
    spot = _world(root, arrays["points_xyz"][:1].astype(np.float64))[0]  # a box top
    bpy.context.scene.cursor.location = spot
    assert bpy.ops.da3.set_origin() == {"FINISHED"}
    moved = _world(root, arrays["points_xyz"][:1].astype(np.float64))[0]
    assert np.allclose(moved[:2], 0.0, atol=1e-5) and moved[2] == pytest.approx(spot[2], rel=1e-6)

    # Two empties on two floor points: after Set Scale they are 2.5 m apart.
    a, b = _world(root, arrays["points_xyz"][[150, 300]].astype(np.float64))
    markers = []
    for p in (a, b):
        empty = bpy.data.objects.new("marker", None)
        bpy.context.scene.collection.objects.link(empty)
        empty.parent, empty.location = root, np.linalg.solve(np.array(root.matrix_world), [*p, 1.0])[:3]
        markers.append(empty)
    bpy.context.view_layer.update()
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in markers)
    bpy.context.view_layer.objects.active = markers[0]
    assert bpy.ops.da3.set_scale(distance=2.5) == {"FINISHED"}
    bpy.context.view_layer.update()
    gap = np.linalg.norm(
        np.array(markers[0].matrix_world.translation) - np.array(markers[1].matrix_world.translation)
    )
    assert gap == pytest.approx(2.5, rel=1e-5)
    _check_floor(result, arrays)
    # Box tops are 1 m in truth; two floor points 2.5 m apart set the scale in metres.
    truth_gap = np.linalg.norm(np.diff(shot_arrays(FRAMES)["points_xyz"][[150, 300]], axis=0))
    top = _world(root, arrays["points_xyz"][:1].astype(np.float64))[0, 2]
    assert top == pytest.approx(2.5 / truth_gap, rel=1e-4)

    assert bpy.ops.da3.reset_alignment() == {"FINISHED"}
    assert np.allclose(np.array(root.matrix_world).ravel(), root["da3_alignment"], atol=1e-6)


def test_orientation_needs_a_reconstruction_and_a_good_selection(shot_scene):
    result, arrays = shot_scene
    cloud = result.points
    mask = np.zeros(len(cloud.data.vertices), bool)
    mask[[10, 20]] = True
    cloud.data.vertices.foreach_set("select", mask)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        with pytest.raises(RuntimeError, match="at least 3 points"):
            bpy.ops.da3.set_floor()
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    mask[30] = True
    cloud.data.vertices.foreach_set("select", mask)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        with pytest.raises(RuntimeError, match="exactly 2 points"):
            bpy.ops.da3.set_scale(distance=1.0)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    with pytest.raises(RuntimeError, match="exactly 2 objects"):
        bpy.ops.da3.set_scale(distance=1.0)
    assert np.allclose(
        np.array(result.root.matrix_world).ravel(), result.root["da3_alignment"], atol=1e-6
    )  # unchanged
    lone = bpy.data.objects.new("lone", None)
    bpy.context.scene.collection.objects.link(lone)
    bpy.context.view_layer.objects.active = lone
    bpy.context.scene.camera = None
    assert not bpy.ops.da3.set_floor.poll()


def test_camera_solve_panel_shows_the_report_and_jumps_to_the_worst_frame(clean_scene, sub, tmp_path):
    errors = [0.2] * len(FRAMES)
    errors[5] = 1.7
    joints = [{"chunk": 1, "relative_residual": 0.003, "inlier_fraction": 0.95, "method": "points"}]
    folder = write_shot_bundle(
        tmp_path / "report", FRAMES, meta=shot_meta(len(FRAMES), errors=errors, joints=joints)
    )
    result = sub("scene.shot").import_shot(bpy.context, folder)
    bpy.context.view_layer.objects.active = result.cameras[0]
    panel = bpy.types.VIEW3D_PT_da3_solve
    assert panel.poll(bpy.context)
    layout = draw(panel)
    labels = layout.texts()
    assert "Solve error 0.20 px" in labels and any("Accurate" in t for t in labels)
    assert "Chunk 1: 0.30 % of depth" in labels
    worst = int(FRAMES[5]) + 1
    assert layout.log.index(("operator", "da3.jump_to_frame")) < layout.log.index(
        ("label", "Chunk joints (1):")
    )
    assert bpy.ops.da3.jump_to_frame(frame=worst) == {"FINISHED"}
    assert clean_scene.frame_current == worst
    assert list(result.root["da3_solve_worst_frames"])[0] == worst
    assert {"da3.set_floor", "da3.set_origin", "da3.set_scale"} <= set(layout.texts("operator"))


def test_shot_inputs_and_options_in_the_panel(clean_scene, sub):
    s = clean_scene.da3
    s.input_mode = "STRIP"
    assert bpy.types.VIEW3D_PT_da3_shot.poll(bpy.context)
    labels = draw(bpy.types.VIEW3D_PT_da3_inputs).texts()
    assert "Select a movie strip in the Video Sequencer" in labels
    props = draw(bpy.types.VIEW3D_PT_da3_shot).texts("prop")
    assert {"shot_stride", "chunk_size", "chunk_overlap", "camera_rotation", "animated_focal"} <= set(props)
    reason = sub("operators.reconstruct").why_not_ready(bpy.context)
    assert reason == "Select a movie strip in the Video Sequencer"
    s.input_mode = "VIDEO"
    assert "video_file" in draw(bpy.types.VIEW3D_PT_da3_inputs).texts("prop")
    assert sub("operators.reconstruct").why_not_ready(bpy.context) == "Choose a video file first"
    s.input_mode = "CLIP"
    assert "active_clip" in draw(bpy.types.VIEW3D_PT_da3_inputs).texts("prop")
    assert "Clip Editor" in sub("operators.reconstruct").why_not_ready(bpy.context)
    s.input_mode = "FILES"
    assert not bpy.types.VIEW3D_PT_da3_shot.poll(bpy.context)
