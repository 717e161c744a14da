"""Long shots in overlapping chunks: plan, spill to disk, join with robust Sim(3)s (numpy only).

The network sees a bounded number of frames at a time (a *chunk*); consecutive chunks share
``overlap`` frames. Each chunk comes back in its own world frame and units (DA3 picks a reference
view per chunk), so the chunks are joined like DA3-Streaming does (DA3_SPEC.md §7,
FORK_AND_PIPELINES.md §4):

1. ``plan_chunks`` cuts ``n`` frames into ranges ``[0, c), [c − o, 2c − o), …``. Unlike
   DA3-Streaming, whose last chunk is truncated (possibly to a handful of new frames), our last
   chunk is moved back to end at the last frame with the full size: every network call sees
   ``chunk_size`` frames (predictable memory, the same context for every chunk) and the last joint
   gets a larger overlap.
2. ``fit_chunk_transform`` back-projects the overlap frames of both chunks through the *same*
   pixels (so the correspondences are pixel-aligned), keeps pixels where both confidences exceed
   ``0.1 · min(median conf)`` and both depths are valid, weights them by ``√(conf₁·conf₂)`` and
   fits the Sim(3) *next chunk's world → previous chunk's world* with ``robust_sim3`` (Huber IRLS),
   then refits it on the inliers with DA3-Streaming's spread-ratio scale (see the code: this
   removes two biases that would otherwise add up from joint to joint).
3. ``StreamingJoiner`` / ``join_chunks`` accumulate the joints to chunk 0's world. A frame that two
   chunks share takes the *later* chunk's estimate (the DA3-Streaming rule), consistently for
   pose, intrinsics and depth; a frame's depth from chunk ``k`` is multiplied by chunk ``k``'s
   accumulated scale.

Memory stays flat in the number of frames: chunk predictions live in ``.npz`` files of a job
folder (``ChunkStore``), the joiner holds at most two chunks, and the joined per-frame depth is
written part by part (with a reduced point cloud of those frames) as soon as a chunk's frames
are final. Only small per-frame arrays (poses, intrinsics, scales) stay in memory.

Confidence: DA3's any-view confidence is ``1 + exp(·) ≥ 1``; like DA3-Streaming (``conf −= 1``) we
subtract ``conf_offset = 1`` before thresholds and weights. A chunk without confidence counts every
valid pixel as equally confident. Invalid depth (sky, holes) is non-finite or ≤ 0.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .cameras import camera_centers
from .sim3 import DegenerateAlignment, Sim3, robust_sim3
from .unproject import unproject_pixels

__all__ = [
    "ChunkJoint",
    "ChunkPrediction",
    "ChunkStore",
    "FrameBlock",
    "InsufficientMemory",
    "JoinedResult",
    "StreamingJoiner",
    "chunk_size_for_memory",
    "estimate_chunk_bytes",
    "fit_chunk_transform",
    "join_chunks",
    "plan_chunks",
]

CONF_OFFSET = 1.0  # DA3 confidence is 1 + exp(logit); DA3-Streaming uses conf − 1
CONF_FRACTION = 0.1  # keep pixels whose confidence exceeds 0.1 · min(median conf) (DA3-Streaming)
HUBER_RELATIVE = 0.1  # Huber δ as a fraction of the scene scale (median overlap depth)
MAX_FIT_POINTS = 100_000  # correspondences per joint after subsampling
MIN_FIT_POINTS = 64  # fewer confident correspondences: fall back to the overlap cameras
POINT_CONF_FRACTION = 0.75  # the reduced cloud keeps conf ≥ 0.75 · mean conf (DA3-Streaming's PLYs)


# ---------------------------------------------------------------------------------------------- planning


def plan_chunks(n_frames: int, chunk_size: int, overlap: int) -> list[range]:
    """Overlapping frame ranges covering ``range(n_frames)``.

    Chunks start every ``chunk_size − overlap`` frames. The last chunk ends at ``n_frames`` and keeps
    the full ``chunk_size`` (it is moved back, so its overlap with the previous chunk may exceed
    ``overlap``). ``n_frames ≤ chunk_size`` gives one chunk. Raises ``ValueError`` for sizes that cannot
    be joined (an overlap of at least one frame is needed to fit the joint).
    """
    n, c, o = int(n_frames), int(chunk_size), int(overlap)
    if n < 1:
        raise ValueError(f"a shot needs at least one frame, got {n_frames}")
    if c < 2:
        raise ValueError(f"chunk size must be at least 2 frames, got {chunk_size}")
    if not 1 <= o < c:
        raise ValueError(
            f"chunk overlap must be at least 1 frame and smaller than the chunk size ({c}), got {overlap}; "
            "half the chunk size is a good choice"
        )
    if n <= c:
        return [range(0, n)]
    step = c - o
    starts = list(range(0, n - c, step)) + [n - c]
    return [range(s, s + c) for s in starts]


class InsufficientMemory(ValueError):
    """Not even a minimal chunk fits in the memory available."""


# Unique parameter counts (DA3_SPEC.md §1.5) and the shapes that drive activation memory.
_PARAMS = {
    "da3-small": 34_299_463,
    "da3-base": 135_366_599,
    "da3-large": 410_941_767,
    "da3-giant": 1_355_674_125,
    "da3metric-large": 334_171_394,
    "da3mono-large": 334_171_394,
    "da3nested-giant-large": 1_689_845_519,
}
_NESTED_PARTS = ("da3-giant", "da3metric-large")


HEAD_VIEWS = 4  # engine/model/network.py runs the DPT head on 4 views at a time (``head_chunk``)


def _preset_bytes(model_name: str, h: int, w: int, dtype_bytes: int) -> tuple[float, float]:
    """(bytes per frame, bytes independent of the frame count) of one network, weights excluded."""
    from ..model.presets import get_preset  # plain dataclasses, no torch

    p = get_preset(model_name)
    tokens = (h // 14) * (w // 14) + 1
    c = p.backbone.embed_dim
    ch = 2 * c if p.backbone.cat_token else c  # channels of an exported layer
    # Backbone, every frame at once: the four exported layers (fp32 copies for the head, plus the
    # run-precision originals while they are converted) and one block's working set (≈ 8 C values:
    # x, norm, qkv, attention, MLP hidden; measured ≈ 6 C on the CPU).
    exported = 4 * ch * (4 if dtype_bytes == 4 else 4 + dtype_bytes)
    per_token = exported + 8 * c * dtype_bytes
    # Inputs and outputs per pixel: float32 input, uint8 and normalised copies, depth and confidence
    # in torch and numpy: ≈ 48 bytes.
    per_frame = tokens * per_token + 48 * h * w
    # DPT head (fp32, HEAD_VIEWS views at a time): ≈ 0.6 F + 100 float32 values per pixel and view.
    head = HEAD_VIEWS * h * w * (0.6 * p.head.features + 100) * 4
    return per_frame, head


def _weight_bytes(model_name: str, dtype_bytes: int) -> float:
    # Backbone matmul weights are held in the run precision, the rest in fp32 (engine/model/loading.py);
    # about 70 % of the parameters are backbone matmuls.
    return _PARAMS[model_name] * (0.7 * dtype_bytes + 0.3 * 4)


def estimate_chunk_bytes(model_name: str, chunk_size: int, H: int, W: int, dtype_bytes: int = 2) -> float:
    """Estimated peak bytes to run ``chunk_size`` frames of ``H × W`` (processed size) through a preset.

    Weights + the DPT head's working set (a few views at a time) + ``chunk_size`` × per-frame memory;
    see ``chunk_size_for_memory`` for the model and how it was checked.
    """
    if model_name not in _PARAMS:
        raise ValueError(f"unknown DA3 preset {model_name!r}; known presets: {', '.join(_PARAMS)}")
    parts = _NESTED_PARTS if model_name == "da3nested-giant-large" else (model_name,)
    costs = [_preset_bytes(m, H, W, dtype_bytes) for m in parts]
    # The nested model runs its parts one after the other; the first part's outputs (≈ 48 B/pixel)
    # wait while the second runs.
    per_frame = max(c[0] for c in costs) + 48 * H * W * (len(parts) - 1)
    fixed = _weight_bytes(model_name, dtype_bytes) + max(c[1] for c in costs)
    return fixed + chunk_size * per_frame


def chunk_size_for_memory(
    available_bytes: float,
    H: int,
    W: int,
    model_name: str,
    *,
    user_chunk_size: int | None = None,
    dtype_bytes: int = 2,
    headroom: float = 0.8,
    min_chunk: int = 4,
    max_chunk: int = 120,
) -> int:
    """How many frames of ``H × W`` (processed pixels) fit in ``available_bytes`` for a preset.

    A user's chunk size (``user_chunk_size``) always wins. Otherwise an analytic estimate
    (``estimate_chunk_bytes``), meant to err on the safe side:

    * fixed: the weights (parameter counts of DA3_SPEC.md §1.5; backbone matmuls in the run
      precision ``dtype_bytes`` — 2 under CUDA autocast, 4 for fp32 on the CPU — the rest fp32)
      and the DPT head, which runs in fp32 on 4 views at a time: ≈ (0.6·F + 100) values per pixel;
    * per frame: the backbone sees every frame at once (attention through SDPA is linear in the
      tokens): the four exported layers kept for the head and one block's working set, ≈ 16·C
      (+ 8·C·``dtype_bytes`` when converting) bytes per patch token; plus ≈ 48 bytes per pixel of
      inputs and outputs. The nested model counts its larger part, plus the outputs it holds.

    Checked against the peak resident memory of our network on the CPU (fp32, 280×504, 6 and 12
    frames, weights excluded): per frame da3-small 20 MiB measured / 23 MiB estimated, da3-base
    43 / 40 MiB; fixed part small 295 / 298 MiB, base 371 / 381 MiB. Not checked on a GPU yet,
    whose allocator and cuDNN workspaces add their own overhead: hence the ``headroom``.

    Only ``headroom`` of what is left after the weights is planned (allocator fragmentation,
    cuDNN workspaces). The result is clamped to ``[min_chunk, max_chunk]`` (120 is DA3-Streaming's
    default chunk); ``InsufficientMemory`` when not even ``min_chunk`` frames fit.
    """
    if user_chunk_size is not None:
        if int(user_chunk_size) < 2:
            raise ValueError(f"chunk size must be at least 2 frames, got {user_chunk_size}")
        return int(user_chunk_size)
    if H < 14 or W < 14:
        raise ValueError(f"processed image size must be at least 14×14 pixels, got {H}×{W}")
    fixed = estimate_chunk_bytes(model_name, 0, H, W, dtype_bytes)
    per_frame = estimate_chunk_bytes(model_name, 1, H, W, dtype_bytes) - fixed
    budget = (float(available_bytes) - fixed) * headroom
    n = int(budget // per_frame) if budget > 0 else 0
    if n < min_chunk:
        need = fixed + min_chunk * per_frame / headroom
        raise InsufficientMemory(
            f"{model_name} at {W}×{H} needs about {need / 2**30:.1f} GiB for {min_chunk} frames, but only "
            f"{available_bytes / 2**30:.1f} GiB is available: lower the processing resolution, pick a "
            "smaller model, or set a chunk size by hand"
        )
    return min(n, max_chunk)


# ---------------------------------------------------------------------------------------------- data


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


# ---------------------------------------------------------------------------------------------- store


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class ChunkStore:
    """Chunk predictions and joined results as files in a job folder (uncompressed ``.npz``, no pickle).

    Layout::

        chunk_0000.npz    ChunkPrediction of chunk 0 (frames, depth, conf, extrinsics, intrinsics, images)
        joined_0000.npz   the joined frames that chunk 0 provides: frames, depth (× scale), conf, images
        points_0000.npz   reduced point cloud of those frames in chunk 0's world: xyz, rgb, conf, frame
        cameras.npz       joined per-frame cameras (see ``JoinedResult``)
        joints.json       the chunk joints

    Every file is written under a temporary name and moved into place, so a crash never leaves a
    half-written chunk that looks complete.
    """

    _CHUNK = re.compile(r"^chunk_(\d{4,})\.npz$")

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ChunkStore({str(self.folder)!r}, chunks={len(self)})"

    def _path(self, kind: str, index: int) -> Path:
        if int(index) < 0:
            raise ValueError(f"chunk index must be ≥ 0, got {index}")
        return self.folder / f"{kind}_{int(index):04d}.npz"

    # raw chunks -----------------------------------------------------------------------------------
    def write_chunk(self, index: int, chunk: ChunkPrediction) -> Path:
        arrays = {
            "frames": chunk.frames,
            "depth": np.asarray(chunk.depth, np.float32),
            "extrinsics": np.asarray(chunk.extrinsics, np.float64),
            "intrinsics": np.asarray(chunk.intrinsics, np.float64),
        }
        if chunk.conf is not None:
            arrays["conf"] = np.asarray(chunk.conf, np.float32)
        if chunk.images is not None:
            arrays["images"] = np.asarray(chunk.images, np.uint8)
        path = self._path("chunk", index)
        _atomic_savez(path, **arrays)
        return path

    def read_chunk(self, index: int) -> ChunkPrediction:
        path = self._path("chunk", index)
        if not path.is_file():
            raise FileNotFoundError(f"chunk {index} is missing from {self.folder}; run its prediction again")
        z = _load_npz(path)
        return ChunkPrediction(
            z["frames"], z["depth"], z["extrinsics"], z["intrinsics"], z.get("conf"), z.get("images")
        )

    def has_chunk(self, index: int) -> bool:
        return self._path("chunk", index).is_file()

    def chunk_indices(self) -> list[int]:
        found = (self._CHUNK.match(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def delete_chunk(self, index: int) -> None:
        self._path("chunk", index).unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.chunk_indices())

    def __iter__(self) -> Iterator[ChunkPrediction]:
        """Chunks in index order, one at a time (each read when the iteration reaches it)."""
        for index in self.chunk_indices():
            yield self.read_chunk(index)

    # joined output --------------------------------------------------------------------------------
    def write_joined_part(self, part: int, block: FrameBlock, points: dict[str, np.ndarray]) -> None:
        """The joined frames one chunk provides (depth already scaled) and their reduced points."""
        arrays = {"frames": np.asarray(block.frames, np.int64), "depth": np.asarray(block.depth, np.float32)}
        if block.conf is not None:
            arrays["conf"] = np.asarray(block.conf, np.float32)
        if block.images is not None:
            arrays["images"] = np.asarray(block.images, np.uint8)
        _atomic_savez(self._path("joined", part), **arrays)
        xyz, rgb, point_conf, point_frame = (points[k] for k in ("xyz", "rgb", "conf", "frame"))
        _atomic_savez(
            self._path("points", part),
            xyz=np.asarray(xyz, np.float32),
            rgb=np.asarray(rgb, np.uint8),
            conf=np.asarray(point_conf, np.float32),
            frame=np.asarray(point_frame, np.int64),
        )

    _JOINED = re.compile(r"^((joined|points)_\d{4,}\.npz|cameras\.npz|joints\.json)$")

    def clear_joined(self) -> None:
        """Remove joined parts, points and cameras of an earlier join (the raw chunks stay)."""
        for path in self.folder.iterdir():
            if self._JOINED.match(path.name):
                path.unlink()

    def joined_parts(self) -> list[int]:
        pattern = re.compile(r"^joined_(\d{4,})\.npz$")
        return sorted(int(m.group(1)) for m in (pattern.match(p.name) for p in self.folder.iterdir()) if m)

    def read_joined_part(self, part: int) -> FrameBlock:
        z = _load_npz(self._path("joined", part))
        return FrameBlock(z["frames"], z["depth"], z.get("conf"), z.get("images"))

    def read_points_part(self, part: int) -> dict[str, np.ndarray]:
        return _load_npz(self._path("points", part))

    def write_cameras(self, arrays: dict[str, np.ndarray], joints: list[ChunkJoint]) -> None:
        _atomic_savez(self.folder / "cameras.npz", **arrays)
        tmp = self.folder / "joints.json.tmp"
        tmp.write_text(json.dumps([j.to_dict() for j in joints], indent=1), encoding="utf-8")
        os.replace(tmp, self.folder / "joints.json")

    def read_cameras(self) -> tuple[dict[str, np.ndarray], list[ChunkJoint]]:
        path = self.folder / "cameras.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{self.folder} holds no joined cameras; join the chunks first")
        joints = json.loads((self.folder / "joints.json").read_text(encoding="utf-8"))
        return _load_npz(path), [ChunkJoint.from_dict(j) for j in joints]


# ---------------------------------------------------------------------------------------------- fitting


def _shifted_conf(conf: np.ndarray | None, like: np.ndarray, offset: float) -> np.ndarray:
    if conf is None:
        return np.ones(like.shape, np.float32)
    return np.maximum(np.asarray(conf, np.float32) - np.float32(offset), 0.0)


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def _sim3_from_cameras(prev: ChunkPrediction, nxt: ChunkPrediction, frames: np.ndarray) -> Sim3:
    """Sim(3) next → prev from the overlap cameras alone (a fallback when too few pixels are usable).

    A camera seen in both worlds fixes ``R = R_pᵀ R_n`` (chordal mean over the overlap frames) and
    ``C_p = s R C_n + t``; the scale is the median ratio of the two depth maps (1 without depth).
    """
    ip, jn = prev.rows(frames), nxt.rows(frames)
    rp = np.asarray(prev.extrinsics[ip, :, :3], np.float64)
    rn = np.asarray(nxt.extrinsics[jn, :, :3], np.float64)
    u, _, vt = np.linalg.svd(np.einsum("fji,fjk->ik", rp, rn))
    rot = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    dp, dn = prev.depth[ip], nxt.depth[jn]
    ok = _valid_depth(dp) & _valid_depth(dn)
    s = float(np.median(dp[ok] / dn[ok])) if ok.any() else 1.0
    cp, cn = camera_centers(prev.extrinsics[ip]), camera_centers(nxt.extrinsics[jn])
    t = np.mean(cp - s * cn @ rot.T, axis=0)
    return Sim3(s, rot, t)


def _unproject_flat(idx: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """World points (M, 3) of the sorted flat pixel indices ``idx`` into ``depth (m, H, W)``, frame by frame.

    One camera per frame (no per-point matrices), so memory stays at a few arrays of (M, 3).
    """
    m, h, w = depth.shape
    f, v, u = np.unravel_index(idx, depth.shape)
    out = np.empty((len(idx), 3))
    bounds = np.searchsorted(f, np.arange(m + 1))
    for i in range(m):
        a, b = bounds[i], bounds[i + 1]
        if b > a:
            pix = np.stack([u[a:b], v[a:b]], -1)
            out[a:b] = unproject_pixels(pix, depth[i].reshape(-1)[idx[a:b] - i * h * w], K[i], w2c[i])
    return out


def fit_chunk_transform(
    prev_chunk: ChunkPrediction,
    next_chunk: ChunkPrediction,
    overlap_frames: np.ndarray | None = None,
    *,
    max_points: int = MAX_FIT_POINTS,
    conf_offset: float = CONF_OFFSET,
    huber_relative: float = HUBER_RELATIVE,
    seed: int = 0,
) -> ChunkJoint:
    """Robust Sim(3) mapping ``next_chunk``'s world into ``prev_chunk``'s, from their shared frames.

    overlap_frames: (m,) global frame indices in both chunks (default: every shared frame).
    Pixels are kept where both depths are valid and both confidences (less ``conf_offset``) exceed
    ``0.1 · min(median conf)``; at most ``max_points`` of them (a deterministic random subset,
    ``seed``) are back-projected through each chunk's camera for that frame, weighted by
    ``√(conf_p·conf_n)`` and fitted with ``robust_sim3`` (Huber δ = ``huber_relative`` × scene
    scale, the median depth of the kept pixels in the previous chunk), then refitted on the pairs
    within δ with the spread-ratio scale (``scale_method="rms"``; see the comment in the code).
    With fewer than ``MIN_FIT_POINTS`` usable pixels (or a degenerate set), the joint falls back to
    the overlap cameras (``method="cameras"``).
    """
    if overlap_frames is None:
        overlap_frames = np.intersect1d(prev_chunk.frames, next_chunk.frames)
    frames = np.asarray(overlap_frames, np.int64).reshape(-1)
    if len(frames) == 0:
        raise ValueError(
            f"chunks ending at frame {prev_chunk.frames[-1]} and starting at frame {next_chunk.frames[0]} "
            "share no frame: give consecutive chunks an overlap of at least one frame"
        )
    if prev_chunk.image_hw != next_chunk.image_hw:
        raise ValueError(
            f"chunks were processed at different sizes ({prev_chunk.image_hw} and {next_chunk.image_hw}); "
            "process every chunk of a shot at the same resolution"
        )
    ip, jn = prev_chunk.rows(frames), next_chunk.rows(frames)
    dp = np.asarray(prev_chunk.depth[ip], np.float32)  # (m, H, W)
    dn = np.asarray(next_chunk.depth[jn], np.float32)
    cp = _shifted_conf(None if prev_chunk.conf is None else prev_chunk.conf[ip], dp, conf_offset)
    cn = _shifted_conf(None if next_chunk.conf is None else next_chunk.conf[jn], dn, conf_offset)
    valid = _valid_depth(dp) & _valid_depth(dn)
    if valid.any():
        thr = CONF_FRACTION * min(float(np.median(cp[valid])), float(np.median(cn[valid])))
        valid &= (cp > thr) & (cn > thr)
    idx = np.flatnonzero(valid)
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=int(max_points), replace=False))

    def cameras_fallback() -> ChunkJoint:
        return ChunkJoint(
            _sim3_from_cameras(prev_chunk, next_chunk, frames),
            *(float("nan"),) * 3,
            0.0,
            int(len(idx)),
            float(np.median(dp[valid])) if valid.any() else float("nan"),
            len(frames),
            method="cameras",
        )

    if len(idx) < MIN_FIT_POINTS:
        return cameras_fallback()
    xp = _unproject_flat(idx, dp, prev_chunk.intrinsics[ip], prev_chunk.extrinsics[ip])
    xn = _unproject_flat(idx, dn, next_chunk.intrinsics[jn], next_chunk.extrinsics[jn])
    weights = np.sqrt(cp.reshape(-1)[idx].astype(np.float64) * cn.reshape(-1)[idx])
    scene_scale = float(np.median(dp.reshape(-1)[idx]))
    delta = huber_relative * scene_scale
    try:
        sim, resid = robust_sim3(xn, xp, weights, delta=delta)
        inlier = resid < delta
        # Refit on the inliers alone with DA3-Streaming's spread-ratio scale: Huber leaves gross
        # outliers a weight δ/r (a small pull), and Umeyama's scale shrinks with the noise of the
        # source points (regression dilution: σ²_src grows, the covariance does not), which
        # compounds from joint to joint. The spread ratio is unbiased when both chunks are equally
        # noisy, and its own weakness, outliers, is gone once only inliers remain.
        if inlier.sum() >= MIN_FIT_POINTS:
            sim, _ = robust_sim3(xn[inlier], xp[inlier], weights[inlier], delta=delta, scale_method="rms")
            resid = np.linalg.norm(xp - sim.apply(xn), axis=1)
    except DegenerateAlignment:
        return cameras_fallback()
    inlier = resid < delta
    rms = float(np.sqrt(np.average(resid[inlier] ** 2, weights=weights[inlier]))) if inlier.any() else np.inf
    return ChunkJoint(
        sim3=sim,
        residual_rms=rms,
        residual_median=float(np.median(resid)),
        relative_residual=rms / scene_scale,
        inlier_fraction=float(inlier.mean()),
        n_points=int(len(idx)),
        scene_scale=scene_scale,
        overlap_frames=len(frames),
    )


# ---------------------------------------------------------------------------------------------- joining


@dataclass(frozen=True)
class JoinedResult:
    """A whole shot in chunk 0's world: per-frame cameras in memory, depth and points in ``store``.

    Frame ``frames[i]`` comes from chunk ``chunk_of_frame[i]`` (the later chunk where two overlap);
    its depth in this world is that chunk's depth × ``depth_scale[i]`` (already applied in the
    joined parts of the store).
    """

    frames: np.ndarray  # (F,) int64 global frame indices, increasing
    extrinsics: np.ndarray  # (F, 3, 4) float64 world-to-camera in chunk 0's world
    intrinsics: np.ndarray  # (F, 3, 3) float64 processed pixels
    depth_scale: np.ndarray  # (F,) float64 accumulated scale of the source chunk
    chunk_of_frame: np.ndarray  # (F,) int32
    chunk_transforms: tuple[Sim3, ...]  # chunk k's world → chunk 0's world
    joints: tuple[ChunkJoint, ...]  # joint k−1/k for k = 1 … K−1
    image_hw: tuple[int, int]
    store: ChunkStore = field(repr=False)

    def __len__(self) -> int:
        return len(self.frames)

    def iter_blocks(self) -> Iterator[FrameBlock]:
        """The joined frames in order, one part (one chunk's own frames) at a time."""
        for part in self.store.joined_parts():
            yield self.store.read_joined_part(part)

    def points(self) -> dict[str, np.ndarray]:
        """The reduced point cloud of the shot: ``xyz (M, 3)``, ``rgb (M, 3)``, ``conf (M,)``, ``frame (M,)``."""
        parts = [self.store.read_points_part(p) for p in self.store.joined_parts()]
        return {k: np.concatenate([p[k] for p in parts]) for k in ("xyz", "rgb", "conf", "frame")}

    @classmethod
    def load(cls, store: ChunkStore) -> JoinedResult:
        """A joined result written earlier into ``store``."""
        a, joints = store.read_cameras()
        transforms = tuple(Sim3.from_matrix(m) for m in a["chunk_transforms"])
        return cls(
            a["frames"],
            a["extrinsics"],
            a["intrinsics"],
            a["depth_scale"],
            a["chunk_of_frame"],
            transforms,
            tuple(joints),
            (int(a["image_hw"][0]), int(a["image_hw"][1])),
            store,
        )


class StreamingJoiner:
    """Joins chunks as they arrive, holding at most two, writing each chunk's final frames at once.

    ``add(chunk)`` fits the joint to the previous chunk (if any) and writes the previous chunk's
    own frames (those the new chunk does not also hold) to the store; ``finish()`` writes the last
    chunk's frames and the joined cameras, and returns the ``JoinedResult``. ``points_per_frame``
    bounds the reduced point cloud (confident pixels, ≥ 0.75 · mean confidence, drawn at random).
    """

    def __init__(
        self,
        store: ChunkStore,
        *,
        points_per_frame: int = 1000,
        max_fit_points: int = MAX_FIT_POINTS,
        conf_offset: float = CONF_OFFSET,
        seed: int = 0,
    ):
        self.store = store
        self.points_per_frame = int(points_per_frame)
        self.max_fit_points = int(max_fit_points)
        self.conf_offset = float(conf_offset)
        self.seed = int(seed)
        self._prev: ChunkPrediction | None = None
        self._acc: list[Sim3] = []
        self._joints: list[ChunkJoint] = []
        self._cams: list[tuple[np.ndarray, ...]] = []  # per written part: frames, w2c, K, scale, chunk
        self._hw: tuple[int, int] | None = None
        store.clear_joined()

    def add(self, chunk: ChunkPrediction) -> ChunkJoint | None:
        """Add the next chunk (in frame order); returns its joint to the previous chunk (None for the first)."""
        if self._hw is None:
            self._hw = chunk.image_hw
        joint = None
        if self._prev is None:
            self._acc.append(Sim3())
        else:
            if chunk.frames[0] <= self._prev.frames[0] or chunk.frames[-1] <= self._prev.frames[-1]:
                raise ValueError(
                    "chunks must be added in frame order, each one reaching further than the last"
                )
            k = len(self._acc)
            joint = fit_chunk_transform(
                self._prev,
                chunk,
                max_points=self.max_fit_points,
                conf_offset=self.conf_offset,
                seed=self.seed + k,
            )
            joint = replace(joint, chunk=k)
            self._joints.append(joint)
            self._acc.append(self._acc[-1].compose(joint.sim3))
            own = ~np.isin(self._prev.frames, chunk.frames)
            self._emit(self._prev, own, k - 1)
        self._prev = chunk
        return joint

    def _emit(self, chunk: ChunkPrediction, rows: np.ndarray, k: int) -> None:
        """Write the frames ``rows`` (bool (n,)) of chunk ``k`` into chunk 0's world."""
        acc = self._acc[k]
        frames = chunk.frames[rows]
        w2c = acc.transform_extrinsics(np.asarray(chunk.extrinsics[rows], np.float64))
        intr = np.asarray(chunk.intrinsics[rows], np.float64)
        depth = acc.scale_depth(np.asarray(chunk.depth[rows], np.float32))
        conf = None if chunk.conf is None else np.asarray(chunk.conf[rows], np.float32)
        images = None if chunk.images is None else chunk.images[rows]
        points = self._sample_points(frames, depth, conf, images, intr, w2c, k)
        self.store.write_joined_part(k, FrameBlock(frames, depth, conf, images), points)
        m = len(frames)
        self._cams.append((frames, w2c, intr, np.full(m, acc.s), np.full(m, k, np.int32)))

    def _sample_points(self, frames, depth, conf, images, intr, w2c, k):
        """Up to ``points_per_frame`` confident pixels per frame, unprojected (already in chunk 0's world)."""
        m, h, w = depth.shape
        c = _shifted_conf(conf, depth, self.conf_offset)
        ok = _valid_depth(depth)
        if ok.any() and conf is not None:
            ok &= c >= POINT_CONF_FRACTION * float(c[ok].mean())
        keys = np.random.default_rng(self.seed + 7919 * (k + 1)).random((m, h * w))
        keys[~ok.reshape(m, -1)] = np.inf
        take = min(self.points_per_frame, h * w)
        cols = np.argpartition(keys, take - 1, axis=1)[:, :take] if take > 0 else np.zeros((m, 0), int)
        keep = np.isfinite(np.take_along_axis(keys, cols, axis=1))
        f = np.repeat(np.arange(m), take).reshape(m, take)[keep]
        flat = cols[keep]
        v, u = np.divmod(flat, w)
        xyz = unproject_pixels(np.stack([u, v], -1), depth[f, v, u], intr[f], w2c[f])
        rgb = images[f, v, u] if images is not None else np.full((len(f), 3), 160, np.uint8)
        return {"xyz": xyz, "rgb": rgb, "conf": c[f, v, u], "frame": frames[f]}

    def finish(self) -> JoinedResult:
        """Write the last chunk and the joined cameras; the result reads depth and points from the store."""
        if self._prev is None:
            raise ValueError("no chunk was added; nothing to join")
        self._emit(self._prev, np.ones(len(self._prev), bool), len(self._acc) - 1)
        self._prev = None
        frames, w2c, intr, scale, chunk = (np.concatenate(a) for a in zip(*self._cams, strict=True))
        arrays = {
            "frames": frames,
            "extrinsics": w2c,
            "intrinsics": intr,
            "depth_scale": scale,
            "chunk_of_frame": chunk,
            "chunk_transforms": np.stack([a.matrix() for a in self._acc]),
            "image_hw": np.asarray(self._hw, np.int64),
        }
        self.store.write_cameras(arrays, self._joints)
        return JoinedResult(
            frames,
            w2c,
            intr,
            scale,
            chunk,
            tuple(self._acc),
            tuple(self._joints),
            self._hw,
            self.store,
        )


def join_chunks(store: ChunkStore, **options) -> JoinedResult:
    """Join every chunk in ``store`` (in index order, two in memory at a time); see ``StreamingJoiner``."""
    if len(store) == 0:
        raise FileNotFoundError(f"{store.folder} holds no chunk predictions; run the chunks first")
    joiner = StreamingJoiner(store, **options)
    for chunk in store:
        joiner.add(chunk)
    return joiner.finish()
