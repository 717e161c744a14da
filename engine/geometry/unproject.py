"""Depth maps → 3D points, with pixel centres (numpy only).

Pixel convention (DESIGN.md §3): continuous image coordinates; pixel (u, v) (column u, row v) covers
[u, u+1) × [v, v+1) and its centre is at (u + 0.5, v + 0.5). DA3's camera decoder puts cx at W/2,
which is the image centre in this convention. Depth is z-depth along the optical axis, so the camera
point of a pixel is ``depth · K⁻¹ [u + 0.5, v + 0.5, 1]ᵀ``.

(The official DA3 exports unproject integer pixel coordinates without the +0.5; we do not.)
"""

from __future__ import annotations

import numpy as np

__all__ = ["depth_to_camera_points", "depth_to_world_points", "pixel_rays", "unproject_pixels"]


def _as_k(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, np.float64)
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"intrinsics must have shape (3, 3) or (N, 3, 3), got {K.shape}")
    return K


def pixel_rays(K: np.ndarray, H: int, W: int) -> np.ndarray:
    """Camera rays with z = 1 through every pixel centre.

    K: (3, 3) or (N, 3, 3) → (H, W, 3) or (N, H, W, 3) float64; ``ray[v, u] = K⁻¹ [u+0.5, v+0.5, 1]``.
    """
    K = _as_k(K)
    u = np.arange(W, dtype=np.float64) + 0.5
    v = np.arange(H, dtype=np.float64) + 0.5
    pix = np.empty((H, W, 3), np.float64)
    pix[..., 0] = u[None, :]
    pix[..., 1] = v[:, None]
    pix[..., 2] = 1.0
    k_inv = np.linalg.inv(K)  # (..., 3, 3)
    if K.ndim == 2:
        return pix @ k_inv.T
    # (N, 1, 1, 3, 3) @ (H, W, 3, 1) is wasteful; use a matmul over the flattened pixel grid.
    flat = pix.reshape(-1, 3)  # (H*W, 3)
    rays = flat[None] @ np.swapaxes(k_inv, -1, -2)  # (N, H*W, 3)
    return rays.reshape(K.shape[:-2] + (H, W, 3))


def depth_to_camera_points(depth: np.ndarray, K: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Z-depth (N, H, W) and intrinsics (N, 3, 3) → camera-frame points (N, H, W, 3) (``dtype``).

    Also accepts a single view: depth (H, W) with K (3, 3) → (H, W, 3).
    """
    depth = np.asarray(depth)
    K = _as_k(K)
    single = depth.ndim == 2
    if single:
        depth, K = depth[None], K.reshape(1, 3, 3)
    if depth.ndim != 3 or K.shape != (depth.shape[0], 3, 3):
        raise ValueError(f"depth (N, H, W) and intrinsics (N, 3, 3) do not match: {depth.shape} vs {K.shape}")
    n, h, w = depth.shape
    out = np.empty((n, h, w, 3), dtype)
    for i in range(n):  # per view, so the float64 temporaries stay small
        out[i] = pixel_rays(K[i], h, w) * depth[i, :, :, None]
    return out[0] if single else out


def depth_to_world_points(depth: np.ndarray, K: np.ndarray, w2c: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Z-depth (N, H, W), intrinsics (N, 3, 3), w2c (N, 3, 4) → world points (N, H, W, 3) (``dtype``).

    ``X_world = Rᵀ (X_cam − t)``. A single view (H, W) / (3, 3) / (3, 4) gives (H, W, 3).
    """
    depth = np.asarray(depth)
    K = _as_k(K)
    w2c = np.asarray(w2c, np.float64)
    single = depth.ndim == 2
    if single:
        depth, K, w2c = depth[None], K.reshape(1, 3, 3), w2c.reshape(1, *w2c.shape[-2:])
    n, h, w = depth.shape
    if K.shape != (n, 3, 3) or w2c.shape[0] != n or w2c.shape[-2:] not in ((3, 4), (4, 4)):
        raise ValueError(
            f"depth (N, H, W), intrinsics (N, 3, 3) and extrinsics (N, 3, 4) do not match: "
            f"{depth.shape}, {K.shape}, {w2c.shape}"
        )
    out = np.empty((n, h, w, 3), dtype)
    for i in range(n):
        rot, t = w2c[i, :3, :3], w2c[i, :3, 3]
        cam = pixel_rays(K[i], h, w) * depth[i, :, :, None]  # (H, W, 3) float64
        out[i] = (cam - t) @ rot  # row-vector form of Rᵀ (x − t)
    return out[0] if single else out


def unproject_pixels(
    pixels: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray | None = None
) -> np.ndarray:
    """Unproject chosen pixels of one or many views.

    pixels: (M, 2) integer (column u, row v); depth: (M,) z-depth at those pixels;
    K: (M, 3, 3) or (3, 3) with last row [0, 0, 1] (fx, fy, cx, cy and skew are used);
    w2c: (M, 3, 4), (3, 4) or None (camera frame) → (M, 3) float64.
    """
    pix = np.asarray(pixels, np.float64) + 0.5  # (M, 2) pixel centres
    K = _as_k(K)
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    cx, cy, skew = K[..., 0, 2], K[..., 1, 2], K[..., 0, 1]
    d = np.asarray(depth, np.float64)
    y = (pix[:, 1] - cy) / fy
    x = (pix[:, 0] - cx - skew * y) / fx
    cam = np.stack([x * d, y * d, d], -1)  # (M, 3)
    if w2c is None:
        return cam
    w2c = np.asarray(w2c, np.float64)
    rot, t = w2c[..., :3, :3], w2c[..., :3, 3]
    if rot.ndim == 2:
        return (cam - t) @ rot
    return np.einsum("mji,mj->mi", rot, cam - t)
