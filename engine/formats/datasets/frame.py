"""The dataset's frame: the reconstruction root's transform (a similarity) applied to the bundle's
cameras, depth and points, so a dataset lies in the frame the user aligned (floor at Z = 0, scale set).

``root`` (4, 4) maps the bundle frame (reconstruction.npz, the root's local frame) to the dataset
frame: ``X_dataset = s·R·X_bundle + t``. Cameras keep OpenCV axes; world-to-camera poses become
``R_d = R_b·Rᵀ``, ``t_d = s·t_b − R_d·t``, and every z-depth is multiplied by ``s``.
"""

from __future__ import annotations

import numpy as np

from ...errors import UserError
from ...geometry.floor import ENGINE_TO_BLENDER, default_root

__all__ = ["ENGINE_TO_BLENDER", "DatasetError", "Similarity", "default_root"]

# ENGINE_TO_BLENDER and default_root (the root's transform on import, the frame of a CLI export) are the
# ones of engine/geometry/floor.py, which Blender's importer uses too; re-exported here for the exports.


class DatasetError(UserError):
    """A dataset that cannot be exported as asked (the message says what to do)."""


class Similarity:
    """A 4×4 similarity ``X ↦ s·R·X + t`` (R a rotation, s > 0), checked on construction."""

    def __init__(self, matrix: np.ndarray, tolerance: float = 1e-5) -> None:
        m = np.asarray(matrix, np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise DatasetError("The root's transform is not a finite 4×4 matrix.")
        if np.abs(m[3] - [0, 0, 0, 1]).max() > 1e-9:
            raise DatasetError(
                "The root's transform has a projective row; reset its transform and align again."
            )
        a = m[:3, :3]
        det = float(np.linalg.det(a))
        if not det > 0:
            raise DatasetError(
                "The root is mirrored or flattened (negative or zero scale): datasets need a rotation, one "
                "uniform positive scale and a move. Clear the negative scale on the root and export again."
            )
        s = det ** (1.0 / 3.0)
        r = a / s
        if np.abs(r.T @ r - np.eye(3)).max() > tolerance:
            raise DatasetError(
                "The root has a non-uniform scale (or a shear from a scaled parent): cameras cannot follow it. "
                "Give the root the same scale on X, Y and Z (and no scaled parent) and export again."
            )
        self.matrix, self.scale, self.rotation, self.translation = m, s, r, m[:3, 3].copy()

    def inverse(self) -> np.ndarray:
        """The 4×4 inverse (dataset frame → bundle frame)."""
        out = np.eye(4)
        out[:3, :3] = self.rotation.T / self.scale
        out[:3, 3] = -self.rotation.T @ self.translation / self.scale
        return out

    def points(self, xyz: np.ndarray) -> np.ndarray:
        """(P, 3) bundle-frame points → (P, 3) float64 dataset-frame points."""
        return np.asarray(xyz, np.float64) @ (self.scale * self.rotation).T + self.translation

    def world_to_camera(self, w2c: np.ndarray) -> np.ndarray:
        """(N, 3, 4) bundle-frame world-to-camera → (N, 3, 4) float64 dataset-frame world-to-camera."""
        w2c = np.asarray(w2c, np.float64)
        r_d = w2c[:, :, :3] @ self.rotation.T
        t_d = self.scale * w2c[:, :, 3] - r_d @ self.translation
        return np.concatenate([r_d, t_d[:, :, None]], axis=2)
