"""Seconds to export the 3dgs and nerfstudio datasets of a synthetic bundle (N views, photos on disk).

.venv/bin/python benchmarks/dataset_export.py [N] [processed W] [original W]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.formats.bundle import read_bundle, write_bundle  # noqa: E402
from engine.formats.datasets import ENGINE_TO_BLENDER, export_dataset, source_from_bundle  # noqa: E402


def main(n: int = 50, w: int = 504, ow: int = 1512) -> None:
    h, oh = w * 3 // 4, ow * 3 // 4
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(n):
            path = tmp / "photos" / f"p{i:04d}.jpg"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (oh, ow, 3), dtype=np.uint8)).save(path, quality=90)
            paths.append(str(path))
        k = np.array([[w * 0.8, 0, w / 2], [0, w * 0.8, h / 2], [0, 0, 1]])
        ext = np.tile(np.eye(4)[:3], (n, 1, 1))
        ext[:, 0, 3] = -0.05 * np.arange(n)
        yy = np.linspace(1.0, 3.0, h, dtype=np.float32)[:, None]
        write_bundle(
            tmp / "bundle",
            {
                "images": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
                "depth": np.broadcast_to(yy + np.zeros((n, 1, w), np.float32), (n, h, w)).copy(),
                "conf": np.ones((n, h, w), np.float32),
                "sky": np.zeros((n, h, w), bool),
                "extrinsics": ext.astype(np.float32),
                "intrinsics": np.repeat(k[None], n, 0).astype(np.float32),
                "source_paths": paths,
                "original_sizes": np.tile([oh, ow], (n, 1)),
            },
            {"model_id": "synthetic"},
        )
        bundle = read_bundle(tmp / "bundle")
        for tool in ("3dgs", "nerfstudio"):
            t0 = time.perf_counter()
            source = source_from_bundle(bundle, max_points=300_000)
            export_dataset(tool, tmp / tool, source, ENGINE_TO_BLENDER)
            seconds = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in (tmp / tool).rglob("*") if p.is_file()) / 1e6
            print(f"{tool}: {n} views ({w}x{h} depth, {ow}x{oh} photos): {seconds:.2f} s, {size:.0f} MB")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
