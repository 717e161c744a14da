"""3D Gaussians in Blender: File > Import from every tool's layout, refusals that import nothing, the
export with Blender's transforms applied (SH rotated), the unchanged round trip bit for bit, crops, and
the Gaussians of a reconstruction bundle under its root."""

from __future__ import annotations

import json

import bpy
import numpy as np
import pytest
from mathutils import Euler, Matrix, Vector

from engine.formats.gaussians_ply import SplatTable, read_splat_table, write_splat_table
from engine.geometry.spherical_harmonics import eval_sh
from engine.geometry.splat_transform import transform_splats

from .bundles import write_wall_bundle
from .splats import drop_property, inria_ply, property_names, random_table, read_vertex


def _import(path) -> bpy.types.Object:
    assert bpy.ops.import_scene.da3_gaussians(filepath=str(path)) == {"FINISHED"}
    return bpy.context.view_layer.objects.active


def _export(obj, path, frame="SOURCE"):
    bpy.context.view_layer.objects.active = obj
    assert bpy.ops.export_scene.da3_gaussians(filepath=str(path), frame=frame) == {"FINISHED"}
    return read_splat_table(path)


def _same(a: SplatTable, b: SplatTable) -> bool:
    fields = ("means", "log_scales", "quaternions", "sh", "opacity_logits")
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields)


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_import_of_each_layout_holds_the_file_values(clean_scene, sub, tmp_path, degree):
    gaussians = sub("scene.gaussians")
    table = random_table(degree=degree, seed=degree)
    path = inria_ply(tmp_path / "splat.ply", table)
    obj = _import(path)
    assert gaussians.is_gaussians(obj) and obj[gaussians.GAUSSIANS_TAG] == degree
    assert len(obj.data.vertices) == len(table)
    assert _same(gaussians.splats_of(obj), table)
    modifier = obj.modifiers["DA3 Gaussians"]
    assert modifier.node_group.name == f"DA3 Gaussians (SH {degree})"
    assert bpy.data.materials.get(f"DA3 Splats (SH {degree})") is not None
    assert clean_scene.cycles.transparent_max_bounces >= 128


def test_engine_file_and_files_with_extra_properties(clean_scene, sub, tmp_path):
    gaussians = sub("scene.gaussians")
    table = random_table(degree=3, seed=4)
    engine_file = write_splat_table(tmp_path / "gaussians.ply", table)  # our engine's writer
    assert _same(gaussians.splats_of(_import(engine_file)), table)
    m = len(table)
    # SuGaR-style extras after the standard properties (and non-zero normals) are carried past
    extra = {"sugar_weight": np.linspace(0, 1, m, dtype=np.float32), "filter_3D": np.ones(m, np.float32)}
    sugar = inria_ply(tmp_path / "sugar.ply", table, extra)
    assert _same(gaussians.splats_of(_import(sugar)), table)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "missing properties"),
        ("nan", "NaN or infinite"),
        ("rest_count", "f_rest"),
        ("truncated", ""),
    ],
)
def test_bad_files_import_nothing_and_say_why(clean_scene, tmp_path, damage, message):
    table = random_table(m=16, degree=1)
    path = inria_ply(tmp_path / "bad.ply", table)
    if damage == "missing":
        drop_property(path, "rot_3")
    elif damage == "nan":
        table.log_scales[3, 1] = np.nan
        inria_ply(path, table)
    elif damage == "rest_count":
        drop_property(path, "f_rest_8")
    else:
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) - 100])

    def datablocks():
        return [len(c) for c in (bpy.data.objects, bpy.data.meshes, bpy.data.node_groups, bpy.data.materials)]

    before = datablocks()
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.import_scene.da3_gaussians(filepath=str(path))
    assert datablocks() == before  # not even the node group and materials built while it was read


