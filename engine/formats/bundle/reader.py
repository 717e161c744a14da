"""Reading a bundle: the manifest checked against the files, the arrays (memory-mapped when asked), and
``Bundle``, what importers see."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..gaussians_ply import Gaussians
from .schema import (
    ARRAYS_FILE,
    BUNDLE_FORMAT,
    DENSE,
    GS_KEYS,
    MANIFEST_FILE,
    MMAP_MIN_BYTES,
    PER_VIEW,
    POINT_KEYS,
    REQUIRED,
    SCHEMA_VERSION,
    BundleError,
    BundleNotFound,
    IncompleteBundle,
    check_name,
    scale_to_original,
)


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
    def kind(self) -> str:
        """ "shot" (a video solved in chunks: one camera over a plate, ``shot_json``) or "still" — the job's
        kind (``protocol.job_kind``) as its bundle records it; importers dispatch on this alone."""
        return "shot" if self.shot is not None else "still"

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
        name = check_name(name)
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
            if count * dtype.itemsize < MMAP_MIN_BYTES:  # small arrays and scalars: just read them
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


FINITE_KEYS = ("extrinsics", "intrinsics", "intrinsics_original", "points_xyz", "world_alignment", *GS_KEYS)


def _refuse_non_finite(folder: Path, data: dict[str, np.ndarray]) -> None:
    """A bundle whose cameras, points or Gaussians hold NaN or infinity is refused: importing it would put
    NaN into the scene. (Depth may be non-finite where there is none: sky, holes.)"""
    for key in FINITE_KEYS:
        if key not in data:
            continue
        values = np.asarray(data[key])
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            rows = values.reshape(len(values), -1) if values.ndim > 1 else values.reshape(-1, 1)
            bad = np.flatnonzero(~np.isfinite(rows).all(1))
            where = (
                f"views {', '.join(str(i + 1) for i in bad[:8])}"
                if key in FINITE_KEYS[:3]
                else f"{len(bad)} rows"
            )
            raise BundleError(
                f"{folder / ARRAYS_FILE} holds numbers that are not finite (NaN) in {key} ({where}), so it "
                "cannot be imported: run the reconstruction again (in full precision, fp32, if it happens again)."
            )


def read_bundle(folder: str | os.PathLike, *, mmap: bool = False) -> Bundle:
    """Read a finished bundle. Raises ``IncompleteBundle`` when the folder holds no finished bundle.

    ``mmap=True`` maps the arrays from disk instead of reading them (fast, little memory; the file
    stays open while the arrays live, which on Windows blocks deleting the folder).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    data = _load_npz(folder / ARRAYS_FILE, mmap)
    dense = () if "points_xyz" in data and "image_hw" in data else DENSE
    missing = [k for k in REQUIRED + dense + PER_VIEW + ("is_metric", "units") if k not in data]
    if missing:
        raise IncompleteBundle(f"{folder / ARRAYS_FILE} lacks {missing}; run the reconstruction again")

    _refuse_non_finite(folder, data)

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
    if all(k in data for k in GS_KEYS):
        gaussians = Gaussians(
            means=data["gs_means"],
            scales=data["gs_scales"],
            rotations=data["gs_rotations"],
            sh=data["gs_harmonics"],
            opacities=data["gs_opacities"],
        )
    points = None
    if all(k in data for k in POINT_KEYS):
        points = BundlePoints(*(data[k] for k in POINT_KEYS))
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
