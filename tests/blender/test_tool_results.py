"""Trained results back in place (issue 12): a synthetic scene (a sphere on a plane) under a floor-aligned,
scaled root, a dataset frame with its sidecar, and "trained" stand-ins that move nothing — a SuGaR-layout
textured OBJ in the dataset frame and splats / a DN-Splatter mesh in nerfstudio's normalised frame (made
with its documented transform, plus dataparser_transforms.json). Imported back they coincide with the
original geometry under the root, also after the root moves; SuGaR's splats follow their faces."""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np
import pytest
from mathutils import Matrix

from engine.formats.datasets.png import write_png
from engine.formats.datasets.sidecar import DatasetSidecar, write_sidecar
from engine.formats.gaussians_ply import SplatTable, write_splat_table
from engine.formats.mesh_ply import write_mesh_ply
from engine.geometry.cameras import quaternion_wxyz_to_matrix
from engine.geometry.mesh import Mesh
from engine.geometry.spherical_harmonics import eval_sh
from engine.geometry.splat_transform import transform_splats

SIZE = 2.0  # the scene's size (the plane's side)
TOL = 1e-4 * SIZE


def _rotation(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def _similarity(rng, scale: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = scale * _rotation(rng)
    m[:3, 3] = rng.normal(size=3)
    return m


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ m[:3, :3].T + m[:3, 3]


def _scene_surface() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sphere of radius 0.4 resting on a 2×2 plane (root-local frame): vertices, faces, uv per vertex."""
    n = 8
    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    plane = np.stack([x * SIZE - 1, y * SIZE - 1, np.zeros_like(x)], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = [np.stack([a, b, d], 1), np.stack([a, d, c], 1)]
    lat, lon = np.meshgrid(
        np.linspace(0.2, np.pi - 0.2, 7), np.linspace(0, 2 * np.pi, 13)[:-1], indexing="ij"
    )
    sphere = 0.4 * np.stack([np.sin(lat) * np.cos(lon), np.sin(lat) * np.sin(lon), np.cos(lat)], -1).reshape(
        -1, 3
    )
    sphere[:, 2] += 0.4
    s = np.arange(7 * 12).reshape(7, 12) + len(plane)
    a, b = s[:-1].ravel(), np.roll(s, -1, axis=1)[:-1].ravel()
    c, d = s[1:].ravel(), np.roll(s, -1, axis=1)[1:].ravel()
    faces += [np.stack([a, c, b], 1), np.stack([b, c, d], 1)]
    verts = np.concatenate([plane, sphere])
    uv = (verts[:, :2] + 1) / 2
    return verts, np.concatenate(faces).astype(np.int32), uv


def _splats_on(verts, faces, rng, per_face: int = 2) -> tuple[SplatTable, np.ndarray]:
    """Splats on the faces (bary inside, a small height), degree-1 SH; and each one's face."""
    face = np.repeat(np.arange(len(faces)), per_face)
    bary = rng.dirichlet([4, 4, 4], size=len(face))
    p = verts[faces[face]]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    means = np.einsum("mk,mki->mi", bary, p) + 0.002 * n
    m = len(face)
    table = SplatTable(
        means=means.astype(np.float32),
        log_scales=np.log(rng.uniform(0.005, 0.02, (m, 3))).astype(np.float32),
        quaternions=rng.normal(size=(m, 4)).astype(np.float32),
        sh=rng.normal(scale=0.3, size=(m, 3, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=m).astype(np.float32),
    )
    return table, face


def _write_obj(path: Path, verts, faces, uv) -> Path:
    """SuGaR's layout (pytorch3d save_obj): mtllib, usemtl, v, vt, f v/vt; a .mtl and a .png beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path.with_suffix(".png"), np.full((8, 8, 3), 200, np.uint8))
    path.with_suffix(".mtl").write_text(f"newmtl mesh\nKd 1.0 1.0 1.0\nmap_Kd {path.stem}.png\n")
    lines = [f"mtllib {path.stem}.mtl", "usemtl mesh"]
    lines += [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in verts]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in tri) for tri in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


class World:
    """The scene: the true surface in the root's frame, the root (floor-aligned, scaled), the dataset."""

    def __init__(self, tmp: Path, tool: str, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.verts, self.faces, self.uv = _scene_surface()
        self.bundle = tmp / "bundle"
        self.bundle.mkdir()
        self.root = bpy.data.objects.new("Scene Root", None)
        bpy.context.scene.collection.objects.link(self.root)
        self.root["da3_bundle"] = str(self.bundle)
        self.root.matrix_basis = Matrix(_similarity(rng, 2.5).tolist())  # the user's alignment and scale
        self.dataset_to_root = _similarity(rng, 0.7)
        self.dataset = tmp / tool
        self.dataset.mkdir()
        write_sidecar(
            self.dataset,
            DatasetSidecar(tool, str(self.bundle), "bundle", "Scene Root", self.dataset_to_root, None, None),
        )
        self.to_dataset = np.linalg.inv(self.dataset_to_root)  # root-local → dataset frame
        bpy.context.view_layer.update()

    def world(self, local: np.ndarray) -> np.ndarray:
        return _apply(np.asarray(self.root.matrix_world, np.float64), local)


def _nerfstudio_run(world: World, rng) -> tuple[Path, np.ndarray]:
    """transforms.json and a run's dataparser_transforms.json; returns the run folder and the forward
    map dataset frame → nerfstudio's normalised frame (p_ns = scale * (T @ [p; 1]))."""
    (world.dataset / "transforms.json").write_text(json.dumps({"frames": []}))
    run = world.dataset / "outputs" / "nerfstudio" / "splatfacto" / "2025-01-01_000000"
    run.mkdir(parents=True)
    transform, scale = np.hstack([_rotation(rng), rng.normal(size=(3, 1))]), 0.31
    (run / "dataparser_transforms.json").write_text(
        json.dumps({"transform": transform.tolist(), "scale": scale})
    )
    forward = np.eye(4)
    forward[:3] = scale * transform
    return run, forward


def _import(paths, **options):
    return bpy.ops.import_scene.da3_trained_result(
        filepath=str(paths[0]),
        directory=str(Path(paths[0]).parent),
        files=[{"name": Path(p).name} for p in paths],
        **options,
    )


def _evaluated_points(obj) -> np.ndarray:
    dg = bpy.context.evaluated_depsgraph_get()
    dg.update()
    me = obj.evaluated_get(dg).data
    out = np.empty(len(me.vertices) * 3, np.float32)
    me.attributes["position"].data.foreach_get("vector", out)
    return _apply(np.asarray(obj.matrix_world, np.float64), out.reshape(-1, 3).astype(np.float64))


def test_sugar_mesh_lands_on_the_surface_and_follows_the_root(clean_scene, tmp_path):
    world = World(tmp_path, "3dgs")
    obj_path = tmp_path / "SuGaR" / "output" / "refined_mesh" / "3dgs" / "sugarfine_x.obj"
    _write_obj(obj_path, _apply(world.to_dataset, world.verts), world.faces, world.uv)
    assert _import([obj_path], dataset=str(world.dataset)) == {"FINISHED"}
    mesh = bpy.data.objects["SuGaR Mesh"]
    assert mesh.parent == world.root and mesh["da3_result"] == "sugar_mesh"
    assert len(mesh.data.polygons) == len(world.faces) and "UVMap" in mesh.data.uv_layers
    image = next(n for n in mesh.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage").image
    assert Path(image.filepath).name == "sugarfine_x.png"
    np.testing.assert_allclose(_evaluated_points(mesh), world.world(world.verts), atol=TOL)
    world.root.matrix_basis = Matrix(_similarity(np.random.default_rng(5), 0.3).tolist())  # moved, scaled
    bpy.context.view_layer.update()
    np.testing.assert_allclose(_evaluated_points(mesh), world.world(world.verts), atol=TOL)
    assert bpy.context.scene["da3_last_dataset"] == str(world.dataset)


def test_nerfstudio_splats_and_dn_splatter_mesh_come_back(clean_scene, tmp_path):
    rng = np.random.default_rng(3)
    world = World(tmp_path, "nerfstudio")
    run, forward = _nerfstudio_run(world, rng)
    truth, _ = _splats_on(world.verts, world.faces, rng)  # in the root's frame
    ns = forward @ world.to_dataset
    export = world.dataset / "exports" / "splat"
    export.mkdir(parents=True)
    write_splat_table(export / "splat.ply", transform_splats(truth, ns))
    write_mesh_ply(export / "mesh.ply", Mesh(_apply(ns, world.verts), world.faces))
    assert _import([export / "splat.ply", export / "mesh.ply"]) == {"FINISHED"}
    splats, mesh = bpy.data.objects["nerfstudio Gaussians"], bpy.data.objects["DN-Splatter Mesh"]
    assert splats.parent == mesh.parent == world.root
    np.testing.assert_allclose(_evaluated_points(mesh), world.world(world.verts), atol=TOL)
    from bl_ext.pytest_dev.da3_reconstruct.scene.gaussians import splats_of

    got, want = splats_of(splats), transform_splats(truth, world.to_dataset)  # stored: the dataset frame
    np.testing.assert_allclose(got.means, want.means, atol=TOL)
    local = np.asarray(splats.matrix_local, np.float64)
    np.testing.assert_allclose(
        _apply(world.dataset_to_root, got.means.astype(np.float64)), truth.means, atol=TOL
    )
    np.testing.assert_allclose(local, world.dataset_to_root, atol=1e-6)

    def covariance(t):
        r = quaternion_wxyz_to_matrix(t.quaternions)
        s = np.exp(t.log_scales.astype(np.float64))
        return r @ (s[:, :, None] ** 2 * np.swapaxes(r, 1, 2))

    lin = world.dataset_to_root[:3, :3]
    np.testing.assert_allclose(lin @ covariance(got) @ lin.T, covariance(truth), atol=1e-9, rtol=1e-4)
    dirs = rng.normal(size=(len(truth), 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    turn = lin / np.cbrt(np.linalg.det(lin))
    np.testing.assert_allclose(eval_sh(got.sh, dirs @ turn), eval_sh(truth.sh, dirs), atol=1e-4)


def test_sugar_splats_follow_their_faces(clean_scene, tmp_path):
    rng = np.random.default_rng(4)
    world = World(tmp_path, "3dgs")
    out = tmp_path / "SuGaR" / "output"
    obj_path = _write_obj(
        out / "refined_mesh" / "3dgs" / "sugarfine_x.obj",
        _apply(world.to_dataset, world.verts),
        world.faces,
        world.uv,
    )
    truth, face = _splats_on(world.verts, world.faces, rng)
    (out / "refined_ply" / "3dgs").mkdir(parents=True)
    write_splat_table(
        out / "refined_ply" / "3dgs" / "sugarfine_x.ply", transform_splats(truth, world.to_dataset)
    )
    assert _import([obj_path], dataset=str(world.dataset)) == {"FINISHED"}  # the companion comes along
    splats, mesh = bpy.data.objects["SuGaR Gaussians"], bpy.data.objects["SuGaR Mesh"]
    assert splats.modifiers[0].name == "DA3 Bind to Mesh" and splats.modifiers[1].name == "DA3 Gaussians"
    splats.modifiers["DA3 Gaussians"].show_viewport = False  # read the bound centres themselves
    np.testing.assert_allclose(
        _evaluated_points(splats), world.world(truth.means.astype(np.float64)), atol=TOL
    )
    # move one face's vertices by a rotation + translation (a rigid motion of that face)
    f = int(np.flatnonzero(world.faces[:, 0] >= 64)[5])  # a sphere face
    corners = world.faces[f]
    motion = _similarity(rng, 1.0)
    moved_local = world.verts.copy()
    moved_local[corners] = _apply(motion, world.verts[corners])
    pos = np.empty(len(world.verts) * 3, np.float32)
    mesh.data.attributes["position"].data.foreach_get("vector", pos)
    pos = pos.reshape(-1, 3)
    pos[corners] = _apply(world.to_dataset, moved_local[corners])
    mesh.data.attributes["position"].data.foreach_set("vector", pos.ravel())
    mesh.data.update()
    now = _evaluated_points(splats)
    mine = face == f
    expected = world.world(_apply(motion, truth.means[mine].astype(np.float64)))
    np.testing.assert_allclose(now[mine], expected, atol=TOL)
    # the rotations turned with the face
    dg = bpy.context.evaluated_depsgraph_get()
    q = np.empty(len(truth) * 4, np.float32)
    splats.evaluated_get(dg).data.attributes["rotation"].data.foreach_get("value", q)
    r_now = quaternion_wxyz_to_matrix(q.reshape(-1, 4)[mine])
    lin = world.dataset_to_root[:3, :3] / np.cbrt(np.linalg.det(world.dataset_to_root[:3, :3]))
    r_want = lin.T @ motion[:3, :3] @ quaternion_wxyz_to_matrix(truth.quaternions[mine])
    np.testing.assert_allclose(r_now, r_want, atol=1e-4)


def test_refusals_leave_nothing(clean_scene, tmp_path):
    world = World(tmp_path, "3dgs")
    before = (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.node_groups))
    (world.dataset / "sugarfine.pt").write_bytes(b"\x80\x04K\x01.")
    broken = world.dataset / "broken.obj"
    broken.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n")
    cut = world.dataset / "cut.ply"
    write_splat_table(cut, _splats_on(world.verts, world.faces, np.random.default_rng(0))[0])
    cut.write_bytes(cut.read_bytes()[:-100])
    good = _write_obj(world.dataset / "good.obj", world.verts, world.faces, world.uv)
    for paths, words in (
        ([world.dataset / "sugarfine.pt"], "never opened"),
        ([broken], "outside 1..3"),
        ([good, cut], "cut.ply"),
    ):
        with pytest.raises(RuntimeError, match=words):
            _import(paths)
        after = (
            len(bpy.data.objects),
            len(bpy.data.meshes),
            len(bpy.data.materials),
            len(bpy.data.node_groups),
        )
        assert after == before
    elsewhere = _write_obj(tmp_path / "elsewhere" / "m.obj", world.verts, world.faces, world.uv)
    bpy.context.scene.pop("da3_last_dataset", None)
    with pytest.raises(RuntimeError, match="set Dataset"):
        _import([elsewhere])


def test_panel_and_menu_offer_the_import(clean_scene):
    from .conftest import draw

    log = draw(bpy.types.VIEW3D_PT_da3_import).log
    assert ("operator", "import_scene.da3_trained_result") in log
