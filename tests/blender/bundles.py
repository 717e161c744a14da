"""Synthetic result bundles with a known answer, written with the engine's own bundle writer.

The scene: a flat wall at z = ``WALL_Z`` in the engine's world (the reference camera's frame), seen
by cameras that slide along x and look straight at it. Each view's pixels have one colour, so a point's
colour tells which view it came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.formats.bundle import write_bundle

WALL_Z = 5.0
VIEW_COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]], np.uint8)


def wall_views(n: int = 3, h: int = 24, w: int = 32, focal: float = 30.0, step: float = 0.5):
    """(images, depth, conf, extrinsics, intrinsics) of ``n`` cameras at x = i·step looking at the wall."""
    images = np.empty((n, h, w, 3), np.uint8)
    images[:] = VIEW_COLORS[np.arange(n) % len(VIEW_COLORS), None, None, :]
    depth = np.full((n, h, w), WALL_Z, np.float32)  # cameras at z = 0, identity rotation
    conf = np.tile(np.linspace(1.0, 10.0, h * w, dtype=np.float32).reshape(h, w), (n, 1, 1))
    extrinsics = np.zeros((n, 3, 4), np.float32)
    extrinsics[:, :, :3] = np.eye(3)
    extrinsics[:, 0, 3] = -step * np.arange(n)  # t = -R C with C = (i·step, 0, 0)
    intrinsics = np.tile(np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1]], np.float32), (n, 1, 1))
    return images, depth, conf, extrinsics, intrinsics


def write_wall_bundle(
    folder: Path, n: int = 3, *, video: bool = False, original=(48, 64), gaussians=None, **kwargs
) -> Path:
    """The wall bundle; ``gaussians`` (activated ``Gaussians``) adds the ``gs_*`` arrays."""
    images, depth, conf, extrinsics, intrinsics = wall_views(n, **kwargs)
    arrays = {
        "images": images,
        "depth": depth,
        "conf": conf,
        "extrinsics": extrinsics,
        "intrinsics": intrinsics,
    }
    arrays["original_sizes"] = np.tile(np.array(original, np.int32), (n, 1))
    if video:
        arrays["source_paths"] = ["/nowhere/shot.mp4"] * n
        arrays["frame_indices"] = np.arange(n)
    if gaussians is not None:
        arrays.update(
            gs_means=gaussians.means,
            gs_scales=gaussians.scales,
            gs_rotations=gaussians.rotations,
            gs_harmonics=gaussians.sh,
            gs_opacities=gaussians.opacities,
        )
    meta = {"model_id": "synthetic-wall", "options": {}, "ref_view_idx": 0}
    return write_bundle(folder, arrays, meta)
