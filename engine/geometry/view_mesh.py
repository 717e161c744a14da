"""One view's depth map → a triangle mesh in the world frame (numpy only, so Blender can call it).

The depth grid is the mesh: a vertex at the centre of every ``stride``-th pixel, two triangles per quad
of neighbouring vertices (each kept where its three corners are valid), UV-mapped to the processed image
the depth belongs to, so the view's own photo textures it exactly.

Depth discontinuities must not become walls ("rubber sheets" between a foreground object and what is
behind it). Both cuts are free of the scene's scale, so a scene in millimetres and one in kilometres
are cut alike:

- **grazing angle**: a triangle whose normal is more than ``max_grazing_deg`` away from the ray from the
  camera to it is (almost) parallel to the ray, which a real surface seen by this camera almost never
  is; the triangles that bridge a step in depth are. The angle depends on the triangle's shape only,
  so neither units nor the image's resolution change it.
- **relative jump**: an edge whose two depths differ by more than ``max_jump`` times the nearer one is
  cut (a safety net for coarse grids, where a bridging triangle is less steep).

Pixels with no finite positive depth, sky pixels, pixels outside ``keep`` and the ``conf_percentile``
least confident pixels make no vertex. Vertices that end up in no triangle are removed.

Conventions (DESIGN.md §3): OpenCV camera, ``extrinsics`` world-to-camera (3, 4), K in pixels of the
processed image; pixel (x, y) has its centre at (x + 0.5, y + 0.5). Faces wind counter-clockwise seen
from the camera (their normals point at it).
"""

from __future__ import annotations

import numpy as np

from .filters import confidence_threshold
from .mesh import Mesh

__all__ = ["DEFAULT_MAX_GRAZING_DEG", "DEFAULT_MAX_JUMP", "view_mesh", "view_uv"]

DEFAULT_MAX_GRAZING_DEG = 86.0  # a bridging triangle across a step is within a degree or two of 90°
DEFAULT_MAX_JUMP = 0.5  # an edge whose depths differ by half the nearer depth crosses a discontinuity


def view_uv(xs: np.ndarray, ys: np.ndarray, height: int, width: int) -> np.ndarray:
    """Texture coordinates (v up) of pixel centres ``(xs, ys)`` (any equal shapes) in an image of
    ``height × width``: ``((x + 0.5) / W, 1 - (y + 0.5) / H)`` → float32 (..., 2)."""
    u = (np.asarray(xs, np.float64) + 0.5) / width
    v = 1.0 - (np.asarray(ys, np.float64) + 0.5) / height
    return np.stack([u, v], axis=-1).astype(np.float32)


