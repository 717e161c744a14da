"""Camera paths as animation curves: quaternion continuity, Euler unwrapping, one focal length, ATE.

Bulk numpy helpers for keyframing an animated camera (``keyframe_points.add(n)`` +
``foreach_set``): per-frame quaternions whose signs do not flip (a flip makes Blender's
interpolation spin the camera the long way round), Euler angles in Blender's ``XYZ`` mode without
±2π jumps (what the Graph Editor's Euler Filter does), a robust constant focal length instead of
DA3-blender's per-frame jitter, and the absolute trajectory error used to check a solve.
"""

from __future__ import annotations

import numpy as np

from .cameras import matrix_to_quaternion_wxyz
from .sim3 import Sim3, align_centers

__all__ = [
    "absolute_trajectory_error",
    "euler_filter",
    "euler_xyz_to_matrix",
    "matrix_to_euler_xyz",
    "path_length",
    "quaternions_with_continuity",
    "robust_focal",
    "weighted_median",
]

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution × this = its standard deviation


def quaternions_with_continuity(rot_mats: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(F, 3, 3)`` → unit quaternions ``(F, 4)`` (w, x, y, z) with ``q_i · q_{i−1} ≥ 0``.

    ``q`` and ``−q`` are the same rotation; choosing the sign closest to the previous frame makes
    the keyframes interpolate along the short arc. The first quaternion has ``w ≥ 0``.
    """
    q = matrix_to_quaternion_wxyz(rot_mats)
    if q.ndim != 2:
        raise ValueError(f"expected (F, 3, 3) rotation matrices, got {np.shape(rot_mats)}")
    if len(q) < 2:
        return q
    dots = np.einsum("ij,ij->i", q[1:], q[:-1])  # (F−1,) before any flip
    step = np.where(dots < 0, -1.0, 1.0)
    sign = np.concatenate([[1.0], np.cumprod(step)])  # flips accumulate along the path
    return q * sign[:, None]


def matrix_to_euler_xyz(rot_mats: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` → Euler angles ``(..., 3)`` in radians, Blender's ``XYZ`` mode.

    ``XYZ`` means ``R = Rz(z) · Ry(y) · Rx(x)`` (X applied first); ``y ∈ [−π/2, π/2]``. At gimbal
    lock (|y| = π/2) the split between x and z is arbitrary and z is set to 0.
    """
    m = np.asarray(rot_mats, np.float64)
    sy = np.hypot(m[..., 0, 0], m[..., 1, 0])
    locked = sy < 1e-9
    x = np.where(locked, np.arctan2(-m[..., 1, 2], m[..., 1, 1]), np.arctan2(m[..., 2, 1], m[..., 2, 2]))
    y = np.arctan2(-m[..., 2, 0], sy)
    z = np.where(locked, 0.0, np.arctan2(m[..., 1, 0], m[..., 0, 0]))
    return np.stack([x, y, z], -1)


def euler_xyz_to_matrix(eulers: np.ndarray) -> np.ndarray:
    """Euler angles ``(..., 3)`` (Blender ``XYZ``) → rotation matrices ``(..., 3, 3)``."""
    e = np.asarray(eulers, np.float64)
    cx, cy, cz = np.cos(e[..., 0]), np.cos(e[..., 1]), np.cos(e[..., 2])
    sx, sy, sz = np.sin(e[..., 0]), np.sin(e[..., 1]), np.sin(e[..., 2])
    out = np.empty(e.shape[:-1] + (3, 3))
    out[..., 0, 0] = cy * cz
    out[..., 0, 1] = sx * sy * cz - cx * sz
    out[..., 0, 2] = cx * sy * cz + sx * sz
    out[..., 1, 0] = cy * sz
    out[..., 1, 1] = sx * sy * sz + cx * cz
    out[..., 1, 2] = cx * sy * sz - sx * cz
    out[..., 2, 0] = -sy
    out[..., 2, 1] = sx * cy
    out[..., 2, 2] = cx * cy
    return out


def euler_filter(eulers: np.ndarray) -> np.ndarray:
    """Remove ±2π jumps from per-frame Euler angles ``(F, 3)`` (radians), channel by channel.

    Like Blender's Graph Editor Euler Filter: every frame-to-frame step is brought into [−π, π) by
    adding whole turns, so a pan through ±180° keeps going instead of jumping by 360°. The first
    frame is unchanged and every frame keeps its rotation.
    """
    e = np.asarray(eulers, np.float64)
    if e.ndim != 2 or e.shape[1] != 3:
        raise ValueError(f"expected (F, 3) Euler angles, got {e.shape}")
    steps = np.diff(e, axis=0)
    turns = np.round(steps / (2 * np.pi))
    return e - 2 * np.pi * np.concatenate([np.zeros((1, 3)), np.cumsum(turns, axis=0)])


def weighted_median(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The value below which half the total weight lies (the lower one at an exact tie). NaN if empty."""
    v = np.asarray(values, np.float64).reshape(-1)
    w = np.ones_like(v) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    v, w = v[ok], w[ok]
    if len(v) == 0:
        return float("nan")
    order = np.argsort(v)
    cum = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cum, 0.5 * cum[-1])])


def robust_focal(fx_per_frame: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """One focal length for a whole shot: ``(value, spread)`` in the input's units (pixels).

    value: the (weighted) median of the per-frame focal lengths — outlier frames do not move it;
    spread: 1.4826 × the (weighted) median absolute deviation, a standard deviation that ignores
    outliers. A spread of a few percent of the value suggests a zoom (animate the focal length).
    """
    f = np.asarray(fx_per_frame, np.float64).reshape(-1)
    good = np.isfinite(f) & (f > 0)
    if not good.any():
        raise ValueError("no valid per-frame focal length (all missing or not positive)")
    w = None if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w is not None and w.shape != f.shape:
        raise ValueError(f"weights must have shape {f.shape}, got {w.shape}")
    fg, wg = f[good], None if w is None else w[good]
    value = weighted_median(fg, wg)
    spread = MAD_TO_SIGMA * weighted_median(np.abs(fg - value), wg)
    return value, spread


def path_length(centers: np.ndarray) -> float:
    """Length of the polyline through camera centres ``(F, 3)``."""
    c = np.asarray(centers, np.float64).reshape(-1, 3)
    return float(np.linalg.norm(np.diff(c, axis=0), axis=1).sum())


def absolute_trajectory_error(est_centers: np.ndarray, gt_centers: np.ndarray) -> tuple[float, np.ndarray]:
    """ATE: RMSE of camera centres after the best Sim(3) alignment of the estimate onto the truth.

    est_centers, gt_centers: (F, 3). Returns ``(rmse in ground-truth units, aligned estimate (F, 3))``.
    The alignment is Umeyama's least-squares similarity (a line or a single camera falls back to
    what the data defines, see ``align_centers``), the usual ATE protocol for monocular methods.
    """
    est = np.asarray(est_centers, np.float64).reshape(-1, 3)
    gt = np.asarray(gt_centers, np.float64).reshape(-1, 3)
    if est.shape != gt.shape or len(est) == 0:
        raise ValueError(
            f"need the same non-zero number of estimated and true centres, got {est.shape}, {gt.shape}"
        )
    sim: Sim3 = align_centers(est, gt)
    aligned = sim.apply(est)
    rmse = float(np.sqrt(np.mean(np.sum((aligned - gt) ** 2, axis=1))))
    return rmse, aligned
