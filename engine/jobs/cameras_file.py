"""A known-cameras file: the cameras the user already has (a solve from another tool, a calibrated rig),
one per frame, that a still job conditions the network on (``--cameras``, ``options.cameras``)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["KnownCameras", "read_cameras"]


@dataclass(frozen=True)
class KnownCameras:
    """Cameras the user already has (a solve from another tool, a calibrated rig), one per frame."""

    path: str
    intrinsics: np.ndarray  # (N, 3, 3) float64, pixels of the ORIGINAL images
    extrinsics: np.ndarray | None  # (N, 4, 4) float64 world-to-camera, OpenCV; None: intrinsics only

    def check_count(self, frames: int) -> None:
        if len(self.intrinsics) != frames:
            raise UserError(
                f"The cameras file {self.path} has {len(self.intrinsics)} cameras but the job has {frames} "
                "frames. Give one camera per frame, in frame order (check the frame range, and that no "
                "image was skipped)."
            )


_CAMERAS_HELP = (
    "It needs 'intrinsics' (N, 3, 3) in pixels of the original images and 'extrinsics' (N, 4, 4) or "
    "(N, 3, 4) world-to-camera matrices with OpenCV axes (x right, y down, z forward)."
)


def read_cameras(path: str) -> KnownCameras:
    """Read and check a known-cameras file: ``.npz`` or ``.json`` with ``intrinsics`` and ``extrinsics``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(
            f"The cameras file '{p}' does not exist. Choose a .npz or .json file. {_CAMERAS_HELP}"
        )
    if p.suffix.lower() not in (".npz", ".json"):
        raise UserError(f"The cameras file '{p.name}' must be a .npz or .json file. {_CAMERAS_HELP}")

    def bad(problem: str) -> UserError:
        return UserError(f"The cameras file '{p}' {problem}. {_CAMERAS_HELP}")

    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as npz:
                data = {key: npz[key] for key in npz.files}
        else:
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise bad("holds no JSON object")
        arrays = {
            key: np.asarray(data[key], np.float64) for key in ("intrinsics", "extrinsics") if key in data
        }
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise bad(f"cannot be read ({exc})") from None
    k = arrays.get("intrinsics")
    if k is None:
        raise bad("has no 'intrinsics'")
    if k.ndim != 3 or k.shape[1:] != (3, 3) or not len(k):
        raise bad(f"has 'intrinsics' of shape {k.shape}, not (N, 3, 3)")
    if not np.isfinite(k).all() or (k[:, 0, 0] <= 0).any() or (k[:, 1, 1] <= 0).any():
        raise bad("has intrinsics with non-finite or non-positive focal lengths")
    if not np.allclose(k[:, 2], [0.0, 0.0, 1.0]):
        raise bad("has intrinsics whose last row is not [0, 0, 1]")
    e = arrays.get("extrinsics")
    if e is not None:
        if e.ndim != 3 or e.shape[1:] not in ((3, 4), (4, 4)) or len(e) != len(k):
            raise bad(f"has 'extrinsics' of shape {e.shape} for {len(k)} intrinsics")
        rot = e[:, :3, :3]
        orthonormal = np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-4)
        if not np.isfinite(e).all() or not orthonormal or (np.linalg.det(rot) <= 0).any():
            raise bad("has extrinsics whose rotation part is not a rotation (scaled, mirrored or not finite)")
        e4 = np.tile(np.eye(4), (len(e), 1, 1))
        e4[:, :3, :] = e[:, :3, :]
        e = e4
    return KnownCameras(str(p), k, e)
