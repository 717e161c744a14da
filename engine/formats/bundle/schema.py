"""The bundle's schema: its files, the keys of reconstruction.npz and what each must hold, and the
errors a reader raises (see the package docstring and docs/BUNDLE.md)."""

from __future__ import annotations

from pathlib import PurePosixPath

import numpy as np

__all__ = [
    "ALL_KEYS",
    "ARRAYS_FILE",
    "BUNDLE_FORMAT",
    "DENSE",
    "GS_KEYS",
    "MANIFEST_FILE",
    "META_KEYS",
    "MMAP_MIN_BYTES",
    "OPTIONAL_PER_VIEW",
    "PER_VIEW",
    "POINT_KEYS",
    "REQUIRED",
    "SCHEMA_VERSION",
    "SHOT_FIELDS",
    "SHOT_KEYS",
    "UNITS",
    "VIEW_ARRAYS",
    "BundleError",
    "BundleNotFound",
    "IncompleteBundle",
    "check_name",
    "scale_to_original",
]

BUNDLE_FORMAT = "da3-bundle"
SCHEMA_VERSION = 1
ARRAYS_FILE = "reconstruction.npz"
MANIFEST_FILE = "manifest.json"
UNITS = ("metre", "relative", "input")  # "input": the units of the known cameras the job was given
MMAP_MIN_BYTES = 1 << 16

VIEW_ARRAYS = ("images", "depth", "conf", "sky", "extrinsics", "intrinsics")
PER_VIEW = ("source_paths", "frame_indices", "timestamps_s", "original_sizes")
OPTIONAL_PER_VIEW = ("intrinsics_original",)  # filled from intrinsics and original_sizes when not given
GS_KEYS = ("gs_means", "gs_scales", "gs_rotations", "gs_harmonics", "gs_opacities")
POINT_KEYS = ("points_xyz", "points_rgb", "points_conf", "points_view")
SHOT_KEYS = ("image_hw", "world_alignment", "floor_plane", "report_json", "shot_json")
META_KEYS = (
    "is_metric",
    "units",
    "scale_factor",
    "model_id",
    "options_json",
    "engine_version",
    "timings_json",
    "ref_view_idx",
)
ALL_KEYS = VIEW_ARRAYS + PER_VIEW + OPTIONAL_PER_VIEW + GS_KEYS + POINT_KEYS + SHOT_KEYS + META_KEYS
REQUIRED = ("extrinsics", "intrinsics")  # and images + depth, unless the points_* cloud stands in for them
DENSE = ("images", "depth")
# what shot_json must hold (docs/BUNDLE.md, "Shot bundles")
SHOT_FIELDS = (
    "fps",
    "frame_count",
    "focal_px",
    "focal_y_px",
    "focal_spread_px",
    "chunk_size",
    "overlap",
    "chunks",
)


class BundleError(ValueError):
    """A bundle that cannot be written or read as asked (the message says what to do)."""


class IncompleteBundle(BundleError):
    """The folder holds no finished bundle: no manifest, or files missing/truncated."""


class BundleNotFound(BundleError, FileNotFoundError):
    """There is no bundle folder at that path."""


def scale_to_original(intrinsics: np.ndarray, processed_hw: tuple[int, int], original_sizes) -> np.ndarray:
    """(N,3,3) processed-pixel K → (N,3,3) float32 K of the originals: row 0 × W_orig/W, row 1 × H_orig/H.

    Exact for a plain resize (pixel-centre convention); a job that cropped writes the exact
    ``intrinsics_original`` itself, and this is only the fallback for bundles that lack it.
    """
    k = np.array(intrinsics, np.float64)
    sizes = np.asarray(original_sizes, np.float64).reshape(-1, 2)
    k[:, 0, :] *= (sizes[:, 1] / processed_hw[1])[:, None]
    k[:, 1, :] *= (sizes[:, 0] / processed_hw[0])[:, None]
    return k.astype(np.float32)


def check_name(name: str) -> str:
    p = PurePosixPath(str(name).replace("\\", "/"))
    if p.is_absolute() or not p.parts or ".." in p.parts or str(p) in (MANIFEST_FILE, ARRAYS_FILE):
        raise BundleError(f"bad extra file name {name!r}: give a relative path inside the bundle folder")
    return str(p)
