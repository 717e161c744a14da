"""Spherical harmonics as 3D Gaussian splats store them (the Inria 3DGS / gsplat real basis, degree 0–3,
``f_dc`` then ``f_rest`` per colour channel): evaluation in a direction, and rotation of the coefficients
for a rotated splat (numpy only, so Blender's side can rotate what it exports).

The rotation of each degree's block is solved from the basis itself: with directions ``D`` (more than
2l + 1 of them, well spread), the coefficients ``c'`` of the rotated function satisfy
``B_l(D) c' = B_l(Rᵀ D) c``, so ``D_l = B_l(D)⁺ B_l(Rᵀ D)`` — exact (the degree-l span is closed under
rotation) and free of sign and ordering conventions, because ``B_l`` is the very basis renderers use.
"""

from __future__ import annotations

from functools import cache

import numpy as np

__all__ = ["SH_C0", "eval_sh", "rotate_sh", "sh_basis", "sh_degree", "sh_rotation"]

SH_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_degree(coefficients: int) -> int:
    """The degree of ``coefficients`` per channel (1, 4, 9 or 16)."""
    degree = {1: 0, 4: 1, 9: 2, 16: 3}.get(int(coefficients))
    if degree is None:
        raise ValueError(f"{coefficients} SH coefficients per channel is not a degree 0-3 set (1, 4, 9, 16)")
    return degree


def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """(…, (degree + 1)²) basis values at unit directions ``dirs`` (…, 3), in the 3DGS order and signs."""
    x, y, z = (np.asarray(dirs, np.float64)[..., i] for i in range(3))
    out = [np.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [_C2[0] * xy, _C2[1] * yz, _C2[2] * (2 * zz - xx - yy), _C2[3] * xz, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            _C3[0] * y * (3 * xx - yy),
            _C3[1] * xy * z,
            _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            _C3[4] * x * (4 * zz - xx - yy),
            _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ]
    return np.stack(out, axis=-1)


def eval_sh(sh: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Colour (…, 3) of coefficients ``sh`` (…, 3, K) seen along ``dirs`` (…, 3) (before 3DGS's +0.5)."""
    sh = np.asarray(sh, np.float64)
    basis = sh_basis(dirs, sh_degree(sh.shape[-1]))
    return np.einsum("...ck,...k->...c", sh, basis)


@cache
def _sample_directions(count: int = 64) -> np.ndarray:
    """Unit directions spread evenly over the sphere (a Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (1.0 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def sh_rotation(rotation: np.ndarray, degree: int = 3) -> list[np.ndarray]:
    """The (2l+1)² matrices, l = 1 … ``degree``, that rotate each degree's coefficients for a splat
    rotated by ``rotation`` (3, 3): ``eval_sh(rotated, R d) == eval_sh(sh, d)``."""
    r = np.asarray(rotation, np.float64)
    dirs = _sample_directions()
    back = dirs @ r  # Rᵀ d for every sample d (rows)
    blocks = []
    for l in range(1, degree + 1):
        columns = slice(l * l, (l + 1) ** 2)
        here, there = sh_basis(dirs, l)[:, columns], sh_basis(back, l)[:, columns]
        blocks.append(np.linalg.lstsq(here, there, rcond=None)[0])
    return blocks


def rotate_sh(sh: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Coefficients (M, 3, K) of splats rotated by ``rotation`` (3, 3); the DC term does not change."""
    sh = np.asarray(sh)
    degree = sh_degree(sh.shape[-1])
    out = np.array(sh, dtype=np.float64, copy=True)
    for l, block in enumerate(sh_rotation(rotation, degree), start=1):
        columns = slice(l * l, (l + 1) ** 2)
        out[..., columns] = sh[..., columns] @ block.T
    return out.astype(sh.dtype, copy=False)
