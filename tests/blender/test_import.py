"""A bundle becomes a collection with a root Empty, a point cloud and cameras (File > Import too)."""

from __future__ import annotations

import types

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from .bundles import VIEW_COLORS, WALL_Z, write_wall_bundle


def _attr(mesh, name, width=1, dtype=np.float32):
    attr = mesh.attributes[name]
    out = np.empty(len(attr.data) * width, dtype)
    key = "color" if attr.data_type == "FLOAT_COLOR" else "value"
    attr.data.foreach_get(key, out)
    return out.reshape(-1, width) if width > 1 else out


def _world_points(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.attributes["position"].data.foreach_get("vector", co)
    m = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def test_import_builds_a_root_with_points_and_cameras(clean_scene, sub, tmp_path):
    importer = sub("scene.importer")
    convert = sub("scene.convert")
    folder = write_wall_bundle(tmp_path / "wall", n=3)
    result = importer.import_bundle(
        bpy.context, folder, importer.ImportOptions(max_points=None, conf_percentile=0)
    )

    assert result.collection.name == "DA3 wall" and result.collection.name in clean_scene.collection.children
    assert np.allclose(np.array(result.root.matrix_world), convert.ENGINE_TO_BLENDER, atol=1e-6)
    assert result.points.parent == result.root and all(c.parent == result.root for c in result.cameras)
    assert result.num_points == 3 * 24 * 32 == len(result.points.data.vertices)

    # The wall at engine z = 5 lies at Blender Y = 5 (Z up): the world transform is the root's.
    world = _world_points(result.points)
    assert np.allclose(world[:, 1], WALL_Z, atol=1e-5)
    # Colours are linear, one per view, and agree with the view index attribute.
    color = _attr(result.points.data, "Color", 4)
    view = _attr(result.points.data, "view_index", dtype=np.int32)
    expected = (VIEW_COLORS[view] / 255.0).astype(np.float32)  # 0/255 and 255/255 are the same in linear
    assert np.allclose(color[:, :3], expected) and set(view) == {0, 1, 2}
    conf = _attr(result.points.data, "confidence")
    assert conf.min() >= 1.0 and conf.max() <= 10.0
    assert result.units == "relative" and result.root["da3_units"] == "relative"


def test_cameras_carry_exact_intrinsics_and_poses(clean_scene, sub, tmp_path):
    importer = sub("scene.importer")
    folder = write_wall_bundle(tmp_path / "wall", n=3)  # processed 32×24, original 64×48, f = 30 px
    result = importer.import_bundle(bpy.context, folder)
    cam0, cam2 = result.cameras[0], result.cameras[2]
    # f = 30 px of 32 → 60 px of the 64-px original: lens = 60 · 36 / 64
    assert cam0.data.lens == pytest.approx(60 * 36 / 64) and cam0.data.sensor_fit == "HORIZONTAL"
    assert cam0.data.shift_x == pytest.approx(0) and cam0.data.shift_y == pytest.approx(0)
    assert clean_scene.render.resolution_x == 64 and clean_scene.render.resolution_y == 48
    assert clean_scene.camera == cam0
    # Camera 2 sits at engine x = 1.0 and looks along engine +z = Blender +Y.
    assert np.allclose(np.array(cam2.matrix_world.translation), [1.0, 0.0, 0.0], atol=1e-6)
    forward = np.array(cam2.matrix_world.to_3x3() @ Matrix.Identity(3).col[2]) * -1  # camera looks down -Z
    assert np.allclose(forward, [0, 1, 0], atol=1e-6)
    # The view's image is the camera background (packed from the bundle: the source path is unknown).
    background = cam0.data.background_images[0].image
    assert cam0.data.show_background_images and tuple(background.size) == (32, 24)


def test_point_cloud_draws_points_with_a_live_confidence_cut(clean_scene, sub, tmp_path):
    importer = sub("scene.importer")
    nodes, compat = sub("scene.nodes"), sub("scene.compat")
    folder = write_wall_bundle(tmp_path / "wall", n=2)
    result = importer.import_bundle(
        bpy.context, folder, importer.ImportOptions(conf_percentile=0, max_points=None)
    )
    obj = result.points
    modifier = obj.modifiers[nodes.MODIFIER_NAME]

    def evaluated():
        """The point cloud the modifier makes: through a GeometrySet (4.3+, kept alive while the cloud is
        read) or, on 4.2, the depsgraph's point-cloud instance of the object."""
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
        if hasattr(bpy.types, "GeometrySet"):
            return bpy.types.GeometrySet.from_evaluated_object(obj.evaluated_get(depsgraph))
        for instance in depsgraph.object_instances:
            if instance.object.type == "POINTCLOUD" and instance.object.original == obj:
                return types.SimpleNamespace(pointcloud=instance.object.data)
        raise AssertionError("the modifier made no point cloud")

    geometry = evaluated()
    cloud = geometry.pointcloud
    assert len(cloud.points) == len(obj.data.vertices)
    assert [m.name for m in cloud.materials] == [sub("scene.materials").POINT_MATERIAL]
    radius = np.empty(len(cloud.points), np.float32)
    cloud.attributes["radius"].data.foreach_get("value", radius)
    size = compat.modifier_input_value(modifier, "Point Size")
    assert np.allclose(radius, size * obj["da3_scene_size"], rtol=1e-5) and 0 < size < 0.01

    compat.set_modifier_input(modifier, "Min Confidence", 0.5)
    obj.update_tag()
    geometry = evaluated()
    kept = len(geometry.pointcloud.points)
    assert 0.4 * len(obj.data.vertices) < kept < 0.6 * len(obj.data.vertices)


def test_point_colours_and_confidence_ranks_match_plain_references(sub):
    """The fast paths of the points import (byte-pair colour table, sampled and blocked rank) give what
    the plain formulas give: every sRGB byte in every channel, and ranks within 0.5 % of exact ones for
    clouds larger than the rank's sample (a lopsided confidence, as the network's is)."""
    points = sub("scene.points")
    rng = np.random.default_rng(3)
    rgb = np.concatenate(
        [np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1), rng.integers(0, 256, (999, 3))]
    )
    rgb = rgb.astype(np.uint8)
    c = rgb / 255.0
    expected = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    rgba = points.linear_rgba(rgb)
    assert rgba.shape == (len(rgb), 4) and rgba.dtype == np.float32 and rgba.flags.c_contiguous
    assert np.allclose(rgba[:, :3], expected, atol=1e-7) and np.all(rgba[:, 3] == 1.0)
    assert points.linear_rgba(np.zeros((0, 3), np.uint8)).shape == (0, 4)

    conf = np.exp(rng.normal(size=700_001)).astype(np.float32)
    rank = points.confidence_rank(conf)
    exact = (np.argsort(np.argsort(conf)) + 0.5) / len(conf)
    assert rank.dtype == np.float32 and np.abs(rank - exact).max() < 0.005
    assert np.all(points.confidence_rank(np.full(5, 2.0, np.float32)) == 0.5)


