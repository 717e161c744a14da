"""``da3_dataset.json``: the small file in every exported dataset that says where it came from and how
its frame maps back onto the reconstruction (what the import of a trained result relies on).

Schema (version 1)::

    {"format": "da3-dataset", "version": 1,
     "tool": "3dgs" | "nerfstudio",
     "bundle": "<absolute path of the source bundle folder at export time>",
     "bundle_id": "<the bundle's name (its folder name)>",
     "root_name": "<Blender root object name>" | null,
     "dataset_to_root": [[4 numbers] x 4],   # row-major: dataset world point -> the root's LOCAL frame
     "scale_to_metres": float | null,        # dataset units -> metres (null: not metric)
     "depth_scale": float | null}            # depth PNG value -> dataset units (see below)

``dataset_to_root`` maps a point in the dataset's world frame (COLMAP world / transforms.json world,
before any nerfstudio dataparser normalisation) into the reconstruction root's local frame, which is
the bundle's own frame (reconstruction.npz). It is a similarity (rotation, one uniform scale,
translation). ``depth_scale``: nerfstudio ``depths/`` PNG value × depth_scale = z-depth in dataset
units; 3DGS ``depths/`` hold inverse depth, PNG value × depth_scale = 1 / z-depth in dataset units.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SIDECAR_FILE",
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "DatasetSidecar",
    "SidecarError",
    "read_sidecar",
    "write_sidecar",
]

SIDECAR_FILE = "da3_dataset.json"
SIDECAR_FORMAT = "da3-dataset"
SIDECAR_VERSION = 1
TOOLS = ("3dgs", "nerfstudio")


class SidecarError(ValueError):
    """A da3_dataset.json that cannot be read (the message says what is wrong)."""


@dataclass(frozen=True)
class DatasetSidecar:
    """What ``da3_dataset.json`` holds (see the module docstring)."""

    tool: str  # "3dgs" or "nerfstudio"
    bundle: str  # absolute path of the source bundle folder at export time
    bundle_id: str
    root_name: str | None
    dataset_to_root: np.ndarray  # (4, 4) float64: dataset world -> root local (bundle frame)
    scale_to_metres: float | None
    depth_scale: float | None

    def to_dict(self) -> dict:
        return {
            "format": SIDECAR_FORMAT,
            "version": SIDECAR_VERSION,
            "tool": self.tool,
            "bundle": self.bundle,
            "bundle_id": self.bundle_id,
            "root_name": self.root_name,
            "dataset_to_root": np.asarray(self.dataset_to_root, np.float64).reshape(4, 4).tolist(),
            "scale_to_metres": None if self.scale_to_metres is None else float(self.scale_to_metres),
            "depth_scale": None if self.depth_scale is None else float(self.depth_scale),
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = SIDECAR_FILE) -> DatasetSidecar:
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise SidecarError(f'{where} is not a DA3 dataset file (no "format": "{SIDECAR_FORMAT}")')
        if not isinstance(data.get("version"), int) or data["version"] > SIDECAR_VERSION:
            raise SidecarError(
                f"{where} has version {data.get('version')!r}; update DA3 Reconstruct to read it"
            )
        if data.get("tool") not in TOOLS:
            raise SidecarError(f"{where}: tool must be one of {', '.join(TOOLS)}, got {data.get('tool')!r}")
        matrix = np.asarray(data.get("dataset_to_root"), dtype=np.float64)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
            raise SidecarError(f"{where}: dataset_to_root must be a 4×4 list of finite numbers")

        def number(key: str) -> float | None:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise SidecarError(f"{where}: {key} must be a positive number or null, got {value!r}")
            return float(value)

        root_name = data.get("root_name")
        return cls(
            tool=data["tool"],
            bundle=str(data.get("bundle", "")),
            bundle_id=str(data.get("bundle_id", "")),
            root_name=None if root_name is None else str(root_name),
            dataset_to_root=matrix,
            scale_to_metres=number("scale_to_metres"),
            depth_scale=number("depth_scale"),
        )


def write_sidecar(folder: str | os.PathLike, sidecar: DatasetSidecar) -> Path:
    """Write ``folder/da3_dataset.json``; returns its path."""
    path = Path(folder) / SIDECAR_FILE
    path.write_text(json.dumps(sidecar.to_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def read_sidecar(path: str | os.PathLike) -> DatasetSidecar:
    """Read a dataset's sidecar: ``path`` is the dataset folder or the json file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / SIDECAR_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SidecarError(f"{path} not found: pick a folder exported by DA3 Reconstruct") from None
    except (OSError, ValueError) as exc:
        raise SidecarError(f"{path} cannot be read: {exc}") from None
    return DatasetSidecar.from_dict(data, str(path))
