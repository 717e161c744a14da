"""3D Gaussian splat files for the tests, written the way each tool writes them.

``inria_ply`` writes with ``plyfile`` (the library the Inria 3DGS code, SuGaR and gsplat's exporter use),
in the Inria property order, optionally with extra properties; ``random_table`` makes splats with
unnormalised quaternions and every SH degree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from engine.formats.gaussians_ply import SplatTable

STANDARD = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")


def random_table(m: int = 64, degree: int = 3, seed: int = 0) -> SplatTable:
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    return SplatTable(
        means=rng.normal(size=(m, 3)).astype(np.float32),
        log_scales=rng.uniform(-4.0, -1.5, (m, 3)).astype(np.float32),
        quaternions=(rng.normal(size=(m, 4)) * rng.uniform(0.5, 2.0, (m, 1))).astype(np.float32),
        sh=(rng.normal(size=(m, 3, k)) * 0.3).astype(np.float32),
        opacity_logits=rng.normal(size=m).astype(np.float32),
    )


def property_names(k: int) -> list[str]:
    names = list(STANDARD) + [f"f_rest_{i}" for i in range(3 * (k - 1))]
    return names + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def inria_ply(path: Path, t: SplatTable, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write ``t`` with plyfile in the Inria layout (normals zero), then ``extra`` float properties."""
    m, k = len(t), t.sh.shape[2]
    columns = [t.means, np.zeros((m, 3), np.float32), t.sh[:, :, 0]]
    if k > 1:
        columns.append(t.sh[:, :, 1:].reshape(m, 3 * (k - 1)))  # channel-major f_rest
    columns += [t.opacity_logits[:, None], t.log_scales, t.quaternions]
    table = np.concatenate(columns, axis=1).astype(np.float32)
    names = property_names(k) + list(extra or {})
    data = np.empty(m, [(n, "f4") for n in names])
    for i, n in enumerate(property_names(k)):
        data[n] = table[:, i]
    for n, values in (extra or {}).items():
        data[n] = values
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))
    return path


def read_vertex(path: Path) -> np.ndarray:
    """The vertex records of a PLY as plyfile reads them."""
    return PlyData.read(str(path))["vertex"].data


def drop_property(path: Path, name: str) -> Path:
    """Rewrite ``path`` without the vertex property ``name`` (a damaged or foreign file)."""
    data = read_vertex(path)
    keep = [n for n in data.dtype.names if n != name]
    out = np.empty(len(data), [(n, data.dtype[n]) for n in keep])
    for n in keep:
        out[n] = data[n]
    PlyData([PlyElement.describe(out, "vertex")]).write(str(path))
    return path
