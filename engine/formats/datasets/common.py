"""What both dataset writers share: the views in the dataset frame, the depth of a view at its image's
size, and progress/cancel plumbing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .frame import Similarity
from .images import put_image
from .maps import resample_nearest
from .source import DatasetSource

__all__ = ["DatasetFrame", "Steps", "points_tracks", "view_depth", "write_images"]

Progress = Callable[[int, int, str], None]  # (done, total, message)


@dataclass
class Steps:
    """Progress and cancel for one dataset: ``step(message)`` reports one more step done and checks for
    cancel (``check_cancel`` raises to stop)."""

    total: int
    progress: Progress | None = None
    check_cancel: Callable[[], None] | None = None
    done: int = 0

    def step(self, message: str) -> None:
        if self.check_cancel is not None:
            self.check_cancel()
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total, message)


@dataclass(frozen=True, eq=False)
class DatasetFrame:
    """The views and seed points in the dataset frame (``root`` applied)."""

    root: Similarity
    extrinsics: np.ndarray  # (N, 3, 4) float64 world-to-camera, OpenCV, dataset frame
    points: np.ndarray  # (P, 3) float64 seed points, dataset frame

    @classmethod
    def of(cls, source: DatasetSource, root: Similarity) -> DatasetFrame:
        return cls(root, root.world_to_camera(source.extrinsics), root.points(source.points_xyz))


def view_depth(source: DatasetSource, i: int, scale: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(z-depth in dataset units at view ``i``'s image size (0: none), sky mask or None)."""
    k_grid, k_image = source.depth_intrinsics[i], source.image_intrinsics[i]
    hw = source.image_sizes[i]
    depth = np.asarray(source.depth[i], np.float32)
    sky = None if source.sky is None else np.asarray(source.sky[i], bool)
    valid = np.isfinite(depth) & (depth > 0)
    if sky is not None:
        valid &= ~sky
    grid = np.where(valid, depth * np.float32(scale), 0.0).astype(np.float32)
    out = resample_nearest(grid, k_grid, k_image, hw, fill=0.0)
    sky_out = None if sky is None else resample_nearest(sky, k_grid, k_image, hw, fill=False)
    return out, sky_out


def write_images(folder: Path, source: DatasetSource, steps: Steps) -> None:
    """Copy or write every view's image into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(source.image_names, source.images, strict=True):
        put_image(image, folder / name)
        steps.step(f"Wrote {name}")


def points_tracks(frame: DatasetFrame, view: np.ndarray, k_image: np.ndarray) -> np.ndarray:
    """(P, 2) each seed point's projection into the view it came from, in that image's pixels."""
    ext = frame.extrinsics[view]
    cam = np.einsum("pij,pj->pi", ext[:, :, :3], frame.points) + ext[:, :, 3]
    uvw = np.einsum("pij,pj->pi", k_image[view], cam)
    z = np.where(np.abs(uvw[:, 2:3]) > 1e-12, uvw[:, 2:3], 1e-12)
    return uvw[:, :2] / z