def test_color_material_reads_the_point_colour(clean_scene, sub):
    material = sub("scene.materials").point_color_material()
    attribute = next(n for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeAttribute")
    assert attribute.attribute_name == "Color" and attribute.attribute_type == "GEOMETRY"
    assert attribute.outputs["Color"].is_linked


def test_a_video_bundle_gets_one_animated_camera(clean_scene, sub, tmp_path):
    importer = sub("scene.importer")
    convert = sub("scene.convert")
    folder = write_wall_bundle(tmp_path / "shot", n=5, video=True)
    result = importer.import_bundle(bpy.context, folder, importer.ImportOptions(points=False))
    assert len(result.cameras) == 1
    cam = result.cameras[0]
    assert (clean_scene.frame_start, clean_scene.frame_end) == (1, 5)
    for frame in (1, 3, 5):
        clean_scene.frame_set(frame)
        assert np.allclose(np.array(cam.matrix_world.translation), [0.5 * (frame - 1), 0, 0], atol=1e-5)
    expected = convert.ENGINE_TO_BLENDER[:3, :3] @ convert.CV_TO_BLENDER_CAMERA
    assert np.allclose(np.array(cam.matrix_world.to_3x3()), expected, atol=1e-6)


def test_a_failed_import_leaves_the_scene_as_it_was(clean_scene, sub, tmp_path):
    importer = sub("scene.importer")
    folder = write_wall_bundle(tmp_path / "wall", n=2)
    (folder / "reconstruction.npz").write_bytes(b"truncated")  # size no longer matches the manifest
    before = {name: len(getattr(bpy.data, name)) for name in ("objects", "meshes", "cameras", "collections")}
    with pytest.raises(ValueError, match="incomplete"):
        importer.import_bundle(bpy.context, folder)
    after = {name: len(getattr(bpy.data, name)) for name in before}
    assert after == before


def test_file_import_operator_takes_the_folder_or_a_file_in_it(clean_scene, tmp_path):
    folder = write_wall_bundle(tmp_path / "farm_result", n=2)
    assert bpy.ops.import_scene.da3_reconstruction(filepath=str(folder / "manifest.json")) == {"FINISHED"}
    assert "DA3 farm_result" in bpy.data.collections
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="no reconstruction|not a finished"):
        bpy.ops.import_scene.da3_reconstruction(filepath=str(empty))


def _rewrite_arrays(folder, **changes):
    """Change arrays of a finished bundle in place (a bundle from a broken or foreign writer)."""
    import json

    with np.load(folder / "reconstruction.npz") as npz:
        data = {key: npz[key] for key in npz.files}
    data.update(changes)
    np.savez(folder / "reconstruction.npz", **data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][0]["size"] = (folder / "reconstruction.npz").stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_non_finite_bundles_are_refused_with_a_message_and_import_nothing(clean_scene, tmp_path):
    """Issue 10: NaN never reaches the scene, and the user reads a message, not a traceback."""
    nan_camera = write_wall_bundle(tmp_path / "nan_camera", n=3)
    with np.load(nan_camera / "reconstruction.npz") as npz:
        extrinsics = npz["extrinsics"].copy()
    extrinsics[1, 0, 3] = np.nan
    _rewrite_arrays(nan_camera, extrinsics=extrinsics)
    nan_depth = write_wall_bundle(tmp_path / "nan_depth", n=2)
    with np.load(nan_depth / "reconstruction.npz") as npz:
        depth = np.full_like(npz["depth"], np.nan)
    _rewrite_arrays(nan_depth, depth=depth)
    objects_before = len(bpy.data.objects)
    for folder, message in (
        (nan_camera, r"not finite \(NaN\) in extrinsics \(views 2\)"),
        (nan_depth, "no valid depth"),
    ):
        with pytest.raises(RuntimeError, match=message) as caught:
            bpy.ops.import_scene.da3_reconstruction(filepath=str(folder))
        assert "Traceback" not in str(caught.value) and "KeyError" not in str(caught.value)
        assert len(bpy.data.objects) == objects_before and not any(
            c.name.startswith(f"DA3 {folder.name}") for c in bpy.data.collections
        )
