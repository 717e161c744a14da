"""Writing a bundle: arrays checked against the schema, every file written atomically (temporary name,
fsync, ``os.replace``), the manifest last."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...version import ENGINE_VERSION
from .schema import (
    ALL_KEYS,
    ARRAYS_FILE,
    BUNDLE_FORMAT,
    DENSE,
    GS_KEYS,
    MANIFEST_FILE,
    POINT_KEYS,
    REQUIRED,
    SCHEMA_VERSION,
    SHOT_FIELDS,
    UNITS,
    BundleError,
    BundleNotFound,
    IncompleteBundle,
    check_name,
    scale_to_original,
)


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
    missing = [k for k in REQUIRED + ((), DENSE)[not has_points] if given.get(k) is None]
    if missing:
        raise BundleError(
            f"a bundle needs {list(REQUIRED)} and either {list(DENSE)} or the point cloud "
            f"{list(POINT_KEYS)} with image_hw; missing {missing}"
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
    gs = [k for k in GS_KEYS if given.get(k) is not None]
    if not gs:
        return {}
    if len(gs) != len(GS_KEYS):
        raise BundleError(f"Gaussians need all of {list(GS_KEYS)}; got only {gs}")
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
    present = [k for k in POINT_KEYS if given.get(k) is not None]
    if not present:
        return {}
    if len(present) != len(POINT_KEYS):
        raise BundleError(f"a point cloud needs all of {list(POINT_KEYS)}; got only {present}")
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
        lacking = [k for k in SHOT_FIELDS if k not in shot]
        if lacking:
            raise BundleError(f"shot_json lacks {lacking}; it needs {list(SHOT_FIELDS)} (docs/BUNDLE.md)")
        out["shot_json"] = np.array(text)
    return out


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
        p = self.folder / check_name(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add_file(self, name: str, source: str | os.PathLike | None = None) -> Path:
        """List an extra file (or a folder: every file in it) in the manifest.

        With ``source`` the file or folder is copied in under ``name`` first; without it, it must
        already be in the bundle folder (written via ``path(name)``).
        """
        name = check_name(name)
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
