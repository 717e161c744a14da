"""Issue 12 end to end: a synthetic still bundle with ground truth (a sphere resting on a plane, depth
ray-cast from known cameras) imported into Blender, its root floor-aligned, turned, moved and scaled;
Export Dataset writes a 3dgs and a nerfstudio dataset; "trained" stand-ins that move nothing are written
in each tool's own output layout — SuGaR's refined textured OBJ (+ .mtl + .png) and refined Gaussians,
3DGS's ``point_cloud/iteration_N/point_cloud.ply``, and a splatfacto ``splat.ply`` plus a DN-Splatter
mesh in nerfstudio's normalised frame with the run's ``dataparser_transforms.json`` computed from the
exported transforms.json as nerfstudio's dataparser does by default — and imported back with the
import operator. Everything lands on the original geometry under the root (within 1e-4 of the scene's
size), also after the root moves again.

The stand-ins are placed from what each dataset itself says, not from our sidecar: a trainer that moves
nothing puts the surface where the dataset's cameras see it, i.e. through the similarity that takes the
bundle's cameras onto the dataset's cameras (read from ``images.bin`` and ``transforms.json``).
"""

from __future__ import annotations

import json
import struct
import types
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from engine.formats.bundle import write_bundle
from engine.formats.datasets.png import write_png
from engine.formats.gaussians_ply import SplatTable, write_splat_table
from engine.formats.mesh_ply import write_mesh_ply
from engine.formats.ply import read_ply
from engine.geometry.mesh import Mesh
from engine.geometry.splat_transform import transform_splats

RADIUS, HALF = 0.4, 1.0  # the sphere's radius; the plane is [-HALF, HALF]² at Z = 0 (scene frame, Z up)
H, W, FOCAL = 24, 32, 28.0
SUGAR_STEM = (
    "sugarfine_3Dgs7000_densityestim02_sdfnorm02_level03_decim200000_normalconsistency01_gaussperface1"
)


# --- ground truth ---------------------------------------------------------------------------------------


def _surface() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plane and the sphere on it as one triangle mesh (scene frame): vertices, faces, uv per vertex."""
    n = 7
    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    plane = np.stack([(2 * x - 1) * HALF, (2 * y - 1) * HALF, np.zeros_like(x)], -1).reshape(-1, 3)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = [np.stack([a, b, d], 1), np.stack([a, d, c], 1)]
    lat, lon = np.meshgrid(
        np.linspace(0.3, np.pi - 0.3, 6), np.linspace(0, 2 * np.pi, 11)[:-1], indexing="ij"
    )
    sphere = RADIUS * np.stack([np.sin(lat) * np.cos(lon), np.sin(lat) * np.sin(lon), np.cos(lat)], -1)
    sphere = sphere.reshape(-1, 3) + [0.0, 0.0, RADIUS]
    s = np.arange(6 * 10).reshape(6, 10) + len(plane)
    a, b = s[:-1].ravel(), np.roll(s, -1, axis=1)[:-1].ravel()
    c, d = s[1:].ravel(), np.roll(s, -1, axis=1)[1:].ravel()
    faces += [np.stack([a, c, b], 1), np.stack([b, c, d], 1)]
    verts = np.concatenate([plane, sphere])
    return verts, np.concatenate(faces).astype(np.int32), (verts[:, :2] / HALF + 1) / 2


def _off_surface(p: np.ndarray) -> np.ndarray:
    """Each scene-frame point's distance to the infinite plane Z = 0 or the sphere, whichever is nearer."""
    centre = np.array([0.0, 0.0, RADIUS])
    return np.minimum(np.abs(p[:, 2]), np.abs(np.linalg.norm(p - centre, axis=1) - RADIUS))


