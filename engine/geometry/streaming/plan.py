"""Cutting a shot into overlapping chunks of equal size."""

from __future__ import annotations


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
