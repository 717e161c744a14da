"""Minimal safetensors reader/writer (numpy only, no mmap, never pickle).

Format: 8-byte little-endian header length, a JSON header ``{name: {dtype, shape, data_offsets},
"__metadata__": {str: str}}``, then the raw little-endian tensor bytes. Reading tensors one at a
time with plain ``read()`` keeps memory at "the model + one tensor" while loading.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_HEADER_BYTES = 100 * 1024 * 1024
NUMPY_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip
ITEM_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


class SafetensorsError(ValueError):
    """The file is not a valid safetensors file."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors dtype code: F32, F16, BF16, ...
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]


def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path.name} is too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise SafetensorsError(f"{path.name} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SafetensorsError(f"{path.name} is not a safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path.name}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, entry in header.items():
        try:
            dtype, shape = entry["dtype"], tuple(int(d) for d in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path.name}: malformed header entry for {name!r}") from None
        if dtype not in ITEM_SIZES or end - begin != ITEM_SIZES[dtype] * int(np.prod(shape, dtype=np.int64)):
            raise SafetensorsError(
                f"{path.name}: tensor {name!r} has an unsupported dtype or a wrong byte size"
            )
        if 8 + n + end > size:
            raise SafetensorsError(
                f"{path.name} is truncated (tensor {name!r} runs past the end of the file)"
            )
        tensors[name] = TensorInfo(name, dtype, shape, 8 + n + begin, 8 + n + end)
    return SafetensorsHeader(path, tensors, {str(k): str(v) for k, v in metadata.items()})


def read_bytes(f, info: TensorInfo) -> bytearray:
    """The raw bytes of one tensor from an open binary file."""
    f.seek(info.start)
    buf = bytearray(info.end - info.start)
    if f.readinto(buf) != len(buf):
        raise SafetensorsError(f"tensor {info.name!r}: unexpected end of file")
    return buf


def read_array(f, info: TensorInfo) -> np.ndarray:
    """One tensor as a numpy array (not for BF16, which numpy lacks: use ``read_bytes``)."""
    if info.dtype not in NUMPY_DTYPES:
        raise SafetensorsError(f"tensor {info.name!r} has dtype {info.dtype}, which numpy cannot hold")
    return np.frombuffer(read_bytes(f, info), dtype=NUMPY_DTYPES[info.dtype]).reshape(info.shape)


def write_file(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None
):
    """Write numpy arrays (float64/32/16, ints, bool) as safetensors, tensors in sorted-key order."""
    codes = {np.dtype(v).newbyteorder("<") if np.dtype(v).itemsize > 1 else np.dtype(v): k
             for k, v in NUMPY_DTYPES.items()}  # fmt: skip
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    names = sorted(arrays)
    for name in names:
        a = arrays[name]
        code = codes[np.dtype(a.dtype).newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype]
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for name in names:
            f.write(np.ascontiguousarray(arrays[name]).astype(arrays[name].dtype.newbyteorder("<")).tobytes())
