"""Camera matrix helpers in the engine convention (numpy only).

Convention (DESIGN.md §3): OpenCV camera axes (x right, y down, z forward); extrinsics are
world-to-camera ``w2c (N, 3, 4)`` with ``x_cam = R @ X_world + t``; intrinsics ``K (N, 3, 3)`` are
in pixels of the processed image, with pixel (u, v) centred at (u + 0.5, v + 0.5).

Quaternions are Hamilton, scalar first ``(w, x, y, z)``, the order COLMAP and 3DGS use.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "camera_centers",
    "invert_extrinsics",
    "matrix_to_quaternion_wxyz",
    "project_points",
    "quaternion_wxyz_to_matrix",
    "to_homogeneous",
    "transform_points",
]


def _check_extrinsics(w2c: np.ndarray) -> np.ndarray:
    w2c = np.asarray(w2c)
    if w2c.shape[-2:] not in ((3, 4), (4, 4)):
        raise ValueError(f"extrinsics must have shape (..., 3, 4) or (..., 4, 4), got {w2c.shape}")
    return w2c[..., :3, :]


def invert_extrinsics(w2c: np.ndarray) -> np.ndarray:
    """World-to-camera ``(..., 3, 4)`` → camera-to-world ``(..., 3, 4)`` (rigid inverse, same dtype).

    Uses the transpose of the rotation, so the input must be a rigid transform (no scale).
    """
    w2c = _check_extrinsics(w2c)
    rot = w2c[..., :3, :3].astype(np.float64)  # (..., 3, 3)
    t = w2c[..., :3, 3].astype(np.float64)  # (..., 3)
    rot_t = np.swapaxes(rot, -1, -2)
    out = np.empty(w2c.shape, np.float64)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_t, t)
    return out.astype(np.result_type(w2c.dtype, np.float32), copy=False)


def camera_centers(w2c: np.ndarray) -> np.ndarray:
    """Camera centres in world coordinates, ``C = -Rᵀ t``: ``(..., 3, 4)`` → ``(..., 3)`` float64."""
    w2c = _check_extrinsics(w2c).astype(np.float64)
    return -np.einsum("...ji,...j->...i", w2c[..., :3, :3], w2c[..., :3, 3])


def to_homogeneous(mats: np.ndarray) -> np.ndarray:
    """``(..., 3, 4)`` transforms → ``(..., 4, 4)`` with the last row ``[0, 0, 0, 1]`` (4×4 input passes)."""
    mats = np.asarray(mats)
    if mats.shape[-2:] == (4, 4):
        return mats.copy()
    if mats.shape[-2:] != (3, 4):
        raise ValueError(f"expected (..., 3, 4) matrices, got {mats.shape}")
    out = np.zeros(mats.shape[:-2] + (4, 4), dtype=np.result_type(mats.dtype, np.float32))
    out[..., :3, :] = mats
    out[..., 3, 3] = 1.0
    return out


def transform_points(w2c: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``(3, 4)`` transform to points ``(..., 3)`` → ``(..., 3)`` float64."""
    w2c = _check_extrinsics(w2c).astype(np.float64)
    pts = np.asarray(points, np.float64)
    return pts @ w2c[:3, :3].T + w2c[:3, 3]


def project_points(K: np.ndarray, w2c: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points ``(..., 3)`` with one camera; returns ``(uv (..., 2), z (...))`` float64.

    ``uv`` are continuous pixel coordinates (the centre of pixel (0, 0) is at (0.5, 0.5)).
    """
    cam = transform_points(w2c, points)
    img = cam @ np.asarray(K, np.float64).T
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = img[..., :2] / img[..., 2:3]
    return uv, z


def matrix_to_quaternion_wxyz(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` → unit quaternions ``(..., 4)`` (w, x, y, z), float64, w ≥ 0.

    Shepperd's method: for each matrix the formula is built around the largest of
    (trace, R00, R11, R22), so it is accurate for every rotation, including 180° turns.
    """
    m = np.asarray(rot, np.float64)
    if m.shape[-2:] != (3, 3):
        raise ValueError(f"expected (..., 3, 3) rotation matrices, got {m.shape}")
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # Four candidate (unnormalised) quaternions, each well conditioned when its pivot is large.
    cands = np.stack(
        [
            np.stack([1.0 + trace, m21 - m12, m02 - m20, m10 - m01], -1),
            np.stack([m21 - m12, 1.0 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
            np.stack([m02 - m20, m01 + m10, 1.0 - m00 + m11 - m22, m12 + m21], -1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1.0 - m00 - m11 + m22], -1),
        ],
        -2,
    )  # (..., 4, 4)
    pivot = np.argmax(np.stack([trace, m00, m11, m22], -1), axis=-1)  # (...)
    q = np.take_along_axis(cands, pivot[..., None, None], axis=-2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_wxyz_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Quaternions ``(..., 4)`` (w, x, y, z; normalised here) → rotation matrices ``(..., 3, 3)`` float64.

    A zero quaternion maps to the identity rather than NaN.
    """
    q = np.asarray(quat, np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"expected (..., 4) quaternions, got {q.shape}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    ident = np.array([1.0, 0.0, 0.0, 0.0])
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), ident)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty(q.shape[:-1] + (3, 3), np.float64)
    out[..., 0, 0] = 1 - 2 * (y * y + z * z)
    out[..., 0, 1] = 2 * (x * y - w * z)
    out[..., 0, 2] = 2 * (x * z + w * y)
    out[..., 1, 0] = 2 * (x * y + w * z)
    out[..., 1, 1] = 1 - 2 * (x * x + z * z)
    out[..., 1, 2] = 2 * (y * z - w * x)
    out[..., 2, 0] = 2 * (x * z - w * y)
    out[..., 2, 1] = 2 * (y * z + w * x)
    out[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return out
