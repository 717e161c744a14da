"""Render the README pictures (docs/images/*.png) with Blender, from a ground-truth bundle.

    .venv-blender5/bin/python tools/readme_images.py            # every picture
    .venv-blender5/bin/python tools/readme_images.py mesh       # only some: reconstruction, camera_match, gaussians, mesh

A procedural scene is rendered with Cycles from six known cameras (tools/synthetic_scene.py), with its
depth pass. Those images, depths and cameras are written as a result bundle — exactly what the engine
writes — and imported with the extension's importer (File > Import > DA3 Reconstruction does the
same). Then:

* ``docs/images/reconstruction.png``: the imported point cloud from a new viewpoint (Cycles);
* ``docs/images/camera_match.png``: an input image next to the point cloud rendered through the
  imported camera of that view (they line up: the camera conversion is exact);
* ``docs/images/gaussians.png``: 3D Gaussians made from the same views (one flat splat per pixel,
  facing its camera, as a splat trainer starts them) in the bundle's ``gs_*`` arrays, imported as a
  Gaussians object and rendered by Cycles from the overview and through view 3's camera;
* ``docs/images/mesh.png``: the six depth maps fused into one mesh by the engine's TSDF fusion
  (``engine.geometry.fusion``, run with the engine's Python: ``$DA3_ENGINE_PYTHON`` or ``.venv``),
  written as the bundle's ``mesh.ply``, imported with its vertex colours and rendered by Cycles from
  the overview and through view 3's camera.

The geometry here is ground truth, not a network prediction, so the pictures show what the import
builds; `tools/demo.py` runs the real engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="da3_readme_"))
sys.modules["torch"] = None  # Blender's side never imports torch

import bpy  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import synthetic_scene  # noqa: E402
from extension_package import load_extension  # noqa: E402


def _read_png(path: str) -> np.ndarray:
    image = bpy.data.images.load(path)
    (w, h), channels = image.size, image.channels
    pixels = np.empty(w * h * channels, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(h, w, channels)[::-1, :, :3]


def _save_png(path: str, rgb: np.ndarray) -> None:
    h, w = rgb.shape[:2]
    image = bpy.data.images.new("out", w, h, alpha=False)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = rgb[::-1]
    image.pixels.foreach_set(rgba.ravel())
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)


def _splats_from_views(arrays: dict, step: int = 2) -> dict:
    """One flat Gaussian per ``step``-th pixel with depth: at the pixel's 3D point, facing its camera,
    about one pixel footprint wide, coloured by the pixel (SH degree 0), in the bundle's ``gs_*`` form."""
    from da3_reconstruct.engine.geometry.cameras import matrix_to_quaternion_wxyz

    means, scales, quats, colours = [], [], [], []
    for image, depth, w2c, K in zip(
        arrays["images"], arrays["depth"], arrays["extrinsics"], arrays["intrinsics"], strict=True
    ):
        v, u = np.mgrid[0 : depth.shape[0] : step, 0 : depth.shape[1] : step]
        d = depth[v, u]
        keep = d > 0
        u, v, d = u[keep] + 0.5, v[keep] + 0.5, d[keep]
        rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=1)
        rot, t = w2c[:, :3].astype(np.float64), w2c[:, 3].astype(np.float64)
        means.append((rays * d[:, None] - t) @ rot)  # Rᵀ (X_c − t)
        footprint = 0.8 * step * d / K[0, 0]
        scales.append(np.stack([footprint, footprint, 0.1 * footprint], axis=1))
        quats.append(np.tile(matrix_to_quaternion_wxyz(rot.T), (len(d), 1)))
        colours.append(image[(v - 0.5).astype(int), (u - 0.5).astype(int)])
    rgb = np.concatenate(colours).astype(np.float64) / 255.0
    return {
        "gs_means": np.concatenate(means).astype(np.float32),
        "gs_scales": np.concatenate(scales).astype(np.float32),
        "gs_rotations": np.concatenate(quats).astype(np.float32),
        "gs_harmonics": ((rgb - 0.5) / 0.28209479177387814)[:, :, None].astype(np.float32),
        "gs_opacities": np.full(len(rgb), 0.95, np.float32),
    }


def _engine_python() -> str | None:
    """The engine's Python (torch): ``$DA3_ENGINE_PYTHON``, else the project's .venv."""
    venv = ROOT / ".venv" / "bin" / "python"
    found = os.environ.get("DA3_ENGINE_PYTHON") or (str(venv) if venv.is_file() else None)
    return found


def _fused_mesh(arrays: dict, work: Path) -> Path | None:
    """The views fused into ``work/mesh.ply`` by the engine (in its own Python), or None without one."""
    python = _engine_python()
    if python is None:
        print("no engine Python (set DA3_ENGINE_PYTHON): docs/images/mesh.png is not made")
        return None
    inputs, out = work / "fusion_inputs.npz", work / "mesh.ply"
    np.savez(inputs, **{k: arrays[k] for k in ("images", "depth", "extrinsics", "intrinsics")})
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); "
        "from engine.geometry.fusion import fuse; from engine.formats.mesh_ply import write_mesh_ply; "
        "a = np.load(sys.argv[2]); "
        "m = fuse(a['depth'], a['extrinsics'], a['intrinsics'], colors=a['images'], detail=2.0); "
        "write_mesh_ply(sys.argv[3], m)"
    )
    subprocess.run([python, "-c", code, str(ROOT), str(inputs), str(out)], check=True)
    return out


PICTURES = ("reconstruction", "camera_match", "gaussians", "mesh")


