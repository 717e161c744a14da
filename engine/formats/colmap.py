"""COLMAP sparse models (binary and text) for 3DGS, SuGaR, gsplat and nerfstudio (numpy only).

``write_colmap(folder, …)`` writes the scene layout those trainers take with ``-s folder``::

    folder/images/<name>            copies of the input files (never links: the folder must work when
                                    copied elsewhere), or JPEG/PNG files for frames given as arrays (PIL)
    folder/sparse/0/cameras.bin     + cameras.txt   PINHOLE cameras at the ORIGINAL image size
    folder/sparse/0/images.bin      + images.txt    world-to-camera poses and 2D observations
    folder/sparse/0/points3D.bin    + points3D.txt  seed points with colours and tracks

Conventions: COLMAP poses are world-to-camera (``x_cam = R X + t``) with OpenCV axes, exactly the
engine's extrinsics; rotations are stored as unit quaternions (w, x, y, z). COLMAP's image coordinates
are continuous with the centre of the top-left pixel at (0.5, 0.5), the engine's convention too, so
intrinsics scale from the processed to the original size by a plain ``diag(sx, sy, 1) · K`` and the
2D observation of processed pixel (u, v) is ``((u + 0.5)·sx, (v + 0.5)·sy)``.

Views with equal size and intrinsics share one camera. Point records are grouped by track length
when written (COLMAP does not care about their order), so everything is written with a few numpy
calls, however many points there are.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..geometry.cameras import matrix_to_quaternion_wxyz
from ..geometry.filters import PointSet

__all__ = [
    "PINHOLE_MODEL_ID",
    "ColmapPoints",
    "colmap_points_from_pointset",
    "scale_intrinsics",
    "write_colmap",
]

PINHOLE_MODEL_ID = 1
_TEXT_CHUNK = 50_000


@dataclass(frozen=True)
class ColmapPoints:
    """3D points with their tracks, as COLMAP stores them. Observations are listed flat."""

    xyz: np.ndarray  # (P, 3) float64 world positions
    rgb: np.ndarray  # (P, 3) uint8 colours
    error: np.ndarray  # (P,) float64 mean reprojection error in pixels (0 when unknown)
    track_point: np.ndarray  # (K,) int64 index into xyz of each observation
    track_image: np.ndarray  # (K,) int64 view index (0-based, order of image_names) of each observation
    track_xy: np.ndarray  # (K, 2) float64 observed position in the ORIGINAL image (continuous pixels)


def _per_view_sizes(sizes, n: int, what: str) -> np.ndarray:
    arr = np.asarray(sizes, np.int64)
    if arr.shape == (2,):
        arr = np.tile(arr, (n, 1))
    if arr.shape != (n, 2) or np.any(arr <= 0):
        raise ValueError(
            f"{what} must be (H, W) or (N, 2) positive sizes for {n} views, got {np.shape(sizes)}"
        )
    return arr


def scale_intrinsics(K: np.ndarray, processed_sizes, original_sizes) -> np.ndarray:
    """Intrinsics of the processed images (N, 3, 3) → intrinsics at the original size (N, 3, 3) float64.

    processed_sizes, original_sizes: (H, W) or (N, 2). Exact under the pixel-centre convention.
    """
    K = np.asarray(K, np.float64)
    n = K.shape[0]
    proc = _per_view_sizes(processed_sizes, n, "processed_sizes")
    orig = _per_view_sizes(original_sizes, n, "original_sizes")
    sx = orig[:, 1] / proc[:, 1]
    sy = orig[:, 0] / proc[:, 0]
    out = K.copy()
    out[:, 0, :] *= sx[:, None]
    out[:, 1, :] *= sy[:, None]
    return out


def colmap_points_from_pointset(points: PointSet, processed_sizes, original_sizes) -> ColmapPoints:
    """One single-observation track per point: the pixel it was unprojected from, at the original size.

    processed_sizes, original_sizes: (H, W) or (N, 2) per view (N = number of views of the job).
    """
    view = np.asarray(points.view, np.int64)
    n = int(view.max()) + 1 if view.size else 0
    if np.ndim(original_sizes) == 2:
        n = max(n, np.shape(original_sizes)[0])
    if np.ndim(processed_sizes) == 2:
        n = max(n, np.shape(processed_sizes)[0])
    proc = _per_view_sizes(processed_sizes, max(n, 1), "processed_sizes").astype(np.float64)
    orig = _per_view_sizes(original_sizes, max(n, 1), "original_sizes").astype(np.float64)
    scale = orig[:, ::-1] / proc[:, ::-1]  # (N, 2) (sx, sy)
    xy = (np.asarray(points.pixel, np.float64) + 0.5) * scale[view]
    m = len(points)
    return ColmapPoints(
        xyz=np.asarray(points.xyz, np.float64),
        rgb=np.asarray(points.rgb, np.uint8),
        error=np.zeros(m),
        track_point=np.arange(m, dtype=np.int64),
        track_image=view,
        track_xy=xy,
    )


# ----------------------------------------------------------------------------------------- helpers


def _format_rows(fmt: str, columns: list[np.ndarray]) -> str:
    """Format rows (one per entry of the equal-length columns) with ``fmt``, in C-speed chunks.

    Floats go through ``%r`` on Python floats: the shortest text that reads back bit-exactly.
    """
    if not columns or len(columns[0]) == 0:
        return ""
    n = len(columns[0])
    parts = []
    for start in range(0, n, _TEXT_CHUNK):
        stop = min(n, start + _TEXT_CHUNK)
        table = np.empty((stop - start, len(columns)), dtype=object)
        for j, col in enumerate(columns):
            table[:, j] = col[start:stop].tolist()
        parts.append((fmt * (stop - start)) % tuple(table.ravel().tolist()))
    return "".join(parts)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class _Model:
    cam_params: np.ndarray  # (C, 4) fx fy cx cy
    cam_sizes: np.ndarray  # (C, 2) (W, H)
    image_cam: np.ndarray  # (N,) 0-based camera index
    quats: np.ndarray  # (N, 4) wxyz
    trans: np.ndarray  # (N, 3)
    names: list[str]
    # observations sorted by image
    obs_start: np.ndarray  # (N + 1,) slice bounds into the sorted observations
    obs_xy: np.ndarray  # (K, 2) sorted by image
    obs_point_id: np.ndarray  # (K,) 1-based point id, sorted by image
    obs_idx: np.ndarray  # (K,) point2D index of each observation (original order)
    points: ColmapPoints


def _build_model(extrinsics, intrinsics, image_sizes, image_names, points: ColmapPoints) -> _Model:
    ext = np.asarray(extrinsics, np.float64)
    n = ext.shape[0]
    if ext.shape not in ((n, 3, 4), (n, 4, 4)):
        raise ValueError(f"extrinsics must have shape (N, 3, 4) (world-to-camera), got {ext.shape}")
    K = np.asarray(intrinsics, np.float64)
    if K.shape != (n, 3, 3):
        raise ValueError(f"intrinsics_original must have shape ({n}, 3, 3), got {K.shape}")
    if np.any(np.abs(K[:, 0, 1]) > 1e-6 * np.abs(K[:, 0, 0])):
        raise ValueError("COLMAP PINHOLE cameras have no skew, but the intrinsics have a non-zero K[0, 1]")
    hw = _per_view_sizes(image_sizes, n, "image_sizes")
    names = [PurePosixPath(str(nm).replace("\\", "/")).as_posix() for nm in image_names]
    if len(names) != n:
        raise ValueError(f"image_names must list {n} names, got {len(names)}")
    if len(set(names)) != n:
        raise ValueError("image_names must be unique (COLMAP matches images by name)")
    for nm in names:
        if not nm or nm.startswith("/") or ".." in PurePosixPath(nm).parts or any(c in nm for c in "\n\r\0"):
            raise ValueError(f"bad image name {nm!r}: use a relative file name such as 'frame_0001.jpg'")
        if " " in nm:
            raise ValueError(f"image name {nm!r} contains a space, which the COLMAP text format cannot hold")

    cams = np.concatenate([hw[:, ::-1].astype(np.float64), K[:, 0, :1], K[:, 1, 1:2], K[:, :2, 2]], 1)
    uniq, image_cam = np.unique(cams, axis=0, return_inverse=True)
    quats = matrix_to_quaternion_wxyz(ext[:, :3, :3])

    k = points.track_point.shape[0]
    p = points.xyz.shape[0]
    if points.track_image.shape != (k,) or points.track_xy.shape != (k, 2):
        raise ValueError("ColmapPoints track arrays must have matching lengths (K,), (K,) and (K, 2)")
    if k and (points.track_point.min() < 0 or points.track_point.max() >= p):
        raise ValueError("ColmapPoints.track_point refers to a point that does not exist")
    if k and (points.track_image.min() < 0 or points.track_image.max() >= n):
        raise ValueError(f"ColmapPoints.track_image refers to a view outside 0..{n - 1}")
    order = np.lexsort((points.track_point, points.track_image))  # by image, then point
    starts = np.searchsorted(points.track_image[order], np.arange(n + 1))
    obs_idx = np.empty(k, np.int64)
    obs_idx[order] = np.arange(k) - starts[points.track_image[order]]
    return _Model(
        cam_params=uniq[:, 2:],
        cam_sizes=uniq[:, :2].astype(np.int64),
        image_cam=image_cam.reshape(-1),
        quats=quats,
        trans=ext[:, :3, 3],
        names=names,
        obs_start=starts,
        obs_xy=points.track_xy[order].astype(np.float64),
        obs_point_id=points.track_point[order] + 1,
        obs_idx=obs_idx,
        points=points,
    )


def _track_groups(model: _Model):
    """Yield ``(point indices (G,), image ids (G, L), point2D indices (G, L))`` per track length L."""
    pts = model.points
    p = pts.xyz.shape[0]
    lengths = np.bincount(pts.track_point, minlength=p)
    by_point = np.argsort(pts.track_point, kind="stable")
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for length in np.unique(lengths):
        sel = np.flatnonzero(lengths == length)
        obs = by_point[first[sel][:, None] + np.arange(length)]  # (G, L) observation indices
        yield sel, pts.track_image[obs] + 1, model.obs_idx[obs]


# ----------------------------------------------------------------------------------------- binary


def _cameras_bin(model: _Model) -> bytes:
    c = model.cam_params.shape[0]
    rec = np.empty(c, [("id", "<i4"), ("model", "<i4"), ("w", "<u8"), ("h", "<u8"), ("params", "<f8", 4)])
    rec["id"] = np.arange(1, c + 1)
    rec["model"] = PINHOLE_MODEL_ID
    rec["w"], rec["h"] = model.cam_sizes[:, 0], model.cam_sizes[:, 1]
    rec["params"] = model.cam_params
    return np.uint64(c).tobytes() + rec.tobytes()


def _images_bin(model: _Model) -> bytes:
    n = len(model.names)
    head = np.empty(n, [("id", "<u4"), ("q", "<f8", 4), ("t", "<f8", 3), ("cam", "<u4")])
    head["id"] = np.arange(1, n + 1)
    head["q"], head["t"], head["cam"] = model.quats, model.trans, model.image_cam + 1
    obs = np.empty(len(model.obs_point_id), [("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
    obs["x"], obs["y"], obs["id"] = model.obs_xy[:, 0], model.obs_xy[:, 1], model.obs_point_id
    parts = [np.uint64(n).tobytes()]
    for i in range(n):  # one record per image; its 2D points are one slice
        a, b = model.obs_start[i], model.obs_start[i + 1]
        parts += [
            head[i : i + 1].tobytes(),
            model.names[i].encode("utf-8") + b"\0",
            np.uint64(b - a).tobytes(),
        ]
        parts.append(obs[a:b].tobytes())
    return b"".join(parts)


def _points_bin(model: _Model) -> bytes:
    pts = model.points
    parts = [np.uint64(pts.xyz.shape[0]).tobytes()]
    for sel, img, idx in _track_groups(model):
        length = img.shape[1]
        fields = [("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("err", "<f8"), ("len", "<u8")]
        if length:
            fields.append(("track", "<u4", (length, 2)))
        rec = np.empty(sel.size, fields)
        rec["id"], rec["xyz"], rec["rgb"] = sel + 1, pts.xyz[sel], pts.rgb[sel]
        rec["err"], rec["len"] = pts.error[sel], length
        if length:
            rec["track"] = np.stack([img, idx], -1)
        parts.append(rec.tobytes())
    return b"".join(parts)


# ------------------------------------------------------------------------------------------- text


def _cameras_txt(model: _Model) -> str:
    c = model.cam_params.shape[0]
    head = (
        "# Camera list with one line of data per camera:\n"
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"# Number of cameras: {c}\n"
    )
    cols = [np.arange(1, c + 1), model.cam_sizes[:, 0], model.cam_sizes[:, 1]]
    cols += [model.cam_params[:, j] for j in range(4)]
    return head + _format_rows("%d PINHOLE %d %d %r %r %r %r\n", cols)


def _images_txt(model: _Model) -> str:
    n = len(model.names)
    k = len(model.obs_point_id)
    head = (
        "# Image list with two lines of data per image:\n"
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
        "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
        f"# Number of images: {n}, mean observations per image: {k / max(n, 1)}\n"
    )
    pose_cols = [np.arange(1, n + 1)] + [model.quats[:, j] for j in range(4)]
    pose_cols += [model.trans[:, j] for j in range(3)] + [model.image_cam + 1]
    pose_lines = _format_rows("%d %r %r %r %r %r %r %r %d\n", pose_cols).splitlines()
    lines = []
    for i in range(n):  # one pair of lines per image; its 2D points are one slice, formatted at once
        a, b = model.obs_start[i], model.obs_start[i + 1]
        xy, ids = model.obs_xy[a:b], model.obs_point_id[a:b]
        pts = _format_rows("%r %r %d ", [xy[:, 0], xy[:, 1], ids]).rstrip(" ")
        lines.append(f"{pose_lines[i]} {model.names[i]}\n{pts}\n")
    return head + "".join(lines)


def _points_txt(model: _Model) -> str:
    pts = model.points
    p = pts.xyz.shape[0]
    k = pts.track_point.shape[0]
    head = (
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        f"# Number of points: {p}, mean track length: {k / max(p, 1)}\n"
    )
    parts = [head]
    for sel, img, idx in _track_groups(model):
        length = img.shape[1]
        cols = [sel + 1] + [pts.xyz[sel, j] for j in range(3)] + [pts.rgb[sel, j] for j in range(3)]
        cols.append(pts.error[sel])
        for j in range(length):
            cols += [img[:, j], idx[:, j]]
        parts.append(_format_rows("%d %r %r %r %d %d %d %r" + " %d %d" * length + "\n", cols))
    return "".join(parts)


# ----------------------------------------------------------------------------------------- images


def _copy(src: Path, dest: Path) -> None:
    if not src.is_file():
        raise FileNotFoundError(f"image file for the COLMAP export not found: {src}")
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copyfile(src, dest)


def _save_array_image(array: np.ndarray, dest: Path) -> None:
    from PIL import Image  # lazy: Blender's Python may lack PIL

    arr = np.asarray(array)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"image arrays must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    ext = dest.suffix.lower()
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    if ext in (".jpg", ".jpeg"):
        Image.fromarray(arr).save(dest, format="JPEG", quality=95)
    elif ext == ".png":
        Image.fromarray(arr).save(dest, format="PNG", compress_level=1)
    else:
        raise ValueError(f"cannot write image {dest.name!r}: name it .jpg or .png")


def _write_images(images_dir: Path, names: list[str], sources: Sequence, sizes: np.ndarray) -> None:
    if len(sources) != len(names):
        raise ValueError(f"image_sources must have one entry per image ({len(names)}), got {len(sources)}")
    for i, (name, src) in enumerate(zip(names, sources, strict=True)):
        if src is None:
            continue
        dest = images_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, (str, os.PathLike)):
            _copy(Path(src), dest)
        else:
            arr = np.asarray(src)
            if tuple(arr.shape[:2]) != tuple(sizes[i]):
                raise ValueError(
                    f"image {name!r} is {arr.shape[1]}×{arr.shape[0]} pixels "
                    f"but its camera is {sizes[i][1]}×{sizes[i][0]}"
                )
            _save_array_image(arr, dest)


# ------------------------------------------------------------------------------------------- entry


def write_colmap(
    folder: str | os.PathLike,
    *,
    extrinsics: np.ndarray,
    intrinsics_original: np.ndarray,
    image_sizes,
    image_names: Sequence[str],
    points: ColmapPoints | PointSet | None = None,
    processed_sizes=None,
    image_sources: Sequence | None = None,
    binary: bool = True,
    text: bool = True,
    model_subdir: str = "sparse/0",
    images_subdir: str = "images",
) -> Path:
    """Write a COLMAP scene folder (see the module docstring); returns the model folder.

    extrinsics: (N, 3, 4) world-to-camera, OpenCV; intrinsics_original: (N, 3, 3) in pixels of the
    ORIGINAL images (see ``scale_intrinsics``); image_sizes: (N, 2) or (2,) original (H, W);
    image_names: N unique relative names (no spaces), e.g. ``frame_000120.jpg``;
    points: ``ColmapPoints``, or a ``PointSet`` together with ``processed_sizes`` ((H, W) or (N, 2) of
    the images its pixels refer to), or None for a model without points;
    image_sources: per image a file path (copied), an (H, W, 3) uint8 array
    (saved as JPEG/PNG after the name's extension) or None (skip); None writes no images folder.
    """
    if not (binary or text):
        raise ValueError("choose binary=True, text=True or both")
    n = np.shape(extrinsics)[0]
    if points is None:
        points = ColmapPoints(
            xyz=np.zeros((0, 3)),
            rgb=np.zeros((0, 3), np.uint8),
            error=np.zeros(0),
            track_point=np.zeros(0, np.int64),
            track_image=np.zeros(0, np.int64),
            track_xy=np.zeros((0, 2)),
        )
    elif isinstance(points, PointSet):
        if processed_sizes is None:
            raise ValueError(
                "a PointSet needs processed_sizes (its pixels are in processed-image coordinates)"
            )
        points = colmap_points_from_pointset(
            points, processed_sizes, _per_view_sizes(image_sizes, n, "image_sizes")
        )
    points = ColmapPoints(
        xyz=np.asarray(points.xyz, np.float64).reshape(-1, 3),
        rgb=np.asarray(points.rgb, np.uint8).reshape(-1, 3),
        error=np.broadcast_to(np.asarray(points.error, np.float64), (np.shape(points.xyz)[0],)),
        track_point=np.asarray(points.track_point, np.int64).reshape(-1),
        track_image=np.asarray(points.track_image, np.int64).reshape(-1),
        track_xy=np.asarray(points.track_xy, np.float64).reshape(-1, 2),
    )
    if points.rgb.shape != points.xyz.shape:
        raise ValueError(f"point colours {points.rgb.shape} do not match positions {points.xyz.shape}")
    model = _build_model(extrinsics, intrinsics_original, image_sizes, image_names, points)

    root = Path(folder)
    model_dir = root / model_subdir
    model_dir.mkdir(parents=True, exist_ok=True)
    if binary:
        _write_atomic(model_dir / "cameras.bin", _cameras_bin(model))
        _write_atomic(model_dir / "images.bin", _images_bin(model))
        _write_atomic(model_dir / "points3D.bin", _points_bin(model))
    if text:
        _write_atomic(model_dir / "cameras.txt", _cameras_txt(model).encode("utf-8"))
        _write_atomic(model_dir / "images.txt", _images_txt(model).encode("utf-8"))
        _write_atomic(model_dir / "points3D.txt", _points_txt(model).encode("utf-8"))
    if image_sources is not None:
        images_dir = root / images_subdir
        images_dir.mkdir(parents=True, exist_ok=True)
        _write_images(images_dir, model.names, image_sources, _per_view_sizes(image_sizes, n, "image_sizes"))
    return model_dir
