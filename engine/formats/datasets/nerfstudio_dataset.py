"""The nerfstudio / DN-Splatter dataset (``ns-train splatfacto --data <folder>``, DN-Splatter's
``normal-nerfstudio`` dataparser)::

    transforms.json            OpenGL camera-to-world ``transform_matrix`` per frame, fl_x/fl_y/cx/cy/w/h
                               (shared at the top when every view has the same, else per frame),
                               ``camera_model`` OPENCV with zero distortion, ``ply_file_path``
    images/<name>              the photos, copied (or PNG from pixels)
    depths/<stem>.png          uint16 z-depth: value × depth_unit_scale_factor = dataset units
    normals_from_pretrain/<stem>.png   normals from our depth, DN-Splatter's "omnidata" convention:
                               camera frame in OpenGL axes, facing the camera, RGB = (n + 1) / 2 · 255
    masks/<stem>.png           sky masks (0 = sky, ignored; 255 = used), only when the model saw sky
    sparse_pc.ply              seed points (x y z, red green blue)
    da3_dataset.json           the sidecar (sidecar.py)

nerfstudio sorts frames by file name and DN-Splatter pairs normal maps by sorted name, so every file of
view i starts with its zero-padded index. ``depth_unit_scale_factor`` is 0.001 (millimetres, nerfstudio's
default) whenever the deepest pixel fits 65.535 dataset units, else the next power of ten; nerfstudio
takes it from the command line (``--depth-unit-scale-factor``), not from transforms.json, so it is also
written there and into the sidecar as ``depth_scale``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..ply import write_points_ply
from .common import DatasetFrame, Steps, view_depth, write_images
from .maps import camera_normals, encode_normals, resample_nearest, to_uint16
from .png import write_png
from .source import DatasetSource

__all__ = ["OPENCV_TO_OPENGL", "SEED_FILE", "depth_unit", "nerfstudio_steps", "write_nerfstudio_dataset"]

SEED_FILE = "sparse_pc.ply"
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])  # camera axes: y down, z forward → y up, z back


def nerfstudio_steps(source: DatasetSource) -> int:
    return 2 * source.num_views + 1 if source.depth is not None else source.num_views + 1


def depth_unit(max_depth: float) -> float:
    """Millimetres when the deepest value fits uint16, else the smallest power of ten that makes it fit."""
    if not max_depth > 65.535:
        return 1e-3
    return 10.0 ** math.ceil(math.log10(max_depth / 65535.0))


def _max_depth(source: DatasetSource, scale: float) -> float:
    span = source.depth_range()
    return span[1] * scale if span else 0.0


def camera_to_world_gl(w2c: np.ndarray) -> np.ndarray:
    """(N, 3, 4) OpenCV world-to-camera → (N, 4, 4) OpenGL camera-to-world (nerfstudio's)."""
    n = w2c.shape[0]
    c2w = np.tile(np.eye(4), (n, 1, 1))
    rt = np.transpose(w2c[:, :, :3], (0, 2, 1))
    c2w[:, :3, :3] = rt
    c2w[:, :3, 3] = -np.einsum("nij,nj->ni", rt, w2c[:, :, 3])
    return c2w @ OPENCV_TO_OPENGL


def _intrinsics(k: np.ndarray, hw) -> dict:
    return {
        "fl_x": float(k[0, 0]),
        "fl_y": float(k[1, 1]),
        "cx": float(k[0, 2]),
        "cy": float(k[1, 2]),
        "w": int(hw[1]),
        "h": int(hw[0]),
    }


def write_nerfstudio_dataset(
    folder: Path, source: DatasetSource, frame: DatasetFrame, steps: Steps
) -> float | None:
    """Write the dataset into ``folder`` (an empty staging folder); returns the depth unit (PNG value × it
    = z-depth in dataset units) or None without depth."""
    write_images(folder / "images", source, steps)
    n = source.num_views
    c2w = camera_to_world_gl(frame.extrinsics)
    per_view = [_intrinsics(source.image_intrinsics[i], source.image_sizes[i]) for i in range(n)]
    shared = all(p == per_view[0] for p in per_view)
    meta: dict = {"camera_model": "OPENCV", "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    if shared:
        meta.update(per_view[0])
    frames = []
    for i, name in enumerate(source.image_names):
        entry = {"file_path": f"images/{name}", "transform_matrix": c2w[i].tolist()}
        if not shared:
            entry.update(per_view[i])
        frames.append(entry)
    unit = None
    if source.depth is not None:
        scale = frame.root.scale
        unit = depth_unit(_max_depth(source, scale))
        with_masks = source.sky is not None and bool(np.asarray(source.sky).any())
        for sub in ("depths", "normals_from_pretrain") + (("masks",) if with_masks else ()):
            (folder / sub).mkdir()
        for i, name in enumerate(source.image_names):
            stem = Path(name).stem
            depth, sky = view_depth(source, i, scale)
            write_png(folder / "depths" / f"{stem}.png", to_uint16(depth, unit))
            grid = np.asarray(source.depth[i], np.float32)
            normals = camera_normals(grid, source.depth_intrinsics[i])
            if source.sky is not None:
                normals[np.asarray(source.sky[i], bool)] = 0.0
            normals = resample_nearest(
                normals, source.depth_intrinsics[i], source.image_intrinsics[i], depth.shape
            )
            write_png(folder / "normals_from_pretrain" / f"{stem}.png", encode_normals(normals))
            frames[i]["depth_file_path"] = f"depths/{stem}.png"
            if with_masks:
                write_png(folder / "masks" / f"{stem}.png", np.where(sky, 0, 255).astype(np.uint8))
                frames[i]["mask_path"] = f"masks/{stem}.png"
            steps.step(f"Wrote the maps of {stem}")
        meta["depth_unit_scale_factor"] = unit
    write_points_ply(folder / SEED_FILE, frame.points, source.points_rgb)
    meta["ply_file_path"] = SEED_FILE
    meta["frames"] = frames
    (folder / "transforms.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    steps.step("Wrote transforms.json")
    return unit
