"""A quick-look scene as binary glTF: coloured points plus camera frustums (trimesh, imported lazily).

Axes: glTF is y-up, right-handed, with cameras looking down −z. The engine's world is the reference
camera's OpenCV frame (x right, y down, z forward), so every coordinate is multiplied by
``diag(1, −1, −1)`` (a half turn about x): the reference camera then sits at the origin looking
down −z with +y up, which is how a glTF viewer (or Blender's glTF importer) expects a camera to look.
Nothing is re-centred or re-scaled, so the file lines up with the other exports after that flip.

Frustums are line segments (a glTF ``LINES`` primitive): apex at the camera centre, four edges to
the image corners at a depth of ``frustum_scale`` (default: 5 % of the scene's extent), and the
image rectangle, one colour per camera along a hue wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..geometry.cameras import invert_extrinsics

__all__ = ["OPENCV_TO_GLTF", "frustum_segments", "write_scene_glb"]

OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0])


def _hue_colors(n: int) -> np.ndarray:
    """(n, 4) uint8 RGBA, evenly spaced hues at full saturation."""
    h = (np.arange(n) / max(n, 1))[:, None] * 6.0
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h) % 6.0
    rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    out = np.full((n, 4), 255, np.uint8)
    out[:, :3] = np.round(rgb * 255).astype(np.uint8)
    return out


def frustum_segments(extrinsics: np.ndarray, intrinsics: np.ndarray, image_sizes, depth: float) -> np.ndarray:
    """Line segments of camera frustums in the engine's world frame: (N, 8, 2, 3) float64.

    extrinsics (N, 3, 4) w2c; intrinsics (N, 3, 3); image_sizes (H, W) or (N, 2); depth: z-distance of
    the image rectangle from the apex. Per camera: 4 apex→corner edges, then the 4 rectangle sides.
    """
    K = np.asarray(intrinsics, np.float64)
    n = K.shape[0]
    sizes = np.asarray(image_sizes, np.float64)
    sizes = np.tile(sizes, (n, 1)) if sizes.shape == (2,) else sizes.reshape(n, 2)
    h, w = sizes[:, 0], sizes[:, 1]
    corners_px = np.stack(
        [np.stack([np.zeros(n), np.zeros(n)], -1), np.stack([w, np.zeros(n)], -1), np.stack([w, h], -1)]
        + [np.stack([np.zeros(n), h], -1)],
        1,
    )  # (N, 4, 2) image corners (continuous coordinates)
    pix = np.concatenate([corners_px, np.ones((n, 4, 1))], -1)  # (N, 4, 3)
    rays = pix @ np.swapaxes(np.linalg.inv(K), -1, -2)  # (N, 4, 3) with z = 1
    c2w = invert_extrinsics(np.asarray(extrinsics, np.float64))
    corners = (rays * depth) @ np.swapaxes(c2w[:, :3, :3], -1, -2) + c2w[:, None, :3, 3]  # (N, 4, 3)
    apex = np.broadcast_to(c2w[:, None, :3, 3], (n, 4, 3))
    edges = np.stack([apex, corners], 2)  # (N, 4, 2, 3)
    rect = np.stack([corners, np.roll(corners, -1, axis=1)], 2)  # (N, 4, 2, 3)
    return np.concatenate([edges, rect], 1)


def write_scene_glb(
    path: str | os.PathLike,
    xyz: np.ndarray,
    rgb: np.ndarray | None,
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    image_sizes,
    frustum_scale: float | None = None,
    mesh=None,
) -> Path:
    """Write points (M, 3) with colours (M, 3) uint8 and the N cameras' frustums as a .glb file.

    extrinsics (N, 3, 4) w2c OpenCV; intrinsics (N, 3, 3) for images of ``image_sizes`` ((H, W) or
    (N, 2)); frustum_scale: frustum depth in world units (None: 5 % of the point cloud's 5–95 % extent).
    mesh: a ``geometry.mesh.Mesh`` added with its vertex colours (the fused mesh), or None.
    Coordinates are converted to glTF axes (see the module docstring).
    """
    import trimesh  # lazy: heavy, and Blender does not need it

    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    m = xyz.shape[0]
    if rgb is None:
        colors = np.full((m, 4), 255, np.uint8)
    else:
        rgb = np.asarray(rgb)
        if rgb.shape != (m, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be ({m}, 3) uint8, got {rgb.shape} {rgb.dtype}")
        colors = np.concatenate([rgb, np.full((m, 1), 255, np.uint8)], 1)
    ext = np.asarray(extrinsics, np.float64)
    centers = invert_extrinsics(ext)[:, :3, 3] if ext.size else np.zeros((0, 3))
    if frustum_scale is None:
        ref = xyz if m >= 2 else np.concatenate([xyz, centers])
        if len(ref) >= 2:
            lo, hi = np.percentile(ref, [5, 95], axis=0)
            extent = float(np.linalg.norm(hi - lo))
        else:
            extent = 0.0
        frustum_scale = 0.05 * extent if extent > 0 else 0.1

    scene = trimesh.Scene()
    if m:
        scene.add_geometry(trimesh.PointCloud(xyz @ OPENCV_TO_GLTF, colors=colors), geom_name="points")
    if mesh is not None and mesh.num_faces:
        vertex_colors = (
            None
            if mesh.colors is None
            else np.concatenate([mesh.colors, np.full((mesh.num_vertices, 1), 255, np.uint8)], 1)
        )
        surface = trimesh.Trimesh(
            mesh.vertices.astype(np.float64) @ OPENCV_TO_GLTF,
            mesh.faces[:, ::-1] if np.linalg.det(OPENCV_TO_GLTF) < 0 else mesh.faces,
            vertex_colors=vertex_colors,
            process=False,
        )
        scene.add_geometry(surface, geom_name="mesh")
    n = ext.shape[0]
    if n:
        segs = (
            frustum_segments(ext, intrinsics, image_sizes, float(frustum_scale)) @ OPENCV_TO_GLTF
        )  # (N,8,2,3)
        verts = segs.reshape(-1, 3)
        entities = [trimesh.path.entities.Line(np.array([2 * i, 2 * i + 1])) for i in range(n * 8)]
        path_colors = np.repeat(_hue_colors(n), 8, axis=0)
        frustums = trimesh.path.Path3D(entities=entities, vertices=verts, colors=path_colors, process=False)
        scene.add_geometry(frustums, geom_name="cameras")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = scene.export(file_type="glb")
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
