"""Per-view maps for the datasets, from the bundle's depth (numpy): resampled onto each image's pixel grid,
z-depth and inverse depth as 16-bit PNG values, normals from depth, sky masks.

Depth lives on the processed grid (K_grid); images are written at their own size (K_image, the same
camera). An image pixel centre (u + ½, v + ½) maps to the grid by the two intrinsics alone (no skew),
and takes the nearest grid pixel's value (depth is never blended across edges).
"""

from __future__ import annotations

import numpy as np

__all__ = ["camera_normals", "encode_normals", "resample_nearest", "to_uint16"]


def resample_nearest(
    grid: np.ndarray, k_grid: np.ndarray, k_image: np.ndarray, image_hw, fill=0
) -> np.ndarray:
    """``grid`` (h, w, ...) seen by K_grid → the same camera's (H, W, ...) image grid (nearest pixel)."""
    h, w = grid.shape[:2]
    height, width = int(image_hw[0]), int(image_hw[1])
    u = (np.arange(width) + 0.5 - k_image[0, 2]) * (k_grid[0, 0] / k_image[0, 0]) + k_grid[0, 2]
    v = (np.arange(height) + 0.5 - k_image[1, 2]) * (k_grid[1, 1] / k_image[1, 1]) + k_grid[1, 2]
    col, row = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    inside = (row[:, None] >= 0) & (row[:, None] < h) & (col[None, :] >= 0) & (col[None, :] < w)
    out = grid[np.clip(row, 0, h - 1)[:, None], np.clip(col, 0, w - 1)[None, :]]
    if not inside.all():
        out[~inside] = fill
    return out


def to_uint16(values: np.ndarray, unit: float) -> np.ndarray:
    """``values / unit`` rounded to uint16; non-finite, non-positive and too large values become 0."""
    q = np.where(np.isfinite(values) & (values > 0), values / unit, 0.0)
    q = np.rint(q)
    q[(q > 65535) | (q < 0)] = 0
    return q.astype(np.uint16)


def camera_normals(depth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(h, w) z-depth seen by K → (h, w, 3) float32 unit normals in the OpenCV camera frame, turned toward
    the camera (the side it sees); zero where the depth or a neighbour is invalid (and on the border).

    Central differences of the unprojected points: n ∝ ∂P/∂v × ∂P/∂u (DN-Splatter's ``pcd_to_normal``).
    """
    h, w = depth.shape
    z = np.asarray(depth, np.float64)
    valid = np.isfinite(z) & (z > 0)
    z = np.where(valid, z, 0.0)
    x = (np.arange(w) + 0.5 - k[0, 2]) / k[0, 0]
    y = (np.arange(h) + 0.5 - k[1, 2]) / k[1, 1]
    p = np.stack([z * x[None, :], z * y[:, None], z], axis=-1)  # (h, w, 3)
    out = np.zeros((h, w, 3), np.float32)
    if h < 3 or w < 3:
        return out
    du = p[1:-1, 2:] - p[1:-1, :-2]
    dv = p[2:, 1:-1] - p[:-2, 1:-1]
    n = np.cross(dv, du)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    ok = valid[1:-1, 1:-1] & valid[1:-1, 2:] & valid[1:-1, :-2] & valid[2:, 1:-1] & valid[:-2, 1:-1]
    ok &= norm[..., 0] > 0
    out[1:-1, 1:-1] = np.where(ok[..., None], n / np.where(norm > 0, norm, 1.0), 0.0)
    return out


def encode_normals(normals_cv: np.ndarray) -> np.ndarray:
    """OpenCV-camera unit normals (H, W, 3) → uint8 RGB in the OpenGL camera frame (x right, y up, z toward
    the viewer), ``(n + 1) / 2 · 255``: the "omnidata" convention of DN-Splatter's normal-nerfstudio.
    An invalid (zero) normal becomes mid-grey (128, 128, 128)."""
    gl = normals_cv * np.array([1.0, -1.0, -1.0], np.float32)
    return np.clip(np.rint((gl + 1.0) * 127.5), 0, 255).astype(np.uint8)
