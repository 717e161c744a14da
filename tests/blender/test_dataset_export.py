"""Export Dataset from Blender: the operator writes the dataset of an imported bundle in the frame of its
root as the user moved and scaled it, refuses without a reconstruction, and Esc leaves nothing behind.

Background mode has no event loop, so the tests call ``begin`` (what ``invoke`` calls) and feed
``modal_step`` fake TIMER and ESC events, as the window manager would.
"""

from __future__ import annotations

import json
import threading
import time
import types

import bpy
import numpy as np
from mathutils import Matrix

from .bundles import WALL_Z, write_wall_bundle
from .conftest import draw

TIMER = types.SimpleNamespace(type="TIMER", value="NOTHING")
ESC = types.SimpleNamespace(type="ESC", value="PRESS")


class FakeOperator:
    def __init__(self):
        self._timer = None
        self._task = None
        self.reports: list[tuple[set, str]] = []

    def report(self, level, text):
        self.reports.append((level, text))


def _imported_root(sub, tmp_path):
    importer = sub("scene.importer")
    folder = write_wall_bundle(tmp_path / "bundle", n=3)
    result = importer.import_bundle(
        bpy.context, folder, importer.ImportOptions(max_points=None, conf_percentile=0)
    )
    root = result.root
    # the user's alignment: turned, scaled ×3 and moved
    root.matrix_world = (
        Matrix.Translation((1.0, -2.0, 0.5)) @ Matrix.Rotation(0.7, 4, "Z") @ Matrix.Scale(3.0, 4)
    )
    bpy.context.view_layer.objects.active = root
    bpy.context.view_layer.update()
    return folder, root


def _drive(sub, op, on_tick=None, timeout=60.0) -> set[str]:
    ops = sub("operators.dataset_ops")
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        event = (on_tick(i) if on_tick else None) or TIMER
        result = ops.modal_step(op, bpy.context, event)
        if result not in ({"RUNNING_MODAL"}, {"PASS_THROUGH"}):
            return result
        i += 1
        time.sleep(0.01)
    raise AssertionError("the export did not end in time")


def test_export_dataset_writes_the_bundle_in_the_moved_and_scaled_roots_frame(clean_scene, sub, tmp_path):
    folder, root = _imported_root(sub, tmp_path)
    s = clean_scene.da3
    s.dataset_tool, s.dataset_folder, s.dataset_points = "nerfstudio", str(tmp_path / "ns"), 1000
    op = FakeOperator()
    assert sub("operators.dataset_ops").begin(op, bpy.context) is not None, op.reports
    assert _drive(sub, op) == {"FINISHED"}, op.reports
    assert "Exported the nerfstudio dataset" in op.reports[-1][1]
    meta = json.loads((tmp_path / "ns" / "transforms.json").read_text())
    side = json.loads((tmp_path / "ns" / "da3_dataset.json").read_text())
    world = np.array(root.matrix_world)
    np.testing.assert_allclose(np.array(side["dataset_to_root"]) @ world, np.eye(4), atol=1e-6)
    assert side["root_name"] == root.name and side["bundle"] == str(folder.resolve())
    # each camera in the dataset sits where its Blender camera is (world), looking the same way
    cameras = sorted((c for c in root.children if c.type == "CAMERA"), key=lambda c: c.name)
    assert len(cameras) == len(meta["frames"]) == 3
    for cam, frame in zip(cameras, meta["frames"], strict=True):
        c2w = np.array(frame["transform_matrix"])
        blender = np.array(cam.matrix_world)
        np.testing.assert_allclose(c2w[:3, 3], blender[:3, 3], atol=1e-5)
        axes = blender[:3, :3] / np.linalg.norm(blender[:3, :3], axis=0)
        np.testing.assert_allclose(c2w[:3, :3], axes, atol=1e-5)  # both OpenGL camera axes
    # the seed points: the wall, put through the root (points of the bundle frame lie at z = WALL_Z)
    from engine.formats.ply import read_ply

    ply = read_ply(tmp_path / "ns" / "sparse_pc.ply")
    xyz = np.stack([ply["x"], ply["y"], ply["z"]], 1).astype(np.float64)
    local = xyz @ np.array(side["dataset_to_root"])[:3, :3].T + np.array(side["dataset_to_root"])[:3, 3]
    np.testing.assert_allclose(local[:, 2], WALL_Z, atol=1e-4)
    # depth in the dataset's units: the wall is 3 × WALL_Z from the cameras
    assert meta["depth_unit_scale_factor"] == 1e-3


def test_export_dataset_3dgs_through_execute(clean_scene, sub, tmp_path):
    _imported_root(sub, tmp_path)
    s = clean_scene.da3
    s.dataset_tool, s.dataset_folder = "3dgs", str(tmp_path / "gs")
    assert bpy.ops.da3.export_dataset() == {"FINISHED"}
    assert (tmp_path / "gs" / "sparse" / "0" / "cameras.bin").is_file()
    assert len(list((tmp_path / "gs" / "images").iterdir())) == 3
    assert len(list((tmp_path / "gs" / "depths").iterdir())) == 3


def test_refusals_without_a_root_a_folder_or_a_bundle(clean_scene, sub, tmp_path):
    ops = sub("operators.dataset_ops")
    s = clean_scene.da3
    s.dataset_folder = str(tmp_path / "out")
    op = FakeOperator()
    assert ops.begin(op, bpy.context) is None
    assert "Select an object of a DA3 reconstruction" in op.reports[-1][1]
    assert not bpy.ops.da3.export_dataset.poll()
    folder, root = _imported_root(sub, tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    s.dataset_folder = str(tmp_path / "busy")
    assert ops.begin(op, bpy.context) is None and "not empty" in op.reports[-1][1]
    s.dataset_folder = str(tmp_path / "out")
    root.scale = (1.0, 2.0, 1.0)
    bpy.context.view_layer.update()
    assert ops.begin(op, bpy.context) is None and "non-uniform scale" in op.reports[-1][1]
    root.scale = (1.0, 1.0, 1.0)
    bpy.context.view_layer.update()
    folder.rename(tmp_path / "moved")
    assert ops.begin(op, bpy.context) is None and "is gone" in op.reports[-1][1]
    assert not (tmp_path / "out").exists()


def test_esc_cancels_and_leaves_nothing(clean_scene, sub, tmp_path, monkeypatch):
    _imported_root(sub, tmp_path)
    s = clean_scene.da3
    s.dataset_tool, s.dataset_folder = "nerfstudio", str(tmp_path / "ns")
    session = sub("session.dataset_export")
    gate, real = threading.Event(), session.export_dataset

    def held(*args, **kwargs):  # the thread waits until Esc was pressed
        gate.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "export_dataset", held)
    op = FakeOperator()
    assert sub("operators.dataset_ops").begin(op, bpy.context) is not None

    def esc_then_go(i):
        if i == 0:
            return ESC
        gate.set()
        return None

    assert _drive(sub, op, on_tick=esc_then_go) == {"CANCELLED"}
    assert "cancelled" in op.reports[-1][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no dataset, no staging folder


def test_the_camera_solve_panel_offers_the_export(clean_scene, sub, tmp_path):
    _imported_root(sub, tmp_path)
    panel = sub("panels.shot").VIEW3D_PT_da3_solve
    layout = draw(panel)
    assert "da3.export_dataset" in layout.texts("operator")
    assert {"dataset_tool", "dataset_folder", "dataset_points"} <= set(layout.texts("prop"))
