"""Synthetic shot bundles with a known answer, written with the engine's own bundle writer.

The camera path is ``tests/engine/synthetic_shot.camera_path`` (a dolly along an arc at eye height over
a floor at Z = 0), so the bundle's world is the ground truth's world and ``world_alignment`` may be any
similarity the test wants on the root. Frames, timestamps, the lens, the report and ``shot_json`` are
what a shot job writes (docs/BUNDLE.md, "Shot bundles").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.formats.bundle import write_bundle
from engine.geometry.sim3 import Sim3
from tests.engine.synthetic_shot import camera_path

PLATE_HW = (480, 640)  # the footage
PROC_HW = (42, 56)  # what the network saw
FOCAL_PLATE = 560.0  # fx = fy in plate pixels


def shot_arrays(
    frame_indices: np.ndarray,
    *,
    source_frames: int = 48,
    fps: float = 24.0,
    focal_jitter: float = 0.0,
    timestamps_s: np.ndarray | None = None,
    world_alignment: np.ndarray | None = None,
    points: int = 500,
    seed: int = 0,
    w2c: np.ndarray | None = None,
    plate_hw: tuple[int, int] = PLATE_HW,
    world: Sim3 | None = None,
) -> dict:
    """Arrays of a shot bundle over ``frame_indices`` of a ``source_frames`` movie (path of the GT shot).

    Points: 80 % on the floor (Z = 0), the rest on box tops (Z = 1). ``world`` (ground truth → engine
    world) moves cameras and points into an engine world where the floor is no longer Z = 0.
    """
    rng = np.random.default_rng(seed)
    frame_indices = np.asarray(frame_indices, np.int64)
    n = len(frame_indices)
    if w2c is None:
        w2c = camera_path(source_frames, frame_indices)
    fx = FOCAL_PLATE * plate_hw[1] / PLATE_HW[1] * (1 + focal_jitter * rng.standard_normal(n))
    K_plate = np.zeros((n, 3, 3))
    K_plate[:, 0, 0], K_plate[:, 1, 1] = fx, fx
    K_plate[:, 0, 2], K_plate[:, 1, 2], K_plate[:, 2, 2] = plate_hw[1] / 2, plate_hw[0] / 2, 1.0
    scale = np.diag([PROC_HW[1] / plate_hw[1], PROC_HW[0] / plate_hw[0], 1.0])
    xyz = np.column_stack([rng.uniform(-4, 4, points), rng.uniform(0, 7, points), np.zeros(points)])
    xyz[: points // 5, 2] = 1.0
    if world is not None:
        w2c, xyz = world.transform_extrinsics(w2c), world.apply(xyz)
    if timestamps_s is None:
        timestamps_s = frame_indices / fps
    arrays = {
        "extrinsics": w2c,
        "intrinsics": scale @ K_plate,
        "intrinsics_original": K_plate,
        "source_paths": ["/nowhere/plate.mov"] * n,
        "frame_indices": frame_indices,
        "timestamps_s": np.asarray(timestamps_s, np.float64),
        "original_sizes": np.tile(np.array(plate_hw, np.int32), (n, 1)),
        "points_xyz": xyz.astype(np.float32),
        "points_rgb": rng.integers(0, 256, (points, 3), dtype=np.uint8),
        "points_conf": rng.uniform(1, 3, points).astype(np.float32),
        "points_view": rng.integers(0, n, points).astype(np.int32),
        "image_hw": np.array(PROC_HW),
    }
    if world_alignment is not None:
        arrays["world_alignment"] = world_alignment
    return arrays


def shot_meta(
    n: int, *, fps: float = 24.0, source_frames: int = 48, errors=None, joints=(), focal: float = FOCAL_PLATE
) -> dict:
    """Metadata of a shot bundle: the solve report (per-view errors) and shot_json."""
    errors = list(np.linspace(0.2, 0.6, n)) if errors is None else list(errors)
    valid = [e for e in errors if e is not None]
    ranked = sorted(range(n), key=lambda i: -(errors[i] or -1))[:3]
    report = {
        "frames": list(range(n)),
        "frame_error_px": errors,
        "depth_error_px": [None] * n,
        "median_error_px": float(np.median(valid)),
        "mean_error_px": float(np.mean(valid)),
        "worst_frames": [[i, errors[i]] for i in ranked],
        "focal_px": focal,
        "focal_spread_px": 1.5,
        "joints": list(joints),
        "method": "reprojection",
        "pixel_units": "plate",
    }
    shot = {
        "fps": fps,
        "frame_count": source_frames,
        "focal_px": focal,
        "focal_y_px": focal,
        "focal_spread_px": 1.5,
        "chunk_size": 8,
        "overlap": 4,
        "chunks": [[0, n - 1]],
    }
    return {"model_id": "synthetic-shot", "report": report, "shot": shot, "options": {}}


def write_shot_bundle(folder: Path, frame_indices, *, meta: dict | None = None, **kwargs) -> Path:
    arrays = shot_arrays(frame_indices, **kwargs)
    n = len(arrays["extrinsics"])
    focal = float(np.median(arrays["intrinsics_original"][:, 0, 0]))
    fps, frames = kwargs.get("fps", 24.0), kwargs.get("source_frames", 48)
    meta = meta or shot_meta(n, fps=fps, source_frames=frames, focal=focal)
    return write_bundle(folder, arrays, meta)