def view_mesh(
    depth: np.ndarray,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    *,
    image: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    sky: np.ndarray | None = None,
    keep: np.ndarray | None = None,
    conf_percentile: float = 10.0,
    stride: int = 1,
    max_jump: float | None = DEFAULT_MAX_JUMP,
    max_grazing_deg: float | None = DEFAULT_MAX_GRAZING_DEG,
) -> Mesh:
    """The mesh of one view's depth grid, in the world frame.

    depth: (H, W) z-depth; intrinsics: (3, 3) K in pixels; extrinsics: (3, 4) or (4, 4) world-to-camera
    (OpenCV). image: (H, W, 3) uint8 → vertex colours (None: no colours); conf: (H, W), its
    ``conf_percentile`` (0–100) lowest pixels are dropped; sky: (H, W) bool, True pixels are dropped;
    keep: (H, W) bool, False pixels are dropped; stride: use every ``stride``-th pixel in x and y;
    max_jump / max_grazing_deg: the discontinuity cuts (None: off). UVs are always set (v up).
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    h, w = depth.shape
    K = np.asarray(intrinsics, np.float64)
    w2c = np.asarray(extrinsics, np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"intrinsics must have shape (3, 3), got {K.shape}")
    if w2c.shape not in ((3, 4), (4, 4)):
        raise ValueError(f"extrinsics must have shape (3, 4) or (4, 4), got {w2c.shape}")
    for name, a in (("image", image), ("conf", conf), ("sky", sky), ("keep", keep)):
        if a is not None and np.shape(a)[:2] != (h, w):
            raise ValueError(f"{name} must cover the depth's {h}x{w} pixels, got shape {np.shape(a)}")
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    if max_jump is not None and not max_jump > 0:
        raise ValueError(f"max_jump must be positive (or None), got {max_jump}")
    if max_grazing_deg is not None and not 0 < max_grazing_deg <= 90:
        raise ValueError(f"max_grazing_deg must be in (0, 90] (or None), got {max_grazing_deg}")

    # The grid of vertices: every stride-th pixel.
    ys = np.arange(0, h, stride)
    xs = np.arange(0, w, stride)
    gh, gw = len(ys), len(xs)
    d = np.asarray(depth[::stride, ::stride], np.float64)
    valid = np.isfinite(d) & (d > 0)
    if sky is not None:
        valid &= ~np.asarray(sky, bool)[::stride, ::stride]
    if keep is not None:
        valid &= np.asarray(keep, bool)[::stride, ::stride]
    if conf is not None and conf_percentile > 0:
        c = np.asarray(conf)[::stride, ::stride]
        threshold = confidence_threshold(c, conf_percentile, valid=valid)
        valid &= c >= threshold
    d = np.where(valid, d, 1.0)  # placeholders keep the arithmetic finite; they make no triangle

    # Camera points of the pixel centres, and the world points.
    k_inv = np.linalg.inv(K)
    px = np.empty((gh, gw, 3), np.float64)
    px[..., 0] = xs[None, :] + 0.5
    px[..., 1] = ys[:, None] + 0.5
    px[..., 2] = 1.0
    cam = (px @ k_inv.T) * d[..., None]  # (gh, gw, 3)
    R, t = w2c[:3, :3], w2c[:3, 3]
    world = (cam - t) @ R  # Rᵀ (X_cam − t), row vectors

    # Two triangles per quad: A = (00, 01, 10) and B = (10, 01, 11), counter-clockwise seen from the
    # camera (image x right, y down, z forward), so the normals point back at it. Each test works on the
    # grid's shifted views (no gathers), one boolean per triangle.
    corner = {
        "00": (slice(None, -1), slice(None, -1)),
        "10": (slice(None, -1), slice(1, None)),
        "01": (slice(1, None), slice(None, -1)),
        "11": (slice(1, None), slice(1, None)),
    }
    tris = (("00", "01", "10"), ("10", "01", "11"))
    keep_tri = [valid[corner[a]] & valid[corner[b]] & valid[corner[c]] for a, b, c in tris]
    if max_jump is not None:
        for k, tri in enumerate(tris):
            ds = np.stack([d[corner[n]] for n in tri])
            low, high = ds.min(axis=0), ds.max(axis=0)
            keep_tri[k] &= high - low <= max_jump * low
    if max_grazing_deg is not None:
        cos_limit = np.cos(np.radians(max_grazing_deg))
        for k, tri in enumerate(tris):
            a, b, c = (cam[corner[n]] for n in tri)
            normal = np.cross(b - a, c - a)
            ray = a + b + c  # three times the centroid: the direction from the camera
            # cos of the angle between the normal and the ray back to the camera (the normal faces it)
            dot = -np.einsum("...i,...i->...", normal, ray)
            norms = np.sqrt(
                np.einsum("...i,...i->...", normal, normal) * np.einsum("...i,...i->...", ray, ray)
            )
            keep_tri[k] &= dot >= cos_limit * norms
    index = np.arange(gh * gw, dtype=np.int64).reshape(gh, gw)
    faces = np.concatenate(
        [np.stack([index[corner[n]][keep_tri[k]] for n in tri], axis=1) for k, tri in enumerate(tris)]
    )

    # Keep the vertices that some triangle uses, renumbered in grid order.
    used = np.zeros(gh * gw, bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    vertices = world.reshape(-1, 3)[used].astype(np.float32)
    gy, gx = np.divmod(np.flatnonzero(used), gw)
    uv = view_uv(xs[gx], ys[gy], h, w)
    colors = None
    if image is not None:
        colors = np.asarray(image, np.uint8)[ys[gy], xs[gx], :3]
    return Mesh(vertices, remap[faces].astype(np.int32), colors, uv)
