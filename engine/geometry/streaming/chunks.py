"""What the chunks carry: a chunk's prediction, a block of joined frames, a joint between chunks,
and the constants the fit and the join share."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from ..sim3 import Sim3

CONF_OFFSET = 1.0  # DA3 confidence is 1 + exp(logit); DA3-Streaming uses conf − 1
CONF_FRACTION = 0.1  # keep pixels whose confidence exceeds 0.1 · min(median conf) (DA3-Streaming)
HUBER_RELATIVE = 0.1  # Huber δ as a fraction of the scene scale (median overlap depth)
MAX_FIT_POINTS = 100_000  # correspondences per joint after subsampling
MIN_FIT_POINTS = 64  # fewer confident correspondences: fall back to the overlap cameras
POINT_CONF_FRACTION = 0.75  # the reduced cloud keeps conf ≥ 0.75 · mean conf (DA3-Streaming's PLYs)


@dataclass(frozen=True)
class ChunkPrediction:
    """One chunk's network output in that chunk's own world frame (OpenCV cameras, w2c)."""

    frames: np.ndarray  # (n,) int64 global frame indices, strictly increasing
    depth: np.ndarray  # (n, H, W) float32 z-depth; non-finite or ≤ 0 where there is none (sky)
    extrinsics: np.ndarray  # (n, 3, 4) world-to-camera
    intrinsics: np.ndarray  # (n, 3, 3) pixels of the processed image
    conf: np.ndarray | None = None  # (n, H, W) float32, DA3 confidence (≥ 1)
    images: np.ndarray | None = None  # (n, H, W, 3) uint8 processed images (colours of the points)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames, np.int64).reshape(-1)
        n = len(frames)
        if n == 0:
            raise ValueError("a chunk needs at least one frame")
        if np.any(np.diff(frames) <= 0):
            raise ValueError("chunk frame indices must be strictly increasing")
        depth = np.asarray(self.depth)
        if depth.ndim != 3 or depth.shape[0] != n:
            raise ValueError(f"chunk depth must be ({n}, H, W), got {depth.shape}")
        shapes = {"extrinsics": (n, 3, 4), "intrinsics": (n, 3, 3)}
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name))
            if name == "extrinsics" and value.shape == (n, 4, 4):
                value = value[:, :3]
            if value.shape != shape:
                raise ValueError(f"chunk {name} must be {shape}, got {value.shape}")
            object.__setattr__(self, name, value)
        if self.conf is not None and np.shape(self.conf) != depth.shape:
            raise ValueError(f"chunk confidence {np.shape(self.conf)} does not match depth {depth.shape}")
        if self.images is not None and np.shape(self.images) != depth.shape + (3,):
            raise ValueError(f"chunk images {np.shape(self.images)} do not match depth {depth.shape}")
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "depth", depth)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.depth.shape[1]), int(self.depth.shape[2])

    def rows(self, frames: np.ndarray) -> np.ndarray:
        """Row index in this chunk of each global frame in ``frames`` (all must be present)."""
        rows = np.searchsorted(self.frames, frames)
        if np.any(rows >= len(self.frames)) or np.any(self.frames[np.minimum(rows, len(self) - 1)] != frames):
            raise ValueError("some frames are not in this chunk")
        return rows


class FrameBlock(NamedTuple):
    """Consecutive joined frames: what ``JoinedResult.iter_blocks`` yields and the solve report reads."""

    frames: np.ndarray  # (m,) int64 global frame indices
    depth: np.ndarray  # (m, H, W) float32 z-depth in chunk 0's units
    conf: np.ndarray | None  # (m, H, W) float32
    images: np.ndarray | None  # (m, H, W, 3) uint8


@dataclass(frozen=True)
class ChunkJoint:
    """The Sim(3) that maps chunk ``chunk``'s world into chunk ``chunk − 1``'s, and how well it fits.

    Residuals are 3D distances between corresponding points after the fit, in the previous chunk's
    units; ``relative_residual`` divides by the scene scale (the median depth of the overlap pixels),
    so 0.01 means 1 % of the typical camera-to-surface distance.
    """

    sim3: Sim3
    residual_rms: float  # RMS residual of the inliers (residual < Huber δ), previous chunk's units
    residual_median: float  # median residual over all correspondences
    relative_residual: float  # residual_rms / scene_scale
    inlier_fraction: float  # share of correspondences with residual < Huber δ
    n_points: int  # correspondences used
    scene_scale: float  # median depth of the overlap pixels in the previous chunk (its units)
    overlap_frames: int
    method: str = "points"  # "points" (dense robust fit) or "cameras" (fallback on the overlap cameras)
    chunk: int = -1  # index of the later chunk of the pair

    def to_dict(self) -> dict:
        """Plain JSON-able values; the Sim(3) as a 4×4 list, non-finite numbers as None."""
        d = {k: v for k, v in asdict(self).items() if k != "sim3"}
        d = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}
        d["sim3"] = self.sim3.matrix().tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ChunkJoint:
        d = {k: (float("nan") if v is None else v) for k, v in d.items()}
        return cls(**{**d, "sim3": Sim3.from_matrix(np.asarray(d["sim3"]))})


def shifted_conf(conf: np.ndarray | None, like: np.ndarray, offset: float) -> np.ndarray:
    if conf is None:
        return np.ones(like.shape, np.float32)
    return np.maximum(np.asarray(conf, np.float32) - np.float32(offset), 0.0)


def valid_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)
