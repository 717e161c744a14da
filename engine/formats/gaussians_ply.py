"""3D Gaussian splats in the standard 3DGS PLY layout (numpy only).

Layout (graphdeco 3DGS, also SuGaR, gsplat, nerfstudio ``splat.ply`` and the official DA3 ``gs_ply``),
one binary little-endian vertex element, all float32, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 … f_rest_{3(K−1)−1}  opacity  scale_0..2  rot_0..3

* ``f_dc_c`` is the degree-0 SH coefficient of colour channel c, ``f_rest`` the higher ones,
  **channel-major**: ``f_rest[c·(K−1) + (k−1)] = sh[c, k]`` for k ≥ 1 (K = (degree+1)² coefficients).
* ``opacity`` is stored as a logit, ``scale_i`` as the natural log of the standard deviation,
  ``rot`` as a (w, x, y, z) quaternion that need not be normalised; the normals are zeros.

``Gaussians`` holds *activated* values (linear scales, opacities in 0..1, unit quaternions), the same
convention the result bundle uses for its ``gs_*`` arrays. ``SplatTable`` holds the values exactly as
the file stores them (log scales, opacity logits, quaternions as written): Blender keeps those, so a
file imported and exported unchanged is written back bit for bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ply import PlyError, read_ply_header, read_ply_vertices, write_vertex_table

__all__ = [
    "Gaussians",
    "SplatTable",
    "read_gaussians_ply",
    "read_splat_table",
    "splat_file_degree",
    "write_gaussians_ply",
    "write_splat_table",
]

_SH_C0 = 0.28209479177387814  # Y_0^0; colour = 0.5 + C0 · f_dc
_EPS = 1e-7
_BLOCK = 16384  # rows per block when reading (fits in cache; measured fastest on 1M-splat files)


@dataclass(frozen=True)
class Gaussians:
    """A set of 3D Gaussians with activated parameters."""

    means: np.ndarray  # (M, 3) float32 centres
    scales: np.ndarray  # (M, 3) float32 standard deviations along the local axes (linear, > 0)
    rotations: np.ndarray  # (M, 4) float32 unit quaternions (w, x, y, z), local → world
    sh: np.ndarray  # (M, 3, K) float32 SH coefficients per colour channel, K = (degree + 1)²
    opacities: np.ndarray  # (M,) float32 in [0, 1]

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        """Largest complete SH degree held (K = 1 → 0, 4 → 1, 9 → 2, 16 → 3)."""
        return int(np.floor(np.sqrt(self.sh.shape[2]))) - 1

    def base_colors(self) -> np.ndarray:
        """(M, 3) float32 view-independent colour in 0..1 from the DC term (what a viewer shows head-on)."""
        return np.clip(0.5 + _SH_C0 * self.sh[:, :, 0], 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class SplatTable:
    """3D Gaussians as a 3DGS PLY stores them: nothing activated, nothing normalised."""

    means: np.ndarray  # (M, 3) float32
    log_scales: np.ndarray  # (M, 3) float32, natural log of the standard deviations
    quaternions: np.ndarray  # (M, 4) float32 (w, x, y, z) as written (not necessarily unit)
    sh: np.ndarray  # (M, 3, K) float32: f_dc and f_rest per colour channel
    opacity_logits: np.ndarray  # (M,) float32

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return int(np.floor(np.sqrt(self.sh.shape[2]))) - 1

    @classmethod
    def from_gaussians(cls, g: Gaussians) -> SplatTable:
        """The stored form of activated Gaussians (what ``write_gaussians_ply`` writes)."""
        p = np.clip(np.asarray(g.opacities, np.float64), _EPS, 1.0 - _EPS)
        return cls(
            means=np.asarray(g.means, np.float32),
            log_scales=np.log(np.maximum(np.asarray(g.scales, np.float64), 1e-30)).astype(np.float32),
            quaternions=np.asarray(g.rotations, np.float32),
            sh=np.asarray(g.sh, np.float32),
            opacity_logits=np.log(p / (1.0 - p)).astype(np.float32),
        )

    def activated(self) -> Gaussians:
        """Linear scales, opacities in 0..1 and unit quaternions (a zero quaternion becomes identity)."""
        rot = np.asarray(self.quaternions, np.float64)
        norm = np.linalg.norm(rot, axis=1, keepdims=True)
        bad = ~(norm[:, 0] > 0) | ~np.isfinite(norm[:, 0])
        rot = np.divide(rot, norm, out=np.zeros_like(rot), where=~bad[:, None])
        rot[bad] = (1.0, 0.0, 0.0, 0.0)
        logit = np.asarray(self.opacity_logits, np.float64)
        return Gaussians(
            means=self.means,
            scales=np.exp(np.asarray(self.log_scales, np.float64)).astype(np.float32),
            rotations=rot.astype(np.float32),
            sh=self.sh,
            opacities=(0.5 * (1.0 + np.tanh(0.5 * logit))).astype(np.float32),  # sigmoid, no overflow
        )


def write_gaussians_ply(
    path: str | os.PathLike,
    means: np.ndarray,
    scales: np.ndarray,
    rotations_wxyz: np.ndarray,
    harmonics: np.ndarray,
    opacities: np.ndarray,
) -> Path:
    """Write activated Gaussians as a 3DGS PLY (see the module docstring for the layout).

    means (M, 3); scales (M, 3) linear, > 0; rotations_wxyz (M, 4); harmonics (M, 3, K) with K ≥ 1;
    opacities (M,) in [0, 1] (clipped to (1e-7, 1 − 1e-7) before the logit).
    """
    means = np.asarray(means, np.float32)
    m = means.shape[0] if means.ndim == 2 else -1
    if means.shape != (m, 3):
        raise ValueError(f"means must have shape (M, 3), got {means.shape}")
    scales = np.asarray(scales, np.float32)
    rot = np.asarray(rotations_wxyz, np.float32)
    op = np.asarray(opacities, np.float32).reshape(-1)
    for name, arr, shape in (
        ("scales", scales, (m, 3)),
        ("rotations_wxyz", rot, (m, 4)),
        ("opacities", op, (m,)),
    ):
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    g = Gaussians(
        means=means, scales=scales, rotations=rot, sh=np.asarray(harmonics, np.float32), opacities=op
    )
    return write_splat_table(path, SplatTable.from_gaussians(g))


def write_splat_table(path: str | os.PathLike, t: SplatTable) -> Path:
    """Write splats exactly as held (no activation): what was read is written back bit for bit."""
    m = len(t)
    sh = np.asarray(t.sh, np.float32)
    if sh.ndim != 3 or sh.shape[:2] != (m, 3) or sh.shape[2] < 1:
        raise ValueError(f"harmonics must have shape ({m}, 3, K) with K ≥ 1, got {sh.shape}")
    for name, arr, shape in (
        ("means", t.means, (m, 3)),
        ("log_scales", t.log_scales, (m, 3)),
        ("quaternions", t.quaternions, (m, 4)),
        ("opacity_logits", t.opacity_logits, (m,)),
    ):
        if np.shape(arr) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {np.shape(arr)}")
    k = sh.shape[2]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    table = np.empty((m, len(names)), np.float32)  # filled block by block: one pass per block
    table[:, 0:3] = t.means
    table[:, 3:6] = 0.0
    table[:, 6:9] = sh[:, :, 0]
    rest_end = 9 + 3 * (k - 1)
    rest = table[:, 9:rest_end].reshape(m, 3, k - 1)  # channel-major: column 9 + c*(K-1) + (k-1)
    if np.shares_memory(rest, table):  # a view (always, for m > 0): fill it without a temporary
        rest[...] = sh[:, :, 1:]
    else:
        table[:, 9:rest_end] = sh[:, :, 1:].reshape(m, 3 * (k - 1))
    table[:, rest_end] = t.opacity_logits
    table[:, rest_end + 1 : rest_end + 4] = t.log_scales
    table[:, rest_end + 4 : rest_end + 8] = t.quaternions
    return write_vertex_table(path, names, table)


def _sorted_indexed(props, prefix: str) -> list[str]:
    names = [n for n in props if n.startswith(prefix) and n[len(prefix) :].isdigit()]
    return sorted(names, key=lambda n: int(n[len(prefix) :]))


def _refuse_non_finite(path, data: np.ndarray, names: list[str]) -> None:
    """A splat with NaN or infinity would poison a renderer: name the properties and the count."""
    bad_names, bad = [], np.zeros(data.shape[0], bool)
    for name in names:
        finite = np.isfinite(data[name])
        if not finite.all():
            bad_names.append(name)
            bad |= ~finite
    if bad_names:
        shown = ", ".join(bad_names[:6]) + (" …" if len(bad_names) > 6 else "")
        raise PlyError(
            f"{path}: {int(bad.sum())} of {data.shape[0]} splats hold NaN or infinite values ({shown}); "
            "nothing was imported. Export the splats again, or remove those splats in the tool that made them."
        )


def splat_file_degree(path: str | os.PathLike) -> int | None:
    """The SH degree a 3DGS PLY holds, from its header alone (None: not a splat file we read)."""
    try:
        element = read_ply_header(path).element("vertex")
    except (OSError, PlyError):
        return None
    if element is None:
        return None
    names = [name for name, _ in element[2]]
    rest = len(_sorted_indexed(names, "f_rest_"))
    return {0: 0, 9: 1, 24: 2, 45: 3}.get(rest) if "f_dc_0" in names else None


def read_gaussians_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY (any SH degree, with or without ``f_rest_*``, extra properties ignored)."""
    return read_splat_table(path).activated()


