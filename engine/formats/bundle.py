"""The job result bundle: one folder per reconstruction job (numpy only).

Layout::

    <job folder>/
        reconstruction.npz     the arrays below (uncompressed .npz, no pickled objects)
        points.ply, gaussians.ply, mesh.ply, colmap/, previews/ …   optional extra files
        manifest.json          written LAST: the bundle is complete once it exists

Every file is written under a temporary name, flushed, fsync'ed and moved into place with
``os.replace``; the manifest is written after everything else and lists every file with its size.
A folder without a valid manifest, or whose files do not match it, is an incomplete bundle and
``read_bundle`` raises ``IncompleteBundle``. The full schema is in docs/BUNDLE.md; in short:

================  ===============  =================================================================
key               dtype, shape     meaning
================  ===============  =================================================================
images            uint8 (N,H,W,3)  processed RGB images (what the network saw)
depth             float32 (N,H,W)  z-depth along the optical axis, in ``units``
conf              float32 (N,H,W)  confidence, larger is better (optional: metric/mono have none)
sky               bool (N,H,W)     True where the model sees sky (optional)
extrinsics        float32 (N,3,4)  world-to-camera, OpenCV axes (x right, y down, z forward)
intrinsics        float32 (N,3,3)  pixels of the processed image; pixel (u, v) centred at u+.5, v+.5
intrinsics_orig…  float32 (N,3,3)  ``intrinsics_original``: the same cameras in pixels of the original image
source_paths      <U (N,)          input file of each view ('' when unknown)
frame_indices     int64 (N,)       frame number in the source video, −1 for stills
timestamps_s      float64 (N,)     time of the frame in the video in seconds, NaN for stills
original_sizes    int32 (N,2)      (height, width) of the original input image
is_metric         bool ()          the model predicts metric depth
units             <U ()            "metre", "relative" or "input" (the units of given cameras)
scale_factor      float64 ()       scale applied to reach ``units`` (NaN when none)
model_id          <U ()            checkpoint name or hub id
options_json      <U ()            job options as JSON
engine_version    <U ()            engine version that wrote the bundle
timings_json      <U ()            stage timings in seconds as JSON
gs_means          float32 (M,3)    Gaussian centres (optional; the five gs_* come together)
gs_scales         float32 (M,3)    Gaussian standard deviations, linear
gs_rotations      float32 (M,4)    unit quaternions (w, x, y, z)
gs_harmonics      float32 (M,3,K)  SH coefficients per colour channel, K = (degree + 1)²
gs_opacities      float32 (M,)     opacity in [0, 1]
ref_view_idx      int64 ()         view used as the reference (world) frame (optional)
points_xyz        float32 (M,3)    a reduced point cloud of the whole job, world frame (optional;
points_rgb        uint8 (M,3)        the four points_* come together) and its colours,
points_conf       float32 (M,)       confidences (1.0 when the model has none)
points_view       int32 (M,)         and the view (row of extrinsics) each point came from
image_hw          int32 (2,)       (H, W) of the processed frames; required when ``images`` is absent
world_alignment   float64 (4,4)    engine world → aligned world (floor at Z = 0, +Z up, origin below the
                                   first camera, metres when units are metres); for the root object
floor_plane       float64 (4,)     the fitted floor (nx, ny, nz, d), n·x + d = 0, n towards the cameras
report_json       <U ()            the solve report (``SolveReport.to_dict()``) as JSON (optional)
shot_json         <U ()            a video shot: fps, frame_count, focal_px, chunks … as JSON (optional)
================  ===============  =================================================================

A *shot bundle* (a long video solved in chunks) leaves out ``images``, ``depth``, ``conf`` and
``sky``, which would grow with the shot: it carries ``points_*`` and ``image_hw`` instead, and the
number of views N comes from ``extrinsics``. The world frame is the job's reference camera frame
(OpenCV axes); ``world_alignment`` is never baked into points or poses.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..version import ENGINE_VERSION
from .gaussians_ply import Gaussians

__all__ = [
    "ARRAYS_FILE",
    "BUNDLE_FORMAT",
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "SHOT_KEYS",
    "Bundle",
    "BundleError",
    "BundleNotFound",
    "BundlePoints",
    "BundleWriter",
    "IncompleteBundle",
    "begin_bundle",
    "finish_bundle",
    "is_complete",
    "read_bundle",
    "read_manifest",
    "scale_to_original",
    "write_bundle",
]

BUNDLE_FORMAT = "da3-bundle"
SCHEMA_VERSION = 1
ARRAYS_FILE = "reconstruction.npz"
MANIFEST_FILE = "manifest.json"
UNITS = ("metre", "relative", "input")  # "input": the units of the known cameras the job was given
_MMAP_MIN_BYTES = 1 << 16

_VIEW_ARRAYS = ("images", "depth", "conf", "sky", "extrinsics", "intrinsics")
_PER_VIEW = ("source_paths", "frame_indices", "timestamps_s", "original_sizes")
_OPTIONAL_PER_VIEW = ("intrinsics_original",)  # filled from intrinsics and original_sizes when not given
_GS_KEYS = ("gs_means", "gs_scales", "gs_rotations", "gs_harmonics", "gs_opacities")
_POINT_KEYS = ("points_xyz", "points_rgb", "points_conf", "points_view")
SHOT_KEYS = ("image_hw", "world_alignment", "floor_plane", "report_json", "shot_json")
_META_KEYS = (
    "is_metric",
    "units",
    "scale_factor",
    "model_id",
    "options_json",
    "engine_version",
    "timings_json",
    "ref_view_idx",
)
ALL_KEYS = _VIEW_ARRAYS + _PER_VIEW + _OPTIONAL_PER_VIEW + _GS_KEYS + _POINT_KEYS + SHOT_KEYS + _META_KEYS
_REQUIRED = ("extrinsics", "intrinsics")  # and images + depth, unless the points_* cloud stands in for them
_DENSE = ("images", "depth")
# what shot_json must hold (docs/BUNDLE.md, "Shot bundles")
_SHOT_FIELDS = (
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


# ------------------------------------------------------------------------------------------ writing


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """Call ``write(fh)`` on ``path.partial``, fsync it, then rename it to ``path``."""
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _json_text(value: Any, key: str) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError as exc:
            raise BundleError(f"bundle {key} must be valid JSON text: {exc}") from None
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle {key} cannot be stored as JSON: {exc}") from None


def _json_object(value: Any, key: str) -> tuple[str, dict[str, Any]]:
    """Strict JSON text of an object (no NaN: JSON has none) and the object itself."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise BundleError(f"bundle {key} must be valid JSON text: {exc}") from None
    if not isinstance(value, dict):
        raise BundleError(f"bundle {key} must be a JSON object, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False), value
    except (TypeError, ValueError) as exc:
        raise BundleError(
            f"bundle {key} cannot be stored as strict JSON (write NaN as null): {exc}"
        ) from None


def _prepare_arrays(arrays: dict[str, Any], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Validate and normalise everything that goes into reconstruction.npz."""
    meta = dict(meta)
    # dicts are accepted for the *_json keys under their short names
    for short in ("options", "timings", "report", "shot"):
        if short in meta:
            if f"{short}_json" in meta:
                raise BundleError(f"give either {short!r} or {short + '_json'!r}, not both")
            meta[f"{short}_json"] = meta.pop(short)
    both = set(arrays) & set(meta)
    if both:
        raise BundleError(f"keys given both as arrays and as meta: {sorted(both)}")
    given = {**arrays, **meta}
    unknown = sorted(set(given) - set(ALL_KEYS))
    if unknown:
        raise BundleError(
            f"unknown bundle keys {unknown}; the schema (docs/BUNDLE.md) knows {list(ALL_KEYS)}"
        )
    has_points = given.get("points_xyz") is not None
    missing = [k for k in _REQUIRED + ((), _DENSE)[not has_points] if given.get(k) is None]
    if missing:
        raise BundleError(
            f"a bundle needs {list(_REQUIRED)} and either {list(_DENSE)} or the point cloud "
            f"{list(_POINT_KEYS)} with image_hw; missing {missing}"
        )

    out: dict[str, np.ndarray] = {}
    n, h, w = _view_grid(given, out)

    def want(key: str, shape: tuple, dtype) -> np.ndarray:
        arr = np.asarray(given[key])
        if arr.shape != shape:
            raise BundleError(f"{key} must have shape {shape} to match {n} views of {h}x{w}, got {arr.shape}")
        return arr.astype(dtype, copy=False)

    for key, dtype in (("depth", np.float32), ("conf", np.float32), ("sky", np.bool_)):
        if given.get(key) is not None:
            out[key] = want(key, (n, h, w), dtype)
    ext = np.asarray(given["extrinsics"])
    if ext.shape == (n, 4, 4):
        ext = ext[:, :3, :]
    if ext.shape != (n, 3, 4):
        raise BundleError(f"extrinsics must have shape {(n, 3, 4)} (world-to-camera), got {ext.shape}")
    out["extrinsics"] = ext.astype(np.float32)
    out["intrinsics"] = want("intrinsics", (n, 3, 3), np.float32)

    paths = given.get("source_paths")
    paths = [""] * n if paths is None else [str(p) for p in paths]
    if len(paths) != n:
        raise BundleError(f"source_paths must list {n} paths, got {len(paths)}")
    out["source_paths"] = np.array(paths, dtype=str).reshape(n)
    defaults = {
        "frame_indices": (np.full(n, -1), (n,), np.int64),
        "timestamps_s": (np.full(n, np.nan), (n,), np.float64),
        "original_sizes": (np.tile([h, w], (n, 1)), (n, 2), np.int32),
    }
    for key, (default, shape, dtype) in defaults.items():
        if given.get(key) is None:
            given[key] = default
        out[key] = want(key, shape, dtype)
    if given.get("intrinsics_original") is None:
        given["intrinsics_original"] = scale_to_original(out["intrinsics"], (h, w), out["original_sizes"])
    out["intrinsics_original"] = want("intrinsics_original", (n, 3, 3), np.float32)

    out.update(_gaussian_arrays(given))
    out.update(_point_arrays(given, n))
    out.update(_shot_arrays(given, n))

    is_metric = bool(given.get("is_metric", False))
    units = str(given.get("units") or ("metre" if is_metric else "relative"))
    if units not in UNITS:
        raise BundleError(f"units must be one of {UNITS}, got {units!r}")
    if is_metric and units != "metre":
        raise BundleError("a metric model's bundle must have units 'metre'")
    scale = given.get("scale_factor")
    out["is_metric"] = np.array(is_metric)
    out["units"] = np.array(units)
    out["scale_factor"] = np.array(np.nan if scale is None else float(scale), np.float64)
    out["model_id"] = np.array(str(given.get("model_id") or ""))
    out["options_json"] = np.array(_json_text(given.get("options_json"), "options"))
    out["timings_json"] = np.array(_json_text(given.get("timings_json"), "timings"))
    out["engine_version"] = np.array(str(given.get("engine_version") or ENGINE_VERSION))
    ref = given.get("ref_view_idx")
    if ref is not None:
        ref = int(ref)
        if not 0 <= ref < n:
            raise BundleError(f"ref_view_idx {ref} is not a view index (0..{n - 1})")
        out["ref_view_idx"] = np.array(ref, np.int64)
    return out


def _view_grid(given: dict[str, Any], out: dict[str, np.ndarray]) -> tuple[int, int, int]:
    """(N, H, W): N from images (or extrinsics), H×W from images and/or image_hw (which must agree)."""
    hw = None
    if given.get("image_hw") is not None:
        hw = np.asarray(given["image_hw"])
        if hw.shape != (2,) or not np.issubdtype(hw.dtype, np.integer) or (hw < 1).any():
            raise BundleError(
                f"image_hw must be two positive whole numbers (H, W), got {given['image_hw']!r}"
            )
        out["image_hw"] = hw.astype(np.int32)
    if given.get("images") is None:
        if hw is None:
            raise BundleError("a bundle without images needs image_hw: the (H, W) of the processed frames")
        ext = np.asarray(given["extrinsics"])
        if ext.ndim != 3 or len(ext) < 1:
            raise BundleError(f"extrinsics must have shape (N, 3, 4) (world-to-camera), got {ext.shape}")
        return int(len(ext)), int(hw[0]), int(hw[1])
    images = np.asarray(given["images"])
    if images.ndim != 4 or images.shape[-1] != 3:
        raise BundleError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
        raise BundleError(f"images must be uint8 (0..255), got {images.dtype}")
    n, h, w = images.shape[:3]
    if hw is not None and (int(hw[0]), int(hw[1])) != (h, w):
        raise BundleError(f"image_hw {tuple(int(v) for v in hw)} does not match the images' {(h, w)}")
    out["images"] = images
    return n, h, w


def _gaussian_arrays(given: dict[str, Any]) -> dict[str, np.ndarray]:
    gs = [k for k in _GS_KEYS if given.get(k) is not None]
    if not gs:
        return {}
    if len(gs) != len(_GS_KEYS):
        raise BundleError(f"Gaussians need all of {list(_GS_KEYS)}; got only {gs}")
    means = np.asarray(given["gs_means"])
    m = means.shape[0] if means.ndim == 2 else -1
    harm = np.asarray(given["gs_harmonics"])
    k = harm.shape[2] if harm.ndim == 3 else -1
    out = {}
    for key, shape in (
        ("gs_means", (m, 3)),
        ("gs_scales", (m, 3)),
        ("gs_rotations", (m, 4)),
        ("gs_harmonics", (m, 3, k)),
        ("gs_opacities", (m,)),
    ):
        arr = np.asarray(given[key])
        if arr.shape != shape or m < 0 or k < 1:
            raise BundleError(f"{key} must have shape {shape} (M Gaussians), got {arr.shape}")
        out[key] = arr.astype(np.float32, copy=False)
    return out


def _point_arrays(given: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    """The reduced point cloud: all four points_* or none; views must be rows of extrinsics."""
    present = [k for k in _POINT_KEYS if given.get(k) is not None]
    if not present:
        return {}
    if len(present) != len(_POINT_KEYS):
        raise BundleError(f"a point cloud needs all of {list(_POINT_KEYS)}; got only {present}")
    xyz = np.asarray(given["points_xyz"])
    m = len(xyz) if xyz.ndim == 2 else -1
    out = {}
    for key, shape, dtype in (
        ("points_xyz", (m, 3), np.float32),
        ("points_rgb", (m, 3), np.uint8),
        ("points_conf", (m,), np.float32),
        ("points_view", (m,), np.int32),
    ):
        arr = np.asarray(given[key])
        if arr.shape != shape or m < 0:
            raise BundleError(f"{key} must have shape {shape} (M points), got {arr.shape}")
        out[key] = arr.astype(dtype, copy=False)
    rgb = np.asarray(given["points_rgb"])
    if rgb.dtype != np.uint8 and not (np.issubdtype(rgb.dtype, np.integer) and _within(rgb, 0, 255)):
        raise BundleError(f"points_rgb must be uint8 colours (0..255), got {rgb.dtype}")
    view = np.asarray(given["points_view"])
    if not (np.issubdtype(view.dtype, np.integer) and _within(view, 0, n - 1)):
        raise BundleError(f"points_view must hold view indices 0..{n - 1} (rows of extrinsics)")
    return out


def _within(values: np.ndarray, low: int, high: int) -> bool:
    return values.size == 0 or (int(values.min()) >= low and int(values.max()) <= high)


def _check_similarity(m: np.ndarray, key: str) -> None:
    """A 4×4 similarity: finite, last row (0, 0, 0, 1), upper 3×3 a positive scale times a rotation."""
    if m.shape != (4, 4) or not np.isfinite(m).all() or not np.allclose(m[3], [0, 0, 0, 1]):
        raise BundleError(f"{key} must be a finite 4x4 matrix with last row (0, 0, 0, 1)")
    a = m[:3, :3]
    s2 = float(np.trace(a @ a.T)) / 3.0
    if not s2 > 0 or np.linalg.det(a) <= 0 or not np.allclose(a @ a.T, s2 * np.eye(3), atol=1e-5 * s2):
        raise BundleError(f"{key} must be a rotation with one uniform positive scale (no shear, no mirror)")


def _shot_arrays(given: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    """world_alignment, floor_plane, report_json and shot_json (image_hw is read with the views)."""
    out: dict[str, np.ndarray] = {}
    if given.get("world_alignment") is not None:
        m = np.asarray(given["world_alignment"], np.float64)
        _check_similarity(m, "world_alignment")
        out["world_alignment"] = m
    if given.get("floor_plane") is not None:
        plane = np.asarray(given["floor_plane"], np.float64)
        if plane.shape != (4,) or not np.isfinite(plane).all() or abs(np.linalg.norm(plane[:3]) - 1) > 1e-4:
            raise BundleError("floor_plane must be (nx, ny, nz, d) with a unit normal n, n·x + d = 0")
        out["floor_plane"] = plane
    if given.get("report_json") is not None:
        text, report = _json_object(given["report_json"], "report")
        errors = report.get("frame_error_px")
        if not isinstance(errors, list) or len(errors) != n:
            raise BundleError(f"the solve report needs 'frame_error_px' with one entry per view ({n})")
        out["report_json"] = np.array(text)
    if given.get("shot_json") is not None:
        text, shot = _json_object(given["shot_json"], "shot")
        lacking = [k for k in _SHOT_FIELDS if k not in shot]
        if lacking:
            raise BundleError(f"shot_json lacks {lacking}; it needs {list(_SHOT_FIELDS)} (docs/BUNDLE.md)")
        out["shot_json"] = np.array(text)
    return out


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


def _check_name(name: str) -> str:
    p = PurePosixPath(str(name).replace("\\", "/"))
    if p.is_absolute() or not p.parts or ".." in p.parts or str(p) in (MANIFEST_FILE, ARRAYS_FILE):
        raise BundleError(f"bad extra file name {name!r}: give a relative path inside the bundle folder")
    return str(p)


class BundleWriter:
    """Writes one bundle folder in order: arrays, extra files, then the manifest.

    >>> with BundleWriter(folder) as bw:            # doctest: +SKIP
    ...     bw.write_arrays(arrays, meta)
    ...     write_points_ply(bw.path("points.ply"), xyz, rgb)
    ...     bw.add_file("points.ply")
    # leaving the block without an exception writes manifest.json

    Starting a writer on an existing bundle folder first removes its manifest, so the folder reads
    as incomplete until ``finish`` has run.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / MANIFEST_FILE).unlink(missing_ok=True)
        _fsync_dir(self.folder)
        self._files: dict[str, None] = {}
        self._summary: dict[str, Any] | None = None
        self.finished = False

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self.finished:
            self.finish()

    def write_arrays(self, arrays: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
        """Validate the arrays and metadata (schema in the module docstring) and write reconstruction.npz."""
        data = _prepare_arrays(arrays, meta or {})
        _atomic_write(self.folder / ARRAYS_FILE, lambda fh: np.savez(fh, **data))
        n = len(data["extrinsics"])
        h, w = data["images"].shape[1:3] if "images" in data else data["image_hw"]
        self._summary = {
            "num_views": int(n),
            "height": int(h),
            "width": int(w),
            "model_id": str(data["model_id"]),
            "units": str(data["units"]),
            "is_metric": bool(data["is_metric"]),
            "has_images": "images" in data,
            "has_depth": "depth" in data,
            "has_conf": "conf" in data,
            "has_sky": "sky" in data,
            "num_gaussians": int(data["gs_means"].shape[0]) if "gs_means" in data else 0,
            "num_points": int(data["points_xyz"].shape[0]) if "points_xyz" in data else 0,
            "shot": "shot_json" in data,
        }
        return self.folder / ARRAYS_FILE

    def path(self, name: str) -> Path:
        """Where to write the extra file ``name`` (a relative path); its parent folders are created."""
        p = self.folder / _check_name(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add_file(self, name: str, source: str | os.PathLike | None = None) -> Path:
        """List an extra file (or a folder: every file in it) in the manifest.

        With ``source`` the file or folder is copied in under ``name`` first; without it, it must
        already be in the bundle folder (written via ``path(name)``).
        """
        name = _check_name(name)
        dest = self.folder / name
        if source is not None and Path(source).resolve() != dest.resolve():
            src = Path(source)
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            elif src.is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".partial")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            else:
                raise BundleNotFound(f"extra file to add to the bundle does not exist: {src}")
        if dest.is_dir():
            for f in sorted(dest.rglob("*")):
                if f.is_file():
                    self._files[f.relative_to(self.folder).as_posix()] = None
        elif dest.is_file():
            self._files[name] = None
        else:
            raise BundleNotFound(f"extra file {name!r} was not written into the bundle folder {self.folder}")
        return dest

    def finish(self) -> Path:
        """Write manifest.json (atomically, last). Returns the bundle folder."""
        if self._summary is None:
            raise BundleError("write_arrays() must run before finish(): a bundle needs reconstruction.npz")
        names = [ARRAYS_FILE] + [n for n in self._files if n != ARRAYS_FILE]
        files = []
        for name in names:
            p = self.folder / name
            if not p.is_file():
                raise IncompleteBundle(f"file {name!r} disappeared from {self.folder} before the manifest")
            files.append({"name": name, "size": p.stat().st_size})
        manifest = {
            "format": BUNDLE_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "engine_version": ENGINE_VERSION,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "files": files,
            "summary": self._summary,
        }
        text = json.dumps(manifest, indent=2).encode("utf-8")
        _atomic_write(self.folder / MANIFEST_FILE, lambda fh: fh.write(text))
        self.finished = True
        return self.folder


def begin_bundle(folder: str | os.PathLike) -> BundleWriter:
    """Start writing a bundle (same as ``BundleWriter(folder)``)."""
    return BundleWriter(folder)


def finish_bundle(writer: BundleWriter) -> Path:
    """Write the manifest of a bundle started with ``begin_bundle``; returns the folder."""
    return writer.finish()


def write_bundle(
    folder: str | os.PathLike,
    arrays: dict[str, Any],
    meta: dict[str, Any] | None = None,
    extra_files: dict[str, str | os.PathLike] | None = None,
) -> Path:
    """Write a complete bundle in one call.

    arrays: the array keys of the schema; meta: the scalar keys (``options``/``timings`` may be given as
    dicts instead of ``*_json`` text); extra_files: ``{name in bundle: existing file or folder}`` copied
    in (a path that already is ``folder/name`` is just listed). Returns the folder.
    """
    writer = BundleWriter(folder)
    writer.write_arrays(arrays, meta or {})
    for name, src in (extra_files or {}).items():
        writer.add_file(name, src)
    return writer.finish()


# ------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True, eq=False)
class BundlePoints:
    """A bundle's reduced point cloud (``points_*``), world frame of the job."""

    xyz: np.ndarray  # (M, 3) float32
    rgb: np.ndarray  # (M, 3) uint8
    conf: np.ndarray  # (M,) float32, 1.0 when the model has no confidence
    view: np.ndarray  # (M,) int32 row of extrinsics each point came from

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


@dataclass(frozen=True, eq=False, repr=False)
class Bundle:
    """A finished bundle read back (numpy arrays; see the module docstring for units and axes).

    A shot bundle has no ``images``/``depth`` (None) but ``points`` and ``image_hw``; every bundle has
    ``image_hw`` and ``num_views`` (from ``extrinsics``).
    """

    folder: Path
    images: np.ndarray | None  # (N, H, W, 3) uint8, None in a shot bundle
    depth: np.ndarray | None  # (N, H, W) float32 z-depth, None in a shot bundle
    conf: np.ndarray | None  # (N, H, W) float32, or None
    sky: np.ndarray | None  # (N, H, W) bool, or None
    extrinsics: np.ndarray  # (N, 3, 4) float32 world-to-camera, OpenCV
    intrinsics: np.ndarray  # (N, 3, 3) float32, processed pixels
    intrinsics_original: np.ndarray  # (N, 3, 3) float32, pixels of each original image (plate size)
    source_paths: tuple[str, ...]  # (N,)
    frame_indices: np.ndarray  # (N,) int64, −1 for stills
    timestamps_s: np.ndarray  # (N,) float64, NaN for stills
    original_sizes: np.ndarray  # (N, 2) int32 (H, W)
    is_metric: bool
    units: str  # "metre" | "relative" | "input"
    scale_factor: float  # NaN when none
    model_id: str
    options: dict[str, Any]
    timings: dict[str, Any]
    engine_version: str
    ref_view_idx: int | None
    gaussians: Gaussians | None
    points: BundlePoints | None  # the reduced cloud (points_*), or None
    image_hw: tuple[int, int]  # (H, W) of the processed frames (image_hw, else the images' size)
    world_alignment: np.ndarray | None  # (4, 4) float64 engine world → floor at Z = 0, or None
    floor_plane: np.ndarray | None  # (4,) float64 (nx, ny, nz, d), n·x + d = 0, or None
    report: dict[str, Any] | None  # the solve report (SolveReport.to_dict()), or None
    shot: dict[str, Any] | None  # fps, frame_count, focal_px, … of a video shot, or None
    files: tuple[str, ...]  # extra files listed in the manifest (relative POSIX paths)
    manifest: dict[str, Any] = field(repr=False)

    @property
    def num_views(self) -> int:
        return int(self.extrinsics.shape[0])

    def __repr__(self) -> str:
        n_gs = len(self.gaussians) if self.gaussians is not None else 0
        n_points = len(self.points) if self.points is not None else 0
        return (
            f"Bundle({str(self.folder)!r}, views={self.num_views}, size={self.image_size}, "
            f"units={self.units!r}, model_id={self.model_id!r}, gaussians={n_gs}, points={n_points}, "
            f"shot={self.shot is not None}, files={list(self.files)})"
        )

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the processed images."""
        return self.image_hw

    def file(self, name: str) -> Path:
        """Absolute path of an extra file of this bundle (``BundleError`` if it is not listed)."""
        name = _check_name(name)
        if name not in self.files:
            raise BundleError(f"the bundle in {self.folder} has no file {name!r} (it has {list(self.files)})")
        return self.folder / name


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check manifest.json and the files it lists (sizes) without loading any array."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleNotFound(f"no reconstruction bundle at {folder} (folder does not exist)")
    mpath = folder / MANIFEST_FILE
    if not mpath.is_file():
        raise IncompleteBundle(
            f"{folder} is not a finished reconstruction: manifest.json is missing, so the job stopped before "
            "it finished writing (or is still running). Run the reconstruction again."
        )
    try:
        manifest = json.loads(mpath.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IncompleteBundle(f"{mpath} is damaged ({exc}); run the reconstruction again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{mpath} is not a {BUNDLE_FORMAT} manifest")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise BundleError(
            f"{folder} was written with bundle schema {version!r}; this version reads schema "
            f"{SCHEMA_VERSION} or older. Update the DA3 Reconstruct extension."
        )
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(f, dict) and "name" in f for f in files):
        raise IncompleteBundle(f"{mpath} has no valid file list; run the reconstruction again")
    if not any(f["name"] == ARRAYS_FILE for f in files):
        raise IncompleteBundle(f"{mpath} does not list {ARRAYS_FILE}; run the reconstruction again")
    for entry in files:
        p = folder / str(entry.get("name"))
        if not p.is_file():
            raise IncompleteBundle(f"{folder} is incomplete: {entry.get('name')!r} is listed but missing")
        if p.stat().st_size != entry.get("size"):
            raise IncompleteBundle(
                f"{folder} is incomplete: {entry.get('name')!r} has {p.stat().st_size} bytes, "
                f"the manifest says {entry.get('size')} (truncated or changed after writing)"
            )
    return manifest


def is_complete(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a finished bundle (manifest and files agree)."""
    try:
        read_manifest(folder)
    except BundleError:
        return False
    return True


def _mmap_npz(path: Path) -> dict[str, np.ndarray]:
    """Memory-map every member of an uncompressed .npz (falls back to reading compressed members)."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                with zf.open(info) as member:
                    out[key] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            fh.seek(info.header_offset)
            local = fh.read(30)
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                with zf.open(info) as member:
                    out[key] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            if dtype.hasobject:
                raise BundleError(f"{path}: member {key!r} holds Python objects; refusing to unpickle")
            count = int(np.prod(shape))
            if count * dtype.itemsize < _MMAP_MIN_BYTES:  # small arrays and scalars: just read them
                flat = np.fromfile(fh, dtype=dtype, count=count)
                out[key] = flat.reshape(shape, order="F" if fortran else "C")
                continue
            out[key] = np.memmap(
                path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order="F" if fortran else "C"
            )
    return out


def _load_npz(path: Path, mmap: bool) -> dict[str, np.ndarray]:
    try:
        if mmap:
            return _mmap_npz(path)
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise IncompleteBundle(f"{path} cannot be read ({exc}); run the reconstruction again") from None


def read_bundle(folder: str | os.PathLike, *, mmap: bool = False) -> Bundle:
    """Read a finished bundle. Raises ``IncompleteBundle`` when the folder holds no finished bundle.

    ``mmap=True`` maps the arrays from disk instead of reading them (fast, little memory; the file
    stays open while the arrays live, which on Windows blocks deleting the folder).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    data = _load_npz(folder / ARRAYS_FILE, mmap)
    dense = () if "points_xyz" in data and "image_hw" in data else _DENSE
    missing = [k for k in _REQUIRED + dense + _PER_VIEW + ("is_metric", "units") if k not in data]
    if missing:
        raise IncompleteBundle(f"{folder / ARRAYS_FILE} lacks {missing}; run the reconstruction again")

    def text(key: str, default: str = "") -> str:
        return str(data[key][()]) if key in data else default

    def parsed(key: str) -> dict[str, Any]:
        try:
            value = json.loads(text(key, "{}"))
        except json.JSONDecodeError:
            raise BundleError(f"{folder / ARRAYS_FILE}: {key} is not valid JSON") from None
        return value if isinstance(value, dict) else {"value": value}

    def array(key: str) -> np.ndarray | None:
        return np.asarray(data[key], np.float64) if key in data else None

    gaussians = None
    if all(k in data for k in _GS_KEYS):
        gaussians = Gaussians(
            means=data["gs_means"],
            scales=data["gs_scales"],
            rotations=data["gs_rotations"],
            sh=data["gs_harmonics"],
            opacities=data["gs_opacities"],
        )
    points = None
    if all(k in data for k in _POINT_KEYS):
        points = BundlePoints(*(data[k] for k in _POINT_KEYS))
    if "image_hw" in data:
        image_hw = (int(data["image_hw"][0]), int(data["image_hw"][1]))
    else:
        image_hw = (int(data["images"].shape[1]), int(data["images"].shape[2]))
    files = tuple(f["name"] for f in manifest["files"] if f["name"] != ARRAYS_FILE)
    return Bundle(
        folder=folder,
        images=data.get("images"),
        depth=data.get("depth"),
        conf=data.get("conf"),
        sky=data.get("sky"),
        extrinsics=data["extrinsics"],
        intrinsics=data["intrinsics"],
        intrinsics_original=data["intrinsics_original"]
        if "intrinsics_original" in data
        else scale_to_original(data["intrinsics"], image_hw, data["original_sizes"]),
        source_paths=tuple(str(p) for p in data["source_paths"]),
        frame_indices=data["frame_indices"],
        timestamps_s=data["timestamps_s"],
        original_sizes=data["original_sizes"],
        is_metric=bool(data["is_metric"][()]),
        units=text("units"),
        scale_factor=float(data["scale_factor"][()]) if "scale_factor" in data else float("nan"),
        model_id=text("model_id"),
        options=parsed("options_json"),
        timings=parsed("timings_json"),
        engine_version=text("engine_version"),
        ref_view_idx=int(data["ref_view_idx"][()]) if "ref_view_idx" in data else None,
        gaussians=gaussians,
        points=points,
        image_hw=image_hw,
        world_alignment=array("world_alignment"),
        floor_plane=array("floor_plane"),
        report=parsed("report_json") if "report_json" in data else None,
        shot=parsed("shot_json") if "shot_json" in data else None,
        files=files,
        manifest=manifest,
    )
