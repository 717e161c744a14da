"""What the trainers make from a DA3 dataset, and the map from each result's frame back to the dataset's
(numpy only; the Blender importer places the result with the sidecar's ``dataset_to_root`` after this).

* SuGaR (refined ``.obj`` + ``.mtl`` + ``.png``, refined ``.ply``), graphdeco 3DGS ``point_cloud.ply`` and
  gsplat run with ``--no-normalize-world-space``: the COLMAP world, i.e. the dataset frame (identity).
* nerfstudio (``ns-export gaussian-splat`` → ``splat.ply``) and DN-Splatter (``gs-mesh`` PLY meshes): the
  dataparser's normalised frame, ``p_ns = scale · (T @ [p_orig; 1])`` with ``T``/``scale`` from the run's
  ``dataparser_transforms.json``. ``T`` maps nerfstudio's "original data coordinates", which are the
  transforms.json world *before* its ``applied_transform`` (the nerfstudio dataparser composes the two,
  and assumes the COLMAP one when a ``colmap/sparse/0`` folder sits in the dataset and transforms.json
  names none). So ``p_dataset = A @ T⁻¹ @ (p_ns / scale)``.
* SuGaR ``.pt`` checkpoints are pickles: never loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..ply import PlyError, read_ply_header
from .sidecar import SIDECAR_FILE

__all__ = [
    "DATAPARSER_FILE",
    "ResultError",
    "classify_result",
    "dataparser_to_dataset",
    "find_dataparser_transforms",
    "find_dataset",
    "sugar_companion",
]

DATAPARSER_FILE = "dataparser_transforms.json"
COLMAP_APPLIED = [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0]]  # nerfstudio's default
_PICKLES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar"}
_SPLAT_PROPERTIES = {"x", "y", "z", "f_dc_0", "opacity", "scale_0", "rot_0"}


class ResultError(ValueError):
    """A file that is not a result we import, or a result whose frame cannot be found (says what to do)."""


def classify_result(path: str | os.PathLike) -> str:
    """``"obj"`` (a textured OBJ mesh: SuGaR), ``"splats"`` (a 3DGS PLY) or ``"mesh"`` (a PLY with faces:
    DN-Splatter); a checkpoint or anything else raises ``ResultError``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _PICKLES:
        raise ResultError(
            f"{path.name} is a training checkpoint (a Python pickle, which can run code when loaded): it is "
            "never opened. Pick the exported result instead: SuGaR's refined_mesh/<scene>/*.obj or "
            "refined_ply/<scene>/*.ply, 3DGS's point_cloud.ply, or nerfstudio's splat.ply (ns-export)."
        )
    if suffix == ".obj":
        return "obj"
    if suffix != ".ply":
        raise ResultError(f"{path.name}: pick an .obj mesh or a .ply (splats or a mesh) made by the trainer")
    header = read_ply_header(path)
    names = [element[0] for element in header.elements]
    vertex = header.element("vertex") if "vertex" in names else None
    props = {p[0] for p in vertex[2]} if vertex else set()
    if _SPLAT_PROPERTIES <= props:
        return "splats"
    if "face" in names and {"x", "y", "z"} <= props:
        return "mesh"
    if {"red", "green", "blue", "scale_0", "rot_0"} <= props:
        raise ResultError(
            f"{path.name} holds splats with plain RGB colours (ns-export --ply-color-mode rgb): export again "
            "with the default --ply-color-mode sh_coeffs"
        )
    raise PlyError(
        f"{path.name} is neither 3D Gaussians (x, y, z, f_dc_*, opacity, scale_*, rot_*) nor a mesh"
    )


def find_dataset(path: str | os.PathLike, hint: str | os.PathLike | None = None) -> Path | None:
    """The DA3 dataset folder of a result: the nearest folder above ``path`` holding the sidecar, else
    ``hint`` (a dataset folder, or its sidecar) when it holds one, else None."""
    here = Path(os.path.abspath(os.fspath(path)))
    for folder in [here, *here.parents] if here.is_dir() else here.parents:
        if (folder / SIDECAR_FILE).is_file():
            return folder
    if hint:
        hint = Path(os.path.abspath(os.fspath(hint)))
        folder = hint.parent if hint.name == SIDECAR_FILE else hint
        if (folder / SIDECAR_FILE).is_file():
            return folder
    return None


def find_dataparser_transforms(path: str | os.PathLike, dataset: str | os.PathLike | None) -> Path | None:
    """nerfstudio's ``dataparser_transforms.json`` for a result: next to it or in a folder above it (a
    splat exported into the run folder), else the newest one under the dataset's ``outputs/`` (where
    ``ns-train`` writes its runs when started in the dataset folder), else None."""
    here = Path(os.path.abspath(os.fspath(path)))
    for folder in here.parents:
        if (folder / DATAPARSER_FILE).is_file():
            return folder / DATAPARSER_FILE
        if dataset is not None and folder == Path(dataset):
            break
    if dataset is not None:
        runs = sorted(Path(dataset).glob(f"outputs/**/{DATAPARSER_FILE}"), key=lambda p: p.stat().st_mtime)
        if runs:
            return runs[-1]
    return None


def dataparser_to_dataset(
    dataparser_file: str | os.PathLike, dataset: str | os.PathLike | None
) -> np.ndarray:
    """(4, 4) map from nerfstudio's normalised frame back to the dataset frame (see the module docstring)."""
    dataparser_file = Path(dataparser_file)
    try:
        data = json.loads(dataparser_file.read_text(encoding="utf-8"))
        transform = np.asarray(data["transform"], np.float64)
        scale = float(data["scale"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultError(
            f"{dataparser_file} cannot be read as nerfstudio's dataparser transforms: {exc}"
        ) from None
    if transform.shape != (3, 4) or not np.all(np.isfinite(transform)) or not scale > 0:
        raise ResultError(f"{dataparser_file}: expected a 3x4 'transform' and a positive 'scale'")
    forward = np.eye(4)
    forward[:3] = transform
    unscale = np.diag([1.0 / scale, 1.0 / scale, 1.0 / scale, 1.0])
    return _applied_transform(dataset) @ np.linalg.inv(forward) @ unscale


def _applied_transform(dataset: str | os.PathLike | None) -> np.ndarray:
    """The ``applied_transform`` nerfstudio composed into the dataparser transform (identity: none)."""
    out = np.eye(4)
    if dataset is None:
        return out
    dataset = Path(dataset)
    meta = {}
    if (dataset / "transforms.json").is_file():
        try:
            meta = json.loads((dataset / "transforms.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
    applied = meta.get("applied_transform")
    if applied is None and (dataset / "colmap" / "sparse" / "0").exists():
        applied = COLMAP_APPLIED
    if applied is not None:
        out[:3] = np.asarray(applied, np.float64)
    return out


def sugar_companion(path: str | os.PathLike) -> Path | None:
    """The other half of a SuGaR result (``refined_mesh/<scene>/X.obj`` ↔ ``refined_ply/<scene>/X.ply``,
    SuGaR's own layout, as its viewer pairs them), when it exists."""
    path = Path(path)
    parts = list(path.parts)
    if len(parts) < 3:
        return None
    swap = {"refined_mesh": ("refined_ply", ".ply"), "refined_ply": ("refined_mesh", ".obj")}
    if parts[-3] not in swap:
        return None
    folder, suffix = swap[parts[-3]]
    other = Path(*parts[:-3], folder, parts[-2], path.stem + suffix)
    return other if other.is_file() else None
