"""Joining the chunks into chunk 0's world: accumulated Sim(3)s, later chunk wins on shared frames."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from ..sim3 import Sim3
from ..unproject import unproject_pixels
from .chunks import (
    CONF_OFFSET,
    MAX_FIT_POINTS,
    POINT_CONF_FRACTION,
    ChunkJoint,
    ChunkPrediction,
    FrameBlock,
    shifted_conf,
    valid_depth,
)
from .fit import fit_chunk_transform
from .store import ChunkStore


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
    ``known_world``: every chunk is already in the shared world of known cameras, so each joint is the
    identity, only measured (``fit_chunk_transform(known=True)``).
    """

    def __init__(
        self,
        store: ChunkStore,
        *,
        points_per_frame: int = 1000,
        max_fit_points: int = MAX_FIT_POINTS,
        conf_offset: float = CONF_OFFSET,
        seed: int = 0,
        known_world: bool = False,
    ):
        self.store = store
        self.known_world = bool(known_world)
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
                known=self.known_world,
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
        c = shifted_conf(conf, depth, self.conf_offset)
        ok = valid_depth(depth)
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
