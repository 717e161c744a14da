"""Chunk predictions and joined parts on disk (``.npz`` files in the job folder): memory stays flat."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .chunks import ChunkJoint, ChunkPrediction, FrameBlock


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