def _look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(4, 4) OpenCV world-to-camera of a camera at ``centre`` looking at ``target`` (scene Z up)."""
    f = (target - centre) / np.linalg.norm(target - centre)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([r, np.cross(f, r), f], 1)  # x right, y down, z forward
    c2w[:3, 3] = centre
    return np.linalg.inv(c2w)


def _raycast(w2c: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(H, W) z-depth of the plane Z = 0 and the sphere from one camera (pixel centres)."""
    v, u = np.mgrid[0:H, 0:W] + 0.5
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T  # camera frame, z = 1
    c2w = np.linalg.inv(w2c)
    d = rays @ c2w[:3, :3].T  # world directions, scaled so the camera's z grows by 1 per unit
    o = c2w[:3, 3]
    t_plane = -o[2] / d[..., 2]
    oc = o - [0.0, 0.0, RADIUS]
    a, b, c = (d * d).sum(-1), 2 * (d @ oc), oc @ oc - RADIUS**2
    disc = b * b - 4 * a * c
    t_sphere = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    t = np.where((t_sphere > 0) & (t_sphere < t_plane), t_sphere, t_plane)
    assert np.all(t > 0) and np.all(np.isfinite(t)), "every pixel sees the plane"
    return t


class Truth:
    """Four cameras above the scene; the engine's world is the first camera's frame (as DA3's is)."""

    def __init__(self):
        self.verts, self.faces, self.uv = _surface()
        k = np.array([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1]])
        centres = [(2.2, -1.6, 1.8), (-1.9, -1.9, 2.0), (-2.0, 1.7, 1.6), (1.8, 2.1, 2.3)]
        scene_w2c = np.stack([_look_at(np.array(c), np.array([0.0, 0.0, RADIUS / 2])) for c in centres])
        self.scene_to_engine = scene_w2c[0]
        self.depth = np.stack([_raycast(m, k) for m in scene_w2c]).astype(np.float32)
        self.extrinsics = (scene_w2c @ np.linalg.inv(scene_w2c[0]))[:, :3].astype(np.float32)
        self.intrinsics = np.tile(k, (len(centres), 1, 1)).astype(np.float32)
        self.engine_verts = _apply(self.scene_to_engine, self.verts)  # the surface in the bundle frame

    def write_bundle(self, folder: Path) -> Path:
        n = len(self.depth)
        shade = (np.clip(self.depth / self.depth.max(), 0, 1) * 255).astype(np.uint8)
        arrays = {
            "images": np.repeat(shade[..., None], 3, axis=-1),
            "depth": self.depth,
            "conf": np.ones_like(self.depth),
            "extrinsics": self.extrinsics,
            "intrinsics": self.intrinsics,
            "original_sizes": np.tile(np.array([H, W], np.int32), (n, 1)),
        }
        return write_bundle(
            folder, arrays, {"model_id": "synthetic-sphere", "options": {}, "ref_view_idx": 0}
        )


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.asarray(p, np.float64) @ m[:3, :3].T + m[:3, 3]


def _similarity_onto(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(4, 4) the similarity taking the points ``src`` onto ``dst`` (Umeyama, least squares)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    r = u @ fix @ vt
    s = np.trace(np.diag(sig) @ fix) / (a * a).sum(1).mean()
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = s * r, mu_d - s * r @ mu_s
    return out


def _centres(w2c: np.ndarray) -> np.ndarray:
    return -np.einsum("nji,nj->ni", w2c[:, :3, :3], w2c[:, :3, 3])


# --- what the datasets say ------------------------------------------------------------------------------


def _colmap_images(path: Path) -> tuple[list[str], np.ndarray]:
    """COLMAP's images.bin (its documented binary layout): names and (N, 3, 4) world-to-camera."""
    data = path.read_bytes()
    (count,), at, names, poses = struct.unpack_from("<Q", data), 8, [], []
    for _ in range(count):  # one record per image
        _, qw, qx, qy, qz, tx, ty, tz, _ = struct.unpack_from("<i7di", data, at)
        at += 64
        end = data.index(b"\0", at)
        names.append(data[at:end].decode())
        (points,) = struct.unpack_from("<Q", data, end + 1)
        at = end + 9 + 24 * points
        r = np.array(
            [
                [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)],
                [2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)],
                [2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)],
            ]
        )
        poses.append(np.hstack([r, [[tx], [ty], [tz]]]))
    order = np.argsort(names)
    return [names[i] for i in order], np.stack(poses)[order]


