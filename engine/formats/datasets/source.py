"""``DatasetSource``: everything a dataset writer reads, in the bundle's frame, from a finished bundle
(Blender's *Export Dataset*) or from a running job (``--export 3dgs|nerfstudio``, engine/jobs/exports.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...geometry.filters import gather_points, subsample
from ..bundle import Bundle
from .frame import DatasetError
from .images import dataset_image_names, plain_image_size

__all__ = ["DatasetSource", "source_from_bundle"]


@dataclass(frozen=True, eq=False)
class DatasetSource:
    """Cameras, images, depth and seed points of N views (bundle frame, OpenCV, world-to-camera)."""

    extrinsics: np.ndarray  # (N, 3, 4) float64 world-to-camera
    image_names: list[str]  # (N,) unique file names that sort in view order
    images: list  # (N,) a file to copy, or an (H, W, 3) uint8 array to write as PNG
    image_sizes: np.ndarray  # (N, 2) int64 (H, W) of each image as written
    image_intrinsics: np.ndarray  # (N, 3, 3) float64 K in pixels of each image as written
    points_xyz: np.ndarray  # (P, 3) float64 seed points
    points_rgb: np.ndarray  # (P, 3) uint8
    points_view: np.ndarray  # (P,) int64 the view each point was seen from
    units: str  # "metre", "relative" or "input" (the bundle's)
    bundle_folder: str  # absolute path of the bundle (or of the job's output folder)
    bundle_id: str
    depth: np.ndarray | None = None  # (N, h, w) float32 z-depth on the processed grid, None for a shot
    depth_intrinsics: np.ndarray | None = None  # (N, 3, 3) K of the depth grid
    sky: np.ndarray | None = None  # (N, h, w) bool, True where the model sees sky

    @property
    def num_views(self) -> int:
        return int(self.extrinsics.shape[0])

    def depth_range(self) -> tuple[float, float] | None:
        """(nearest, farthest) valid z-depth over every view, sky left out; None without any depth."""
        near, far = np.inf, 0.0
        for i in range(self.num_views if self.depth is not None else 0):
            d = np.asarray(self.depth[i])
            ok = np.isfinite(d) & (d > 0)
            if self.sky is not None:
                ok &= ~np.asarray(self.sky[i], bool)
            if ok.any():
                near, far = min(near, float(d[ok].min())), max(far, float(d[ok].max()))
        return (near, far) if far > 0 else None


def _bundle_image(bundle: Bundle, i: int, k_original: np.ndarray, listed: dict[str, Path]):
    """(source, (H, W), K, suffix) of view ``i``: the photo itself when it is plain and still there, the
    frame the bundle's colmap export wrote, else the processed image the bundle keeps; None if none."""
    path = str(bundle.source_paths[i]) if bundle.source_paths is not None else ""
    frame = int(bundle.frame_indices[i]) if bundle.frame_indices is not None else -1
    original = tuple(int(v) for v in bundle.original_sizes[i])
    if path and frame < 0 and plain_image_size(path) == original:
        return path, original, k_original[i], Path(path).suffix
    stem = Path(path).stem.replace(" ", "_")
    for name in (f"{stem}_{frame:06d}.jpg", f"{stem}.jpg", Path(path).name.replace(" ", "_")):
        hit = listed.get(name) or listed.get(f"{i:05d}_{name}")
        if hit is not None and hit.is_file() and plain_image_size(hit) == original:
            return str(hit), original, k_original[i], hit.suffix
    if bundle.images is not None:
        image = np.asarray(bundle.images[i])
        return image, image.shape[:2], np.asarray(bundle.intrinsics[i], np.float64), ".png"
    return None


def source_from_bundle(
    bundle: Bundle, *, max_points: int, seed: int = 0, conf_percentile: float = 40.0
) -> DatasetSource:
    """A ``DatasetSource`` from a finished bundle (numpy only: Blender runs it off its main thread).

    Images: each still photo is copied when it is a plain JPEG/PNG still at its path; else the frame the
    bundle's ``colmap`` export wrote; else the processed image the bundle keeps (its cameras then follow
    that size). A shot bundle keeps no frames: without its photos or a colmap export it is refused.
    """
    n = bundle.num_views
    k_original = np.asarray(bundle.intrinsics_original, np.float64)
    listed = {
        Path(name).name: bundle.folder / name
        for name in (bundle.files or [])
        if str(name).startswith("colmap/images/")
    }
    picked = [_bundle_image(bundle, i, k_original, listed) for i in range(n)]
    missing = [i for i, p in enumerate(picked) if p is None]
    if missing:
        raise DatasetError(
            f"{len(missing)} of {n} views have no image to export (first: view {missing[0]}, "
            f"{bundle.source_paths[missing[0]] or 'unknown file'}): a video shot keeps no frames in its "
            "bundle. Export from the command line, which decodes the video again "
            "(python -m engine reconstruct <video> --out <folder> --export 3dgs), or re-run the shot with "
            "the colmap export."
        )
    stems = [
        Path(str(p)).stem for p in (bundle.source_paths if bundle.source_paths is not None else [""] * n)
    ]
    stems = [
        f"{s}_{int(f):06d}" if int(f) >= 0 else s
        for s, f in zip(
            stems, bundle.frame_indices if bundle.frame_indices is not None else [-1] * n, strict=True
        )
    ]
    names = dataset_image_names(stems, [p[3] for p in picked])
    if bundle.points is not None:
        p = bundle.points
        keep = subsample(len(p), max_points, seed)
        xyz, rgb, view = p.xyz[keep], p.rgb[keep], p.view[keep]
    elif bundle.depth is not None:
        pts = gather_points(
            bundle.depth,
            bundle.intrinsics,
            bundle.extrinsics,
            bundle.images,
            bundle.conf,
            bundle.sky,
            budget=max_points,
            conf_percentile=conf_percentile if bundle.conf is not None else 0.0,
            seed=seed,
        )
        xyz, rgb, view = pts.xyz, pts.rgb, pts.view
    else:
        xyz, rgb, view = np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, np.int64)
    return DatasetSource(
        extrinsics=np.asarray(bundle.extrinsics, np.float64),
        image_names=names,
        images=[p[0] for p in picked],
        image_sizes=np.array([p[1] for p in picked], np.int64).reshape(n, 2),
        image_intrinsics=np.stack([np.asarray(p[2], np.float64) for p in picked]),
        points_xyz=np.asarray(xyz, np.float64),
        points_rgb=np.asarray(rgb, np.uint8),
        points_view=np.asarray(view, np.int64),
        units=bundle.units,
        bundle_folder=str(Path(bundle.folder).resolve()),
        bundle_id=Path(bundle.folder).name,
        depth=None if bundle.depth is None else bundle.depth,
        depth_intrinsics=None if bundle.depth is None else np.asarray(bundle.intrinsics, np.float64),
        sky=bundle.sky,
    )