def main() -> int:
    wanted = set(sys.argv[1:]) or set(PICTURES)  # e.g. `readme_images.py mesh` makes only mesh.png
    if wanted - set(PICTURES):
        raise SystemExit(f"unknown pictures {sorted(wanted - set(PICTURES))}; choose from {PICTURES}")
    load_extension()
    from da3_reconstruct.engine.formats.bundle import write_bundle
    from da3_reconstruct.scene import compat, convert, importer

    out_dir = ROOT / "docs" / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="da3_readme_work_"))

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    synthetic_scene.build_scene(scene, samples=32)
    views = synthetic_scene.render_views(scene, str(work / "views"), count=6, size=(320, 240), depth=True)

    # The bundle in the engine's world frame: the first view's camera frame (as DA3 uses the reference view).
    ref = np.vstack([views[0].w2c, [0, 0, 0, 1]])  # world(Blender) -> ref camera (OpenCV)
    to_ref = np.linalg.inv(ref)  # ref camera frame -> Blender world
    arrays = {
        "images": np.stack([(_read_png(v.path) * 255 + 0.5).astype(np.uint8) for v in views]),
        "depth": np.stack([v.depth for v in views]).astype(np.float32),
        "extrinsics": np.stack([v.w2c @ to_ref for v in views]).astype(np.float32),
        "intrinsics": np.stack([v.K for v in views]).astype(np.float32),
    }
    sky = arrays["depth"] > 1e3  # the background has no depth
    arrays["depth"][sky] = 0.0
    arrays.update(_splats_from_views(arrays))
    mesh_file = _fused_mesh(arrays, work)
    extra = {"mesh.ply": mesh_file} if mesh_file else None
    folder = write_bundle(
        work / "synthetic scene", arrays, {"model_id": "ground truth", "ref_view_idx": 0}, extra
    )

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    result = importer.import_bundle(
        bpy.context, folder, importer.ImportOptions(conf_percentile=0, max_points=None)
    )
    points = result.points
    result.gaussians.hide_render = True  # the point cloud pictures first
    if result.mesh is not None:
        result.mesh.hide_render = True
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("Dark")
    compat.ensure_node_tree(world)
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.02, 0.02, 0.025, 1.0)
    scene.world = world

    modifier = points.modifiers[0]
    size = compat.modifier_input_value(modifier, "Point Size")
    compat.set_modifier_input(modifier, "Point Size", 1.5 * size)  # a little larger for a still picture

    # A new viewpoint above and beside the reference camera, looking at the cloud's centre.
    co = np.empty(len(points.data.vertices) * 3, np.float32)
    points.data.attributes["position"].data.foreach_get("vector", co)
    world_points = co.reshape(-1, 3) @ convert.ENGINE_TO_BLENDER[:3, :3].T
    centre = np.median(world_points, axis=0)
    from mathutils import Vector

    cam_data = bpy.data.cameras.new("Overview")
    cam_data.lens = 28.0
    overview = bpy.data.objects.new("Overview", cam_data)
    scene.collection.objects.link(overview)
    overview.location = Vector(centre) + Vector((3.5, -6.5, 5.0))
    overview.rotation_euler = (Vector(centre) - overview.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = overview
    scene.render.resolution_x, scene.render.resolution_y = 800, 500
    if "reconstruction" in wanted:
        scene.render.filepath = str(out_dir / "reconstruction.png")
        bpy.ops.render.render(write_still=True)

    # The same cloud through the imported camera of view 3, next to view 3's image.
    cam = result.cameras[3]
    camera_data = sys.modules["da3_reconstruct.scene.camera_data"]
    if "camera_match" in wanted:
        camera_data.apply_render_settings(scene, cam)
        through = str(work / "through.png")
        scene.render.filepath = through
        bpy.ops.render.render(write_still=True)
        left, right = _read_png(views[3].path), _read_png(through)
        gap = np.ones((left.shape[0], 8, 3), np.float32)
        _save_png(str(out_dir / "camera_match.png"), np.concatenate([left, gap, right], axis=1))

    # The Gaussians instead of the points: from the overview and through view 3's camera.
    points.hide_render = True
    if "gaussians" in wanted:
        result.gaussians.hide_render = False
        _save_png(
            str(out_dir / "gaussians.png"), _two_views(scene, camera_data, overview, cam, work, "splats")
        )
        result.gaussians.hide_render = True

    if "mesh" in wanted and result.mesh is not None:  # the fused mesh, lit by a sun and the sky
        result.mesh.hide_render = False
        sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
        sun.data.energy, sun.data.angle = 3.0, 0.2
        sun.rotation_euler = (0.7, 0.2, 0.9)
        scene.collection.objects.link(sun)
        world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.25, 0.27, 0.3, 1.0)
        _save_png(str(out_dir / "mesh.png"), _two_views(scene, camera_data, overview, cam, work, "mesh"))
    print("wrote " + ", ".join(str(out_dir / f"{name}.png") for name in sorted(wanted)))
    os._exit(0)


def _two_views(scene, camera_data, overview, cam, work: Path, stem: str) -> np.ndarray:
    """Renders from the overview (480×360) and through ``cam``, side by side."""
    pictures = []
    for i, camera in enumerate((overview, cam)):
        camera_data.apply_render_settings(scene, camera)
        if camera is overview:
            scene.render.resolution_x, scene.render.resolution_y = 480, 360
        scene.render.filepath = str(work / f"{stem}_{i}.png")
        bpy.ops.render.render(write_still=True)
        pictures.append(_read_png(scene.render.filepath))
    height = min(p.shape[0] for p in pictures)
    pictures = [p[:height] for p in pictures]
    gap = np.ones((height, 8, 3), np.float32)
    return np.concatenate([pictures[0], gap, pictures[1]], axis=1)


if __name__ == "__main__":
    sys.exit(main())
