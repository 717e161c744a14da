"""The dataset's images: file names that sort in view order, which files can be copied as they are
(8-bit RGB JPEG or PNG at the size the cameras were solved for, not rotated by EXIF), and writing them.

Images are always copied (or written from pixels), never linked: a dataset must keep working when it
is copied to the machine that trains on it.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path, PurePosixPath

import numpy as np

from .png import write_png

__all__ = ["COPYABLE_SUFFIXES", "dataset_image_names", "plain_image_size", "put_image"]

COPYABLE_SUFFIXES = (".jpg", ".jpeg", ".png")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def dataset_image_names(stems: list[str], suffixes: list[str]) -> list[str]:
    """``00000_<stem><suffix>``: unique, safe for COLMAP text and URLs, and sorted in view order (nerfstudio
    and DN-Splatter sort frames and normal maps by file name)."""
    width = max(5, len(str(max(len(stems) - 1, 0))))
    out = []
    for i, (stem, suffix) in enumerate(zip(stems, suffixes, strict=True)):
        safe = _UNSAFE.sub("_", PurePosixPath(str(stem).replace("\\", "/")).name).strip("._") or "view"
        out.append(f"{i:0{width}d}_{safe[:80]}{suffix.lower()}")
    return out


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    w, h, depth, colour = struct.unpack(">IIBB", head[16:26])
    return (h, w) if depth == 8 and colour == 2 else None  # 8-bit RGB only


def _exif_orientation(segment: bytes) -> int:
    """The EXIF orientation in an APP1 segment's payload (1 when there is none)."""
    if segment[:6] != b"Exif\0\0":
        return 1
    tiff = segment[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 1
    count = struct.unpack(order + "H", tiff[ifd : ifd + 2])[0]
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(tiff):
            break
        tag, kind = struct.unpack(order + "HH", tiff[at : at + 4])
        if tag == 0x0112 and kind == 3:
            return struct.unpack(order + "H", tiff[at + 8 : at + 10])[0]
    return 1


def _jpeg_size(fh) -> tuple[int, int] | None:
    if fh.read(2) != b"\xff\xd8":
        return None
    orientation = 1
    while True:
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:
            continue
        length = struct.unpack(">H", fh.read(2))[0]
        if kind == 0xE1:
            orientation = _exif_orientation(fh.read(length - 2))
            continue
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
            depth, h, w, channels = struct.unpack(">BHHB", fh.read(6))
            plain = depth == 8 and channels == 3 and orientation == 1
            return (h, w) if plain else None
        fh.seek(length - 2, os.SEEK_CUR)


def plain_image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(H, W) of an 8-bit RGB JPEG or PNG that every trainer reads as we did (no EXIF rotation); None for
    anything else (other formats, grey, 16-bit, alpha, rotated, unreadable)."""
    path = Path(path)
    if path.suffix.lower() not in COPYABLE_SUFFIXES or not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            if path.suffix.lower() == ".png":
                return _png_size(fh.read(32))
            return _jpeg_size(fh)
    except (OSError, struct.error):
        return None


def put_image(source: str | os.PathLike | np.ndarray, dest: Path) -> None:
    """Copy the file ``source`` to ``dest`` (never a link), or write an (H, W, 3) uint8 array as PNG."""
    if isinstance(source, np.ndarray):
        write_png(dest, source)
    else:
        shutil.copyfile(source, dest)
