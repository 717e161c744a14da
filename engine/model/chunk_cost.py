"""How long a chunk of frames takes through a DA3 network, and the chunking of a shot that takes least time
(issue 13; pure Python: the constants are measured by ``model.calibrate``).

A chunk of ``c`` frames costs ``T(c) = a·c + b·c²`` seconds: ``a`` is everything linear in the frames
(patch embedding, the per-view blocks, every block's projections and MLP, the dense head, the camera
decoder), ``b·c²`` the global blocks' attention over all ``c·tokens`` tokens at once. A shot of ``n``
frames in chunks of ``c`` overlapping by ``o`` runs ``k = 1 + ⌈(n − c)/(c − o)⌉`` chunks (the last one is
moved back to end on the last frame, ``geometry.streaming.plan_chunks``), so overlap frames are computed
twice. Long chunks pay the quadratic term, short ones the overlap: the best chunk is in between, and
with memory-sized chunks (120 frames) the quadratic term is most of the time even on a CPU.

The join needs overlap frames to fit each chunk's Sim(3) to the previous one on dense depth:
``MIN_OVERLAP`` frames give it parallax (not one view's depth) and many thousands of points; a chunk is at
least ``MIN_CHUNK`` frames so that most of each chunk is new frames and the network sees some context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MIN_CHUNK", "MIN_OVERLAP", "NEAR_BEST", "ChunkCost", "ChunkPlan", "chunk_count", "plan_shot"]

MIN_OVERLAP = 8  # frames the join fits on, at least (the join tests fit exactly on 8)
MIN_CHUNK = 16  # frames per chunk, at least (half of them new at the minimum overlap)
NEAR_BEST = 1.05  # among plans within 5 % of the fastest, the one with the longest chunks (fewer joints)


@dataclass(frozen=True)
class ChunkCost:
    """Seconds of one chunk of ``c`` frames: ``frame_s·c + pair_s·c²`` (measured per device, model, size,
    precision and thread count)."""

    frame_s: float  # a: seconds per frame, the part linear in the chunk
    pair_s: float  # b: seconds per frame pair, the global attention

    def chunk_seconds(self, frames: int) -> float:
        return self.frame_s * frames + self.pair_s * frames * frames

    def to_dict(self) -> dict[str, float]:
        return {"frame_s": self.frame_s, "pair_s": self.pair_s}


@dataclass(frozen=True)
class ChunkPlan:
    chunk: int  # frames per chunk
    overlap: int  # frames shared by consecutive chunks
    chunks: int  # how many chunks the shot runs
    seconds: float | None  # expected network seconds of the shot (None without a cost model)
    frames: int  # frames of the shot

    @property
    def seconds_per_frame(self) -> float | None:
        return None if self.seconds is None else self.seconds / max(self.frames, 1)


def chunk_count(frames: int, chunk: int, overlap: int) -> int:
    """How many chunks ``plan_chunks(frames, chunk, overlap)`` makes."""
    if frames <= chunk:
        return 1
    return 1 + math.ceil((frames - chunk) / (chunk - overlap))


def _widest_overlap(frames: int, chunk: int, chunks: int, least: int) -> int:
    """The largest overlap that keeps ``chunks`` chunks of ``chunk`` frames (the same time, a better join)."""
    if chunks <= 1:
        return least
    widest = chunk - math.ceil((frames - chunk) / (chunks - 1))
    return max(least, min(widest, chunk - 1))


def plan_shot(
    frames: int,
    cost: ChunkCost | None,
    *,
    max_chunk: int,
    chunk: int | None = None,
    overlap: int | None = None,
    min_chunk: int = MIN_CHUNK,
    min_overlap: int = MIN_OVERLAP,
) -> ChunkPlan:
    """The chunking of ``frames`` frames that takes least time under ``cost``, within ``max_chunk``
    (what fits in memory). A given ``chunk`` or ``overlap`` (the user's) is kept; without a cost model
    the chunk is ``max_chunk`` and the overlap half of it (DA3-Streaming's rule)."""
    n = int(frames)
    if n < 1:
        raise ValueError(f"a shot needs at least one frame, got {frames}")
    if chunk is not None:
        candidates = [int(chunk)]
    elif cost is None:
        candidates = [int(max_chunk)]
    else:
        top = max(1, min(int(max_chunk), n))
        low = min(int(min_chunk), top)
        candidates = list(range(low, top + 1))
    plans = []
    for c in candidates:
        if overlap is not None:
            least = int(overlap)
        elif cost is None:
            least = min(c - 1, max(2, c // 2)) if c > 1 else 1
        else:  # a chunk shorter than two overlaps (little memory) shares half of itself, as before
            least = min(int(min_overlap), max(1, c // 2))
        least = max(1, min(least, c - 1)) if c > 1 else 1
        k = chunk_count(n, c, least)
        o = least if (overlap is not None or cost is None) else _widest_overlap(n, c, k, least)
        seconds = None if cost is None else k * cost.chunk_seconds(min(c, n))
        plans.append(ChunkPlan(c, o, k, seconds, n))
    if cost is None or len(plans) == 1:
        return plans[0]
    best = min(p.seconds for p in plans)
    near = [p for p in plans if p.seconds <= NEAR_BEST * best]
    return max(near, key=lambda p: (p.chunk, -p.seconds))
