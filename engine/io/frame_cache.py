"""Processed frames of a long shot, spilled to one raw file and read back by position (numpy only).

A shot job decodes its video once, shrinks each frame to the network's size as it comes and appends
it here; each chunk then reads its frames back. The pixels live in the file (and the OS page
cache), never all in the process: only a few integers per frame stay in memory. Reads are plain
``seek`` + ``readinto`` into a fresh array, not a persistent memory map, so resident memory does not
grow with the frames a job has touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["FrameCache"]


class FrameCache:
    """Append-only uint8 RGB frames ``(h, w, 3)`` (sizes may differ) in the raw file ``path``.

    >>> with FrameCache(folder / "frames.raw") as cache:   # doctest: +SKIP
    ...     i = cache.append(image)
    ...     again = cache.read(i)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w+b")  # closed by close()
        self._offsets: list[int] = []
        self._shapes: list[tuple[int, int]] = []
        self._end = 0

    def __enter__(self) -> FrameCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def nbytes(self) -> int:
        """Bytes of pixels in the file."""
        return self._end

    def shape(self, index: int) -> tuple[int, int, int]:
        """(h, w, 3) of frame ``index``."""
        h, w = self._shapes[index]
        return h, w, 3

    def append(self, image: np.ndarray) -> int:
        """Write one (h, w, 3) uint8 frame at the end of the file; returns its position."""
        a = np.ascontiguousarray(image)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"frames must be (h, w, 3) uint8 RGB, got {a.dtype} {a.shape}")
        self._file.seek(self._end)
        self._file.write(a.data)
        self._offsets.append(self._end)
        self._shapes.append((a.shape[0], a.shape[1]))
        self._end += a.nbytes
        return len(self._offsets) - 1

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as a new (h, w, 3) uint8 array."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} is not in the cache (it holds {len(self)})")
        out = np.empty(self.shape(index), np.uint8)
        self._file.seek(self._offsets[index])
        if self._file.readinto(out.reshape(-1).data) != out.nbytes:
            raise OSError(f"the frame cache {self.path} is truncated at frame {index}")
        return out

    def read_range(self, frames: range) -> list[np.ndarray]:
        """Frames ``frames`` (positions), one new array each."""
        return [self.read(i) for i in frames]

    def close(self) -> None:
        """Close the file (it stays on disk; the job deletes its cache folder)."""
        self._file.close()
