"""A small PNG writer (numpy + zlib, no PIL: Blender's Python has none) for the dataset maps and images.

8-bit grey or RGB, 16-bit grey (big-endian, as PNG stores it). Each row is written with the "Sub"
filter, computed for the whole image at once, which keeps smooth depth maps small.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["write_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bytes(array: np.ndarray, level: int = 3) -> bytes:
    """The PNG file of ``array``: (H, W) uint8 or uint16 (grey), or (H, W, 3) uint8 (RGB)."""
    arr = np.asarray(array)
    if arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16):
        channels, colour_type = 1, 0
    elif arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        channels, colour_type = 3, 2
    else:
        raise ValueError(f"a PNG holds (H, W) uint8/uint16 or (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    h, w = arr.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"cannot write an empty {w}×{h} image")
    depth = 16 if arr.dtype == np.uint16 else 8
    bpp = channels * depth // 8  # bytes per pixel
    rows = np.ascontiguousarray(arr.astype(">u2") if depth == 16 else arr).view(np.uint8).reshape(h, w * bpp)
    sub = rows.copy()
    sub[:, bpp:] -= rows[:, :-bpp]  # uint8 arithmetic wraps: the "Sub" filter (type 1)
    raw = np.concatenate([np.ones((h, 1), np.uint8), sub], axis=1)
    header = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0)
    return b"".join(
        [
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
            _chunk(b"IEND", b""),
        ]
    )


def write_png(path: str | os.PathLike, array: np.ndarray, level: int = 3) -> Path:
    """Write ``array`` as a PNG file (see ``png_bytes``); returns the path."""
    path = Path(path)
    path.write_bytes(png_bytes(array, level))
    return path
