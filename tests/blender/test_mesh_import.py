"""Meshes from a bundle: the fused mesh (mesh.ply) with its colours and material, meshes per view with
their photos and UVs, under the reconstruction root; a Cycles render shows the colours."""

from __future__ import annotations

import types
from pathlib import Path

import bpy
import numpy as np
import pytest

from engine.formats.bundle import write_bundle
from engine.formats.mesh_ply import write_mesh_ply
from engine.geometry.mesh import Mesh

from .bundles import WALL_Z, wall_views
from .render_utils import render, render_to, setup_cycles
from .shots import shot_arrays, shot_meta


def _grid_mesh(n: int = 6, seed: int = 0) -> Mesh:
    """An n×n grid of vertices on the plane z = WALL_Z, two triangles per cell, random colours."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    vertices = np.stack([x, y, np.full_like(x, WALL_Z)], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    colors = rng.integers(0, 256, (n * n, 3), dtype=np.uint8)
    return Mesh(vertices, faces, colors)


def _bundle(folder: Path, *, mesh: Mesh | None = None, n: int = 2, step_depth: bool = False) -> Path:
    """The wall bundle of ``bundles.py`` (random photos), with ``mesh`` as its mesh.ply; ``step_depth``
    puts a box at half the wall's depth in front of the left half of every view."""
    images, depth, conf, extrinsics, intrinsics = wall_views(n)
    images = np.random.default_rng(1).integers(0, 256, images.shape, dtype=np.uint8)
    if step_depth:
        depth[:, :, : depth.shape[2] // 2] = WALL_Z / 2
    arrays = dict(images=images, depth=depth, conf=conf, extrinsics=extrinsics, intrinsics=intrinsics)
    extra = {}
    if mesh is not None:
        extra["mesh.ply"] = write_mesh_ply(folder.parent / f"{folder.name}_mesh.ply", mesh)
    return write_bundle(folder, arrays, {"model_id": "synthetic-wall", "ref_view_idx": 0}, extra)


def _positions(me) -> np.ndarray:
    out = np.empty(len(me.vertices) * 3, np.float32)
    me.attributes["position"].data.foreach_get("vector", out)
    return out.reshape(-1, 3)


def _faces(me) -> np.ndarray:
    out = np.empty(len(me.loops), np.int32)
    me.loops.foreach_get("vertex_index", out)
    sizes = np.empty(len(me.polygons), np.int32)
    me.polygons.foreach_get("loop_total", sizes)
    assert (sizes == 3).all()
    return out.reshape(-1, 3)


def _srgb_bytes(me, name: str) -> np.ndarray:
    attr = me.color_attributes[name]
    out = np.empty(len(attr.data) * 4, np.float32)
    attr.data.foreach_get("color_srgb", out)
    return np.round(out.reshape(-1, 4)[:, :3] * 255).astype(np.uint8)


def test_the_fused_mesh_comes_in_with_its_colours_under_the_root(clean_scene, sub, tmp_path):
    importer, mesh_mod = sub("scene.importer"), sub("scene.mesh")
    source = _grid_mesh()
    folder = _bundle(tmp_path / "wall", mesh=source)
    result = importer.import_bundle(bpy.context, folder, importer.ImportOptions(max_points=1000))

    obj = result.mesh
    assert obj is not None and obj.name == "wall Mesh" and obj[mesh_mod.MESH_KIND_KEY] == "fused"
    assert obj.parent == result.root and obj.name in result.collection.objects
    me = obj.data
    assert len(me.vertices) == source.num_vertices and len(me.polygons) == source.num_faces
    assert result.num_faces == source.num_faces and "faces" in result.summary
    assert np.array_equal(_positions(me), source.vertices)
    assert np.array_equal(_faces(me), source.faces)
    assert len(me.edges) == 3 * 5 * 5 + 2 * 5  # a 6×6 grid: 5·6 horizontal, 5·6 vertical, 25 diagonals
    color = me.color_attributes[mesh_mod.COLOR_ATTRIBUTE]
    assert color.data_type == "BYTE_COLOR" and color.domain == "POINT"
    assert np.array_equal(_srgb_bytes(me, mesh_mod.COLOR_ATTRIBUTE), source.colors)
    assert me.color_attributes.render_color_index == me.color_attributes.find(mesh_mod.COLOR_ATTRIBUTE)
    assert all(p.use_smooth for p in me.polygons)

    # The root's transform puts it in Blender's world: the wall at engine z = 5 is at Y = 5.
    world = np.array(obj.matrix_world)
    assert np.allclose((_positions(me) @ world[:3, :3].T + world[:3, 3])[:, 1], WALL_Z, atol=1e-5)

    # The material shows the colour attribute through a Principled BSDF.
    material = me.materials[0]
    assert material.name == sub("scene.mesh_material").MESH_MATERIAL
    nodes = material.node_tree.nodes
    attribute = next(n for n in nodes if n.bl_idname == "ShaderNodeVertexColor")
    bsdf = next(n for n in nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    assert attribute.layer_name == mesh_mod.COLOR_ATTRIBUTE
    assert bsdf.inputs["Base Color"].links[0].from_node == attribute
    assert 0.5 <= bsdf.inputs["Roughness"].default_value <= 1.0
    output = next(n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial")
    assert output.inputs["Surface"].links[0].from_node == bsdf

    # A second import shares the material.
    again = importer.import_bundle(bpy.context, folder, importer.ImportOptions(points=False, name="again"))
    assert again.mesh.data.materials[0] == material


def test_the_mesh_option_and_a_bundle_without_mesh(clean_scene, sub, tmp_path):
    importer = sub("scene.importer")
    with_mesh = _bundle(tmp_path / "with", mesh=_grid_mesh())
    without = importer.import_bundle(bpy.context, with_mesh, importer.ImportOptions(mesh=False))
    assert without.mesh is None and not any(o.type == "MESH" and "Mesh" in o.name for o in bpy.data.objects)
    plain = importer.import_bundle(bpy.context, _bundle(tmp_path / "plain"), importer.ImportOptions())
    assert plain.mesh is None and plain.view_meshes == []


def test_a_broken_mesh_file_leaves_nothing_behind(clean_scene, sub, tmp_path):
    importer = sub("scene.importer")
    bad = _grid_mesh()
    bad = Mesh(bad.vertices, np.where(bad.faces == 7, 999, bad.faces), bad.colors)  # a vertex it lacks
    folder = _bundle(tmp_path / "bad", mesh=bad)
    kinds = ("objects", "meshes", "materials", "images", "collections")
    before = {k: len(getattr(bpy.data, k)) for k in kinds}
    with pytest.raises(ValueError, match="outside"):
        importer.import_bundle(bpy.context, folder, importer.ImportOptions())
    assert {k: len(getattr(bpy.data, k)) for k in kinds} == before


def _project(points: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    cam = points.astype(np.float64) @ w2c[:, :3].T + w2c[:, 3]
    pix = cam @ K.T
    return pix[:, :2] / pix[:, 2:]


def test_per_view_meshes_carry_their_photo_and_uvs(clean_scene, sub, tmp_path):
    importer, mesh_mod = sub("scene.importer"), sub("scene.mesh")
    folder = _bundle(tmp_path / "wall", n=2, step_depth=True)
    images, _, _, extrinsics, intrinsics = wall_views(2)
    photos = np.random.default_rng(1).integers(0, 256, images.shape, dtype=np.uint8)
    h, w = photos.shape[1:3]
    result = importer.import_bundle(
        bpy.context, folder, importer.ImportOptions(points=False, view_meshes=True, cameras=False)
    )
    assert len(result.view_meshes) == 2 and "2 view meshes" in result.summary
    views = bpy.data.collections["wall View Meshes"]
    assert views.name in result.collection.children
    for i, obj in enumerate(result.view_meshes):
        assert obj.parent == result.root and obj.name in views.objects and obj["da3_view"] == i
        assert obj[mesh_mod.MESH_KIND_KEY] == "view"
        me = obj.data
        faces, points = _faces(me), _positions(me)
        # The box in front of the left half and the wall are two pieces: no face spans both depths.
        z = points[faces][:, :, 2]
        assert np.ptp(z, axis=1).max() < 1e-4 and {WALL_Z / 2, WALL_Z} == set(np.round(z[:, 0], 4))
        # Each corner's UV is where its vertex projects in the view's processed image.
        uv = np.empty(len(me.loops) * 2, np.float32)
        me.uv_layers[mesh_mod.UV_MAP].uv.foreach_get("vector", uv)
        pix = _project(
            points[faces.ravel()], intrinsics[i].astype(np.float64), extrinsics[i].astype(np.float64)
        )
        uv = uv.reshape(-1, 2)
        assert np.allclose(uv[:, 0] * w, pix[:, 0], atol=1e-3) and np.allclose(
            (1 - uv[:, 1]) * h, pix[:, 1], atol=1e-3
        )
        # Vertex colours are the photo's pixels under each vertex.
        px = _project(points, intrinsics[i].astype(np.float64), extrinsics[i].astype(np.float64))
        rows, cols = np.floor(px[:, 1]).astype(int), np.floor(px[:, 0]).astype(int)
        assert np.array_equal(_srgb_bytes(me, mesh_mod.COLOR_ATTRIBUTE), photos[i, rows, cols])
        # The material shows the view's processed photo (packed), through the UV map, emitted.
        nodes = me.materials[0].node_tree.nodes
        tex = next(n for n in nodes if n.bl_idname == "ShaderNodeTexImage")
        uv_node = next(n for n in nodes if n.bl_idname == "ShaderNodeUVMap")
        assert uv_node.uv_map == mesh_mod.UV_MAP and tex.inputs["Vector"].links[0].from_node == uv_node
        emit = tex.outputs["Color"].links[0].to_node
        assert emit.bl_idname == "ShaderNodeEmission"
        image = tex.image
        assert tuple(image.size) == (w, h) and image.packed_file is not None
        pixels = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(pixels)
        pixels = np.round(pixels.reshape(h, w, 4)[::-1, :, :3] * 255).astype(np.uint8)
        assert np.array_equal(pixels, photos[i])


def test_a_coarser_view_mesh_step_and_no_view_meshes_without_depth(clean_scene, sub, tmp_path):
    importer, mesh_mod = sub("scene.importer"), sub("scene.mesh")
    folder = _bundle(tmp_path / "wall", n=1)
    fine = importer.import_bundle(bpy.context, folder, importer.ImportOptions(points=False, view_meshes=True))
    coarse = importer.import_bundle(
        bpy.context,
        folder,
        importer.ImportOptions(points=False, view_meshes=True, view_mesh_step=4, name="c"),
    )
    assert len(coarse.view_meshes[0].data.vertices) < len(fine.view_meshes[0].data.vertices) / 10
    shot_like = types.SimpleNamespace(folder=tmp_path / "shot", depth=None, images=None, num_views=3)
    with pytest.raises(ValueError, match="no depth maps"):
        mesh_mod.create_view_meshes("x", shot_like, clean_scene.collection)


def test_a_shot_bundle_brings_its_fused_mesh_and_says_why_there_are_no_view_meshes(
    clean_scene, sub, tmp_path
):
    importer = sub("scene.importer")
    arrays = shot_arrays(np.arange(6))
    source = _grid_mesh()
    ply = write_mesh_ply(tmp_path / "shot_mesh.ply", source)
    folder = write_bundle(tmp_path / "shot", arrays, shot_meta(6), {"mesh.ply": ply})
    result = importer.import_bundle(bpy.context, folder, importer.ImportOptions(view_meshes=True))
    assert result.mesh is not None and result.mesh.parent == result.root
    assert len(result.mesh.data.polygons) == source.num_faces and not result.view_meshes
    assert "a mesh of 50 faces" in result.summary and "no depth maps" in result.summary
    skipped = importer.import_bundle(bpy.context, folder, importer.ImportOptions(mesh=False, name="again"))
    assert skipped.mesh is None


def test_cycles_shows_the_vertex_colours(clean_scene, sub, tmp_path):
    """Two quads, one orange and one blue, under a uniform white sky: a matte surface returns its albedo,
    so the rendered pixels are the vertex colours (plus a little gloss)."""
    mesh_mod = sub("scene.mesh")
    colors = np.array([[230, 120, 30]] * 4 + [[40, 90, 200]] * 4 + [[128, 128, 128]] * 4, np.uint8)
    quad = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    vertices = np.concatenate(
        [
            np.column_stack([quad[:, 0] - 1.05, np.zeros(4), quad[:, 1] - 0.5]),
            np.column_stack([quad[:, 0] + 0.05, np.zeros(4), quad[:, 1] - 0.5]),
        ]
    )
    vertices = np.concatenate([vertices, vertices[:4] + 10])  # 4 vertices that no face uses
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 5, 7], [4, 7, 6]])  # counter-clockwise seen from -Y
    mesh = Mesh(vertices.astype(np.float32), faces, colors)
    mesh_mod.create_fused_mesh("Quads", mesh, clean_scene.collection)

    setup_cycles(clean_scene, samples=32)
    background = clean_scene.world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    background.inputs["Strength"].default_value = 1.0
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    clean_scene.collection.objects.link(cam)
    cam.data.type = "ORTHO"
    cam.data.ortho_scale = 2.4
    cam.location = (0.0, -5.0, 0.0)
    cam.rotation_euler = (np.pi / 2, 0.0, 0.0)
    clean_scene.render.resolution_x, clean_scene.render.resolution_y = 48, 24
    pixels = render(clean_scene, cam, render_to(tmp_path, "quads"))
    left, right = pixels[8:16, 6:16].reshape(-1, 3).mean(0), pixels[8:16, 32:42].reshape(-1, 3).mean(0)
    # In linear light the matte surface returns its albedo, plus about 0.02 of gloss (IOR 1.5).
    for seen, want in ((left, colors[0]), (right, colors[4])):
        assert np.allclose(_linear(seen), _linear(want / 255.0), atol=0.035), (seen * 255, want)


def _linear(srgb: np.ndarray) -> np.ndarray:
    srgb = np.asarray(srgb, np.float64)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def test_file_import_offers_the_mesh_options(clean_scene, sub, tmp_path):
    folder = _bundle(tmp_path / "wall", mesh=_grid_mesh())
    assert bpy.ops.import_scene.da3_reconstruction(
        filepath=str(folder / "manifest.json"), view_meshes=True, view_mesh_step=2, points=False
    ) == {"FINISHED"}
    meshes = [o for o in bpy.data.objects if o.get(sub("scene.mesh").MESH_KIND_KEY)]
    assert sorted(o[sub("scene.mesh").MESH_KIND_KEY] for o in meshes) == ["fused", "view", "view"]


def test_the_panel_asks_the_engine_for_a_mesh(clean_scene, sub, tmp_path):
    from PIL import Image

    from .conftest import draw

    jobspec, properties = sub("session.jobspec"), sub("properties")
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    prefs = {"default_model": "DA3_SMALL", "device": "auto"}
    s = properties.settings(bpy.context)
    s.input_mode, s.folder, s.model = "FOLDER", str(folder), "DA3_GIANT"
    s.import_mesh, s.mesh_detail, s.mesh_max_faces = True, 2.0, 20000
    request = jobspec.build_request(properties.settings_values(s), prefs, str(tmp_path / "out"))
    options = request.options
    assert options.exports == ("gaussians", "mesh") and options.infer_gs
    assert (options.mesh_detail, options.mesh_voxel_size, options.mesh_max_faces) == (2.0, None, 20000)
    s.mesh_voxel_size, s.mesh_max_faces, s.import_gaussians = 0.05, 0, False
    options = jobspec.build_request(properties.settings_values(s), prefs, str(tmp_path / "out")).options
    assert options.exports == ("mesh",) and options.mesh_voxel_size == pytest.approx(0.05)
    assert options.mesh_max_faces is None
    s.mesh_max_faces = 50
    with pytest.raises(jobspec.JobSpecError, match="Max Faces"):
        jobspec.build_request(properties.settings_values(s), prefs, str(tmp_path / "out"))
    s.import_mesh = False
    assert (
        jobspec.build_request(properties.settings_values(s), prefs, str(tmp_path / "o")).options.exports == ()
    )
    values = properties.import_values(s)
    assert values["mesh"] is False and values["view_meshes"] is False and values["view_mesh_step"] == 1

    panel = sub("panels.reconstruct").VIEW3D_PT_da3_import
    layout = draw(panel)
    for name in ("import_mesh", "mesh_detail", "mesh_voxel_size", "mesh_max_faces", "import_view_meshes"):
        assert ("prop", name) in layout.log
    s.input_mode = "VIDEO"
    layout = draw(panel)
    assert ("prop", "import_view_meshes") not in layout.log
    assert any("shot keeps no depth" in t for t in layout.texts())


def test_file_import_of_a_bare_mesh_ply(clean_scene, sub, tmp_path):
    mesh_mod = sub("scene.mesh")
    source = _grid_mesh(seed=4)
    path = write_mesh_ply(tmp_path / "scan.ply", source)
    assert bpy.ops.import_scene.da3_mesh(filepath=str(path)) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    assert obj.name == "scan" and obj[mesh_mod.MESH_KIND_KEY] == "fused"
    assert np.array_equal(_faces(obj.data), source.faces)
    assert np.array_equal(_srgb_bytes(obj.data, mesh_mod.COLOR_ATTRIBUTE), source.colors)
    # A file whose faces name missing vertices, or no PLY at all: refused, nothing made.
    bad = Mesh(source.vertices, np.where(source.faces == 3, 500, source.faces), source.colors)
    broken = write_mesh_ply(tmp_path / "broken.ply", bad)
    (tmp_path / "junk.ply").write_bytes(b"not a ply")
    before = (len(bpy.data.objects), len(bpy.data.meshes))
    for path in (broken, tmp_path / "junk.ply"):
        with pytest.raises(RuntimeError):
            bpy.ops.import_scene.da3_mesh(filepath=str(path))
    assert (len(bpy.data.objects), len(bpy.data.meshes)) == before
