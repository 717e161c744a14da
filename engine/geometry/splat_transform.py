"""Move, turn and scale 3D Gaussian splats by an affine map, SH coefficients included (numpy only).

A Gaussian with covariance Σ = R S² Rᵀ moved by x ↦ A x + t has covariance A Σ Aᵀ, for any A. Its
colour turns with it: the SH coefficients are rotated by the rotation part of A (``rotate_sh``), so
the splat shows the moved viewer the colour the original showed the original viewer.

Two paths, both in the stored form (``SplatTable``: log scales, quaternions as written):

* A = s·Q with Q a rotation (what moving, turning and uniformly scaling an object gives): the
  quaternion is multiplied by Q's (its length, whatever the file had, is kept), ``log s`` is added to
  the log scales. Exact up to float rounding, and cheap for millions of splats.
* Anything else (non-uniform scale, shear, a mirror): each A Σ Aᵀ is decomposed again (``eigh``) into
  new scales and a proper rotation; the SH turn with the orthogonal factor of A's polar decomposition
  (a mirror mirrors the colours too).
"""

from __future__ import annotations

import numpy as np

from ..formats.gaussians_ply import SplatTable
from .cameras import matrix_to_quaternion_wxyz, quaternion_wxyz_to_matrix
from .spherical_harmonics import rotate_sh

__all__ = ["is_identity", "quaternion_multiply", "transform_splats"]

_CHUNK = 1 << 18  # splats per block in the general path (bounded temporary memory)


def is_identity(matrix: np.ndarray, tolerance: float = 1e-6) -> bool:
    """True when ``matrix`` (4, 4) is the identity within ``tolerance`` (float32 world matrices)."""
    return bool(np.allclose(np.asarray(matrix, np.float64), np.eye(4), rtol=0.0, atol=tolerance))


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products ``a ⊗ b`` of (…, 4) (w, x, y, z) quaternions (float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    aw, ax, ay, az = (a[..., i] for i in range(4))
    bw, bx, by, bz = (b[..., i] for i in range(4))
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def _similarity(linear: np.ndarray, tolerance: float = 1e-5) -> tuple[float, np.ndarray] | None:
    """``(s, Q)`` when ``linear`` = s·Q with Q a proper rotation, else None."""
    u, sv, vt = np.linalg.svd(linear)
    if sv[0] <= 0 or (sv[0] - sv[2]) > tolerance * sv[0] or np.linalg.det(linear) <= 0:
        return None
    return float(np.mean(sv)), u @ vt


def _orthogonal_factor(linear: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(linear)
    return u @ vt


def transform_splats(table: SplatTable, matrix: np.ndarray) -> SplatTable:
    """``table`` moved by the affine ``matrix`` (4, 4): positions, shapes and view-dependent colour."""
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"expected a finite (4, 4) matrix, got {matrix.shape}")
    linear, shift = matrix[:3, :3], matrix[:3, 3]
    if abs(np.linalg.det(linear)) < 1e-30:
        raise ValueError("the transform flattens the splats (its scale is zero along some axis)")
    means = (np.asarray(table.means, np.float64) @ linear.T + shift).astype(np.float32)
    similarity = _similarity(linear)
    if similarity is not None:
        s, q = similarity
        turn = matrix_to_quaternion_wxyz(q)
        quats = quaternion_multiply(turn, table.quaternions).astype(np.float32)
        log_scales = (np.asarray(table.log_scales, np.float64) + np.log(s)).astype(np.float32)
        orthogonal = q
    else:
        log_scales, quats = _refit_shapes(table, linear)
        orthogonal = _orthogonal_factor(linear)
    sh = table.sh if table.sh.shape[2] == 1 else rotate_sh(table.sh, orthogonal)
    return SplatTable(
        means=means,
        log_scales=log_scales,
        quaternions=quats,
        sh=np.asarray(sh, np.float32),
        opacity_logits=np.asarray(table.opacity_logits, np.float32),
    )


def _refit_shapes(table: SplatTable, linear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New (log scales, unit quaternions) of A R S² Rᵀ Aᵀ for every splat, block by block."""
    m = len(table)
    log_scales = np.empty((m, 3), np.float32)
    quats = np.empty((m, 4), np.float32)
    for start in range(0, m, _CHUNK):
        block = slice(start, min(m, start + _CHUNK))
        rot = quaternion_wxyz_to_matrix(table.quaternions[block])
        sigma = np.exp(np.asarray(table.log_scales[block], np.float64))
        axes = linear @ (rot * sigma[:, None, :])  # columns: the moved, scaled local axes
        covariance = axes @ np.swapaxes(axes, 1, 2)
        values, vectors = np.linalg.eigh(covariance)
        flip = np.linalg.det(vectors) < 0
        vectors[flip, :, 0] *= -1.0  # a proper rotation: flip one axis (a Gaussian is symmetric)
        log_scales[block] = 0.5 * np.log(np.maximum(values, 1e-60))
        quats[block] = matrix_to_quaternion_wxyz(vectors)
    return log_scales, quats