def test_unchanged_import_exports_the_same_file_content(clean_scene, tmp_path):
    table = random_table(degree=3, seed=7)
    path = inria_ply(tmp_path / "in.ply", table)
    obj = _import(path)
    _export(obj, tmp_path / "out.ply")
    a, b = read_vertex(path), read_vertex(tmp_path / "out.ply")
    assert list(b.dtype.names) == property_names(16)
    for name in property_names(16):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_export_applies_blender_transforms_with_sh_rotated(clean_scene, tmp_path):
    table = random_table(degree=3, seed=8)
    obj = _import(inria_ply(tmp_path / "in.ply", table))
    parent = bpy.data.objects.new("Root", None)
    clean_scene.collection.objects.link(parent)
    parent.rotation_euler = Euler((0.3, -0.2, 1.0))
    parent.scale = (1.5, 1.5, 1.5)
    obj.parent = parent
    obj.location = Vector((0.5, -2.0, 1.0))
    obj.rotation_euler = Euler((0.0, 0.7, 0.2))
    obj.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    moved = _export(obj, tmp_path / "out.ply")
    matrix = np.asarray(obj.matrix_world, np.float64)
    expected = transform_splats(table, matrix)
    np.testing.assert_allclose(moved.means, expected.means, atol=1e-4)
    np.testing.assert_allclose(moved.log_scales, expected.log_scales, atol=1e-5)
    np.testing.assert_allclose(moved.sh, expected.sh, atol=1e-4)
    # the colour each splat showed along d, it shows along R d after the move (the SH turned with it)
    rotation = matrix[:3, :3] / np.cbrt(np.linalg.det(matrix[:3, :3]))
    d = np.random.default_rng(0).normal(size=(len(table), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(eval_sh(moved.sh, d @ rotation.T), eval_sh(table.sh, d), atol=1e-4)
    world = _export(obj, tmp_path / "world.ply", frame="WORLD")
    np.testing.assert_allclose(world.means, moved.means, atol=1e-4)  # imported at the world origin


def test_crop_to_a_box_and_in_edit_mode(clean_scene, tmp_path):
    table = random_table(m=200, degree=1, seed=9)
    obj = _import(inria_ply(tmp_path / "in.ply", table))
    box = bpy.data.objects.new("Box", None)
    box.empty_display_type = "CUBE"
    box.empty_display_size = 0.5
    box.location = (0.2, 0.0, 0.0)
    clean_scene.collection.objects.link(box)
    box.select_set(True)
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    bpy.context.view_layer.update()
    assert bpy.ops.da3.crop_gaussians() == {"FINISHED"}
    inside = np.all(np.abs(table.means - (0.2, 0.0, 0.0)) <= 0.5, axis=1)
    assert 0 < inside.sum() < len(table)
    out = _export(obj, tmp_path / "cropped.ply")
    np.testing.assert_array_equal(out.means, table.means[inside])
    np.testing.assert_array_equal(out.sh, table.sh[inside])
    # Edit Mode: delete the first kept splat
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_all(action="DESELECT")
    bpy.ops.object.mode_set(mode="OBJECT")
    obj.data.vertices[0].select = True
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.delete(type="VERT")
    bpy.ops.object.mode_set(mode="OBJECT")
    out = _export(obj, tmp_path / "edited.ply")
    np.testing.assert_array_equal(out.quaternions, table.quaternions[inside][1:])


def test_bundle_gaussians_import_under_the_root_and_export_in_the_engine_frame(clean_scene, sub, tmp_path):
    importer = sub("scene.importer")
    table = random_table(m=100, degree=3, seed=11)
    g = table.activated()
    folder = write_wall_bundle(tmp_path / "wall", n=2, gaussians=g)
    result = importer.import_bundle(bpy.context, folder)
    obj = result.gaussians
    assert obj is not None and obj.parent == result.root and result.num_gaussians == 100
    assert "100 splats" in result.summary
    bpy.context.view_layer.update()
    out = _export(obj, tmp_path / "out.ply")
    assert _same(out, SplatTable.from_gaussians(g))  # the engine's own gaussians.ply values
    skipped = importer.import_bundle(bpy.context, folder, importer.ImportOptions(gaussians=False))
    assert skipped.gaussians is None


def test_the_panel_offers_gaussians_only_for_models_with_the_head(clean_scene, sub, tmp_path):
    jobspec = sub("session.jobspec")
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "a.png")
    prefs = {"default_model": "DA3_SMALL", "device": "auto"}
    base = {"input_mode": "FOLDER", "folder": str(folder), "process_res": 504, "gaussians": True}
    giant = jobspec.build_request({**base, "model": "DA3_GIANT"}, prefs, str(tmp_path / "out"))
    assert giant.options.infer_gs and giant.options.exports == ("gaussians",)
    small = jobspec.build_request({**base, "model": "DA3_SMALL"}, prefs, str(tmp_path / "out"))
    assert not small.options.infer_gs and small.options.exports == ()
    off = jobspec.build_request({**base, "model": "DA3_GIANT", "gaussians": False}, prefs, str(tmp_path))
    assert not off.options.infer_gs
    for name, head in (("da3-small", False), ("da3-giant", True), ("da3nested-giant-large", True)):
        custom = tmp_path / name
        custom.mkdir()
        (custom / "config.json").write_text(json.dumps({"model_name": name}))
        (custom / "model.safetensors").write_bytes(b"")
        request = jobspec.build_request(
            {**base, "model": "CUSTOM", "custom_model": str(custom)}, prefs, str(tmp_path / "out")
        )
        assert request.options.infer_gs is head, name


def test_world_matrix_of_the_root_is_the_source_frame(clean_scene, sub, tmp_path):
    """A bundle import recorded the root's matrix: moving the root moves the export."""
    importer = sub("scene.importer")
    g = random_table(m=20, degree=0, seed=12).activated()
    result = importer.import_bundle(bpy.context, write_wall_bundle(tmp_path / "w", n=2, gaussians=g))
    result.root.matrix_world = Matrix.Translation((0.0, 0.0, 3.0)) @ result.root.matrix_world
    bpy.context.view_layer.update()
    out = _export(result.gaussians, tmp_path / "moved.ply")
    engine_up = np.asarray(result.root.matrix_world, np.float64)[:3, :3].T @ np.array([0.0, 0.0, 3.0])
    np.testing.assert_allclose(out.means, g.means + engine_up, atol=1e-4)


def test_the_gaussians_panel_shows_the_splat_controls(clean_scene, sub, tmp_path):
    from .conftest import draw

    panels = sub("panels.reconstruct")
    obj = _import(inria_ply(tmp_path / "in.ply", random_table(m=30, degree=1)))
    assert panels.VIEW3D_PT_da3_gaussians.poll(bpy.context)
    layout = draw(panels.VIEW3D_PT_da3_gaussians)
    assert f"{obj.name}: 30 splats" in layout.texts()
    assert len(layout.texts("prop")) == 3  # Viewport Splats, Point Size, Min Opacity
    assert {"da3.splat_colours", "da3.crop_gaussians", "export_scene.da3_gaussians"} <= set(
        layout.texts("operator")
    )
    assert not panels.VIEW3D_PT_da3_display.poll(bpy.context)  # not a point cloud