def _bundle_to_colmap(truth: Truth, dataset: Path) -> np.ndarray:
    """Where a 3DGS/SuGaR trainer sees the bundle frame: onto the COLMAP cameras of the dataset."""
    names, w2c = _colmap_images(dataset / "sparse" / "0" / "images.bin")
    assert len(names) == len(truth.extrinsics)
    m = _similarity_onto(_centres(truth.extrinsics.astype(np.float64)), _centres(w2c))
    turn = m[:3, :3] / np.cbrt(np.linalg.det(m[:3, :3]))
    np.testing.assert_allclose(w2c[:, :, :3], truth.extrinsics[:, :, :3] @ turn.T, atol=1e-5)  # same looks
    return m


def _bundle_to_transforms(truth: Truth, dataset: Path) -> tuple[np.ndarray, np.ndarray]:
    """(bundle frame → transforms.json world, the frames' (N, 4, 4) OpenGL camera-to-world)."""
    meta = json.loads((dataset / "transforms.json").read_text())
    frames = sorted(meta["frames"], key=lambda f: f["file_path"])  # nerfstudio's order is the file order
    c2w = np.array([f["transform_matrix"] for f in frames], np.float64)
    m = _similarity_onto(_centres(truth.extrinsics.astype(np.float64)), c2w[:, :3, 3])
    turn = m[:3, :3] / np.cbrt(np.linalg.det(m[:3, :3]))
    gl = np.diag([1.0, -1.0, -1.0])
    np.testing.assert_allclose(
        c2w[:, :3, :3], turn @ np.swapaxes(truth.extrinsics[:, :, :3], 1, 2) @ gl, atol=1e-5
    )
    return m, c2w