def read_splat_table(path: str | os.PathLike) -> SplatTable:
    """Read a 3DGS PLY as stored (see ``SplatTable``); a file that is not one, or is damaged, raises
    ``PlyError`` saying what is wrong.

    The file is memory-mapped and every block is gathered with one copy; the SH coefficients land
    coefficient-major (``sh[:, :, k]`` is one contiguous (M, 3) block, the layout Blender's per-coefficient
    attributes take without another copy)."""
    data = read_ply_vertices(path, mapped=True)
    props = data.dtype.names
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2"]
    required += ["rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [n for n in required if n not in props]
    if missing:
        raise PlyError(
            f"{path} is not a 3D Gaussian splat PLY: missing properties {missing} "
            "(expected the 3DGS layout x y z f_dc_* f_rest_* opacity scale_* rot_*)"
        )
    m = data.shape[0]
    rest_names = _sorted_indexed(props, "f_rest_")
    if len(rest_names) % 3:
        raise PlyError(f"{path}: {len(rest_names)} f_rest properties is not a multiple of 3 colour channels")
    k = 1 + len(rest_names) // 3
    if k not in (1, 4, 9, 16):
        raise PlyError(
            f"{path}: {len(rest_names)} f_rest properties give {k} SH coefficients per colour, which is no "
            "degree 0-3 set (0, 9, 24 or 45 f_rest): the file is damaged or from an unknown layout"
        )
    means = np.empty((m, 3), np.float32)
    log_scales = np.empty((m, 3), np.float32)
    quaternions = np.empty((m, 4), np.float32)
    opacity_logits = np.empty(m, np.float32)
    by_coefficient = np.empty((k, m, 3), np.float32)  # sh[:, c, j] = by_coefficient[j, :, c]
    columns = {
        "means": ["x", "y", "z"],
        "log_scales": ["scale_0", "scale_1", "scale_2"],
        "quaternions": ["rot_0", "rot_1", "rot_2", "rot_3"],
        "opacity": ["opacity"],
        "dc": ["f_dc_0", "f_dc_1", "f_dc_2"],
        "rest": rest_names,
    }
    # Usual case (every property float32, no padding): view the records as an (M, P) table and copy
    # rows in blocks that stay in cache, each block checked for NaN while it is there.
    uniform = all(data.dtype[n] == np.float32 for n in props) and data.dtype.itemsize == 4 * len(props)
    finite = True
    if uniform and m:
        table = data.view(np.float32).reshape(m, len(props))
        index = {n: i for i, n in enumerate(props)}
        where = {key: _columns(index, names) for key, names in columns.items() if names}
        for start in range(0, m, _BLOCK):
            rows = table[start : start + _BLOCK]
            block = slice(start, start + len(rows))
            finite = finite and bool(np.isfinite(rows).all())
            means[block] = rows[:, where["means"]]
            log_scales[block] = rows[:, where["log_scales"]]
            quaternions[block] = rows[:, where["quaternions"]]
            opacity_logits[block] = rows[:, where["opacity"]][:, 0]
            by_coefficient[0, block] = rows[:, where["dc"]]
            if k > 1:
                by_coefficient[1:, block] = rows[:, where["rest"]].reshape(-1, 3, k - 1).transpose(2, 0, 1)
    else:
        for target, key in ((means, "means"), (log_scales, "log_scales"), (quaternions, "quaternions")):
            for i, n in enumerate(columns[key]):
                target[:, i] = data[n]
        opacity_logits[:] = data["opacity"]
        for c in range(3):
            by_coefficient[0, :, c] = data[f"f_dc_{c}"]
            for j in range(1, k):
                by_coefficient[j, :, c] = data[rest_names[c * (k - 1) + j - 1]]
        finite = bool(np.isfinite(means).all() and np.isfinite(by_coefficient).all())
        finite = finite and all(np.isfinite(a).all() for a in (log_scales, quaternions, opacity_logits))
    if not finite:  # somewhere in the file: name the splat properties at fault (extras do not count)
        _refuse_non_finite(path, data, required + rest_names)
    return SplatTable(
        means=means,
        log_scales=log_scales,
        quaternions=quaternions,
        sh=by_coefficient.transpose(1, 2, 0),
        opacity_logits=opacity_logits,
    )


def _columns(index: dict[str, int], names: list[str]) -> slice | list[int]:
    """The table columns of ``names``: a slice when they are adjacent and in order (no gather)."""
    at = [index[n] for n in names]
    return slice(at[0], at[0] + len(at)) if at == list(range(at[0], at[0] + len(at))) else at