def _nerfstudio_dataparser(c2w: np.ndarray) -> tuple[np.ndarray, float]:
    """nerfstudio's ``Nerfstudio`` dataparser with its defaults (orientation_method "up", center_method
    "poses", auto_scale_poses, scale_factor 1; transforms.json without ``applied_transform`` and the
    dataset without ``colmap/sparse/0``, so the dataparser transform is ``auto_orient_and_center_poses``'s):
    the (3, 4) transform and the scale it saves in dataparser_transforms.json."""
    translation = c2w[:, :3, 3].mean(0)
    up = c2w[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    v = np.cross(up, [0.0, 0.0, 1.0])  # camera_utils.rotation_matrix_between(up, z): Rodrigues
    v /= np.linalg.norm(v)
    skew = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    theta = np.arccos(np.clip(up[2], -1, 1))
    rotation = np.eye(3) + np.sin(theta) * skew + (1 - np.cos(theta)) * skew @ skew
    transform = np.hstack([rotation, -rotation @ translation[:, None]])
    oriented = c2w[:, :3, 3] @ rotation.T + transform[:, 3]
    return transform, 1.0 / float(np.abs(oriented).max())


# --- the stand-ins --------------------------------------------------------------------------------------


def _splats(verts: np.ndarray, faces: np.ndarray, rng) -> SplatTable:
    """One splat a little above each face's centre (degree-1 SH)."""
    p = verts[faces]
    n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    m = len(faces)
    return SplatTable(
        means=(p.mean(1) + 0.003 * n).astype(np.float32),
        log_scales=np.log(rng.uniform(0.005, 0.02, (m, 3))).astype(np.float32),
        quaternions=rng.normal(size=(m, 4)).astype(np.float32),
        sh=rng.normal(scale=0.3, size=(m, 3, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=m).astype(np.float32),
    )


def _sugar_obj(path: Path, verts: np.ndarray, faces: np.ndarray, uv: np.ndarray) -> Path:
    """SuGaR's refined mesh as pytorch3d's save_obj writes it: mtllib, usemtl, v, vt, f v/vt; .mtl + .png."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path.with_suffix(".png"), np.full((8, 8, 3), 180, np.uint8))
    path.with_suffix(".mtl").write_text(f"newmtl mesh\nKd 1.0 1.0 1.0\nmap_Kd {path.stem}.png\n")
    lines = [f"mtllib {path.stem}.mtl", "usemtl mesh"]
    lines += [f"v {x:.9f} {y:.9f} {z:.9f}" for x, y, z in verts]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in tri) for tri in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


def _export(tool: str, folder: Path) -> None:
    s = bpy.context.scene.da3
    s.dataset_tool, s.dataset_folder, s.dataset_points = tool, str(folder), 2000
    assert bpy.ops.da3.export_dataset() == {"FINISHED"}


def _world_points(obj, gaussians) -> np.ndarray:
    """World positions of a mesh's evaluated vertices, or of a Gaussians object's splat centres."""
    if gaussians is not None:
        local = gaussians.splats_of(obj).means.astype(np.float64)
    else:
        dg = bpy.context.evaluated_depsgraph_get()
        me = obj.evaluated_get(dg).data
        local = np.empty(len(me.vertices) * 3, np.float32)
        me.attributes["position"].data.foreach_get("vector", local)
        local = local.reshape(-1, 3).astype(np.float64)
    return _apply(np.asarray(obj.matrix_world, np.float64), local)


def test_datasets_and_trained_results_round_trip_onto_the_scene(clean_scene, sub, tmp_path):
    truth, rng = Truth(), np.random.default_rng(12)
    importer = sub("scene.importer")
    result = importer.import_bundle(
        bpy.context, truth.write_bundle(tmp_path / "bundle"), importer.ImportOptions(max_points=None)
    )
    root = result.root
    # floor-aligned (the plane at Z = 0), turned about Z, moved and scaled ×2.5, as Set Floor and Scale leave it
    aligned = Matrix(np.linalg.inv(truth.scene_to_engine).tolist())
    root.matrix_world = (
        Matrix.Translation((1.5, -0.5, 0.0)) @ Matrix.Rotation(0.6, 4, "Z") @ Matrix.Scale(2.5, 4) @ aligned
    )
    bpy.context.view_layer.objects.active = root
    bpy.context.view_layer.update()
    floor = _apply(np.asarray(root.matrix_world, np.float64), truth.engine_verts[: 7 * 7])
    np.testing.assert_allclose(floor[:, 2], 0.0, atol=1e-5)  # Blender keeps float32 matrices

    gs, ns = tmp_path / "gs", tmp_path / "ns"
    _export("3dgs", gs)
    _export("nerfstudio", ns)
    assert not (ns / "colmap").exists() and "applied_transform" not in json.loads(
        (ns / "transforms.json").read_text()
    )

    # SuGaR (its own output folder, named after the dataset) and 3DGS (-m <dataset>/output/<run>)
    to_gs = _bundle_to_colmap(truth, gs)
    gs_verts = _apply(to_gs, truth.engine_verts)
    sugar = tmp_path / "SuGaR" / "output"
    obj_path = _sugar_obj(
        sugar / "refined_mesh" / "gs" / f"{SUGAR_STEM}.obj", gs_verts, truth.faces, truth.uv
    )
    bound = _splats(truth.engine_verts, truth.faces, rng)  # bundle frame
    (sugar / "refined_ply" / "gs").mkdir(parents=True)
    write_splat_table(sugar / "refined_ply" / "gs" / f"{SUGAR_STEM}.ply", transform_splats(bound, to_gs))
    three = _splats(truth.engine_verts, truth.faces[::2], rng)
    cloud = gs / "output" / "run" / "point_cloud" / "iteration_7000" / "point_cloud.ply"
    cloud.parent.mkdir(parents=True)
    write_splat_table(cloud, transform_splats(three, to_gs))

    # nerfstudio: splatfacto's splat.ply and a DN-Splatter mesh in the dataparser's normalised frame
    to_ns_world, c2w = _bundle_to_transforms(truth, ns)
    transform, scale = _nerfstudio_dataparser(c2w)
    run = ns / "outputs" / "ns" / "splatfacto" / "2025-01-01_000000"
    run.mkdir(parents=True)
    (run / "dataparser_transforms.json").write_text(
        json.dumps({"transform": transform.tolist(), "scale": scale})
    )
    normalise = np.diag([scale, scale, scale, 1.0]) @ np.vstack([transform, [0, 0, 0, 1]])
    to_ns = normalise @ to_ns_world
    splatfacto = _splats(truth.engine_verts, truth.faces[1::2], rng)
    (ns / "exports" / "splat").mkdir(parents=True)
    write_splat_table(ns / "exports" / "splat" / "splat.ply", transform_splats(splatfacto, to_ns))
    (ns / "exports" / "mesh").mkdir(parents=True)
    write_mesh_ply(
        ns / "exports" / "mesh" / "gs_mesh.ply", Mesh(_apply(to_ns, truth.engine_verts), truth.faces)
    )
    # the seeds nerfstudio loads (sparse_pc.ply) lie on the surface in its frame too
    seeds = read_ply(ns / "sparse_pc.ply")
    seeds = np.stack([seeds["x"], seeds["y"], seeds["z"]], 1).astype(np.float64)
    to_scene = np.linalg.inv(truth.scene_to_engine) @ np.linalg.inv(to_ns_world)
    assert len(seeds) > 100 and _off_surface(_apply(to_scene, seeds)).max() < 1e-4

    def imported(paths, **options):
        paths = [Path(p) for p in paths]
        return bpy.ops.import_scene.da3_trained_result(
            filepath=str(paths[0]),
            directory=str(paths[0].parent),
            files=[{"name": p.name} for p in paths],
            **options,
        )

    assert imported([obj_path], dataset=str(gs)) == {"FINISHED"}  # with its refined Gaussians, bound
    # a nerfstudio run named in the options does not move a 3DGS result (its frame is the dataset's)
    assert imported([cloud], dataparser=str(run / "dataparser_transforms.json")) == {"FINISHED"}
    assert imported([ns / "exports" / "splat" / "splat.ply"]) == {"FINISHED"}
    assert imported([ns / "exports" / "mesh" / "gs_mesh.ply"]) == {"FINISHED"}

    gaussians = sub("scene.gaussians")
    objects = bpy.data.objects
    sugar_splats = objects["SuGaR Gaussians"]
    assert sugar_splats.modifiers[0].name == "DA3 Bind to Mesh"
    sugar_splats.modifiers["DA3 Gaussians"].show_viewport = False  # the bound centres themselves
    expected = {  # object → (its points in Blender's world, the truth in the bundle frame = root-local)
        "SuGaR Mesh": (None, truth.engine_verts),
        "SuGaR Gaussians": (None, bound.means),
        "3DGS Gaussians": (gaussians, three.means),
        "nerfstudio Gaussians": (gaussians, splatfacto.means),
        "DN-Splatter Mesh": (None, truth.engine_verts),
    }
    for moved in (False, True):
        if moved:  # the user aligns again afterwards: everything follows the root
            root.matrix_world = (
                Matrix.Translation((-3.0, 2.0, 1.0)) @ Matrix.Rotation(-1.1, 4, "X") @ Matrix.Scale(0.4, 4)
            )
            bpy.context.view_layer.update()
        to_world = np.asarray(root.matrix_world, np.float64)
        for name, (reader, local) in expected.items():
            obj = objects[name]
            assert obj.parent == root, name
            want = _apply(to_world, local)
            size = np.linalg.norm(np.ptp(_apply(to_world, truth.engine_verts), axis=0))
            error = np.linalg.norm(_world_points(obj, reader) - want, axis=1).max()
            assert error < 1e-4 * size, (name, moved, error / size)


def test_the_root_on_import_is_the_frame_a_cli_export_uses(clean_scene, sub, tmp_path):
    """One axis turn and one choice of the root's transform for the importer and the datasets (a CLI export
    writes its dataset in the frame Blender would give the root)."""
    floor, convert = sub("engine.geometry.floor"), sub("scene.convert")
    assert convert.ENGINE_TO_BLENDER is floor.ENGINE_TO_BLENDER  # defined once, in the engine
    assert sub("engine.formats.datasets").ENGINE_TO_BLENDER is floor.ENGINE_TO_BLENDER
    importer = sub("scene.importer")
    result = importer.import_bundle(
        bpy.context, Truth().write_bundle(tmp_path / "b"), importer.ImportOptions()
    )
    np.testing.assert_allclose(np.array(result.root.matrix_world), floor.default_root(False, None), atol=1e-7)
    root_alignment = sub("scene.bundle_data").root_alignment
    aligned = np.diag([2.0, 2.0, 2.0, 1.0])
    for options, alignment, expected in (
        ({}, None, floor.ENGINE_TO_BLENDER),
        ({}, aligned, aligned),
        ({"cameras": "scene"}, aligned, np.eye(4)),
    ):
        bundle = types.SimpleNamespace(options=options, world_alignment=alignment)
        np.testing.assert_array_equal(root_alignment(bundle), expected)
        np.testing.assert_array_equal(floor.default_root(bool(options), alignment), expected)
