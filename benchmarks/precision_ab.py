"""bf16 against fp32 for our network on this CPU, interleaved in one process (issue 13).

Both precisions of a preset are loaded side by side and run turn about (one warm-up round, then the
fastest of ``--rounds``), so a shared machine's load hits both alike: the fairest comparison on a busy
box. Random weights (our generator), input 504×378, the network alone. Prints wall and process CPU
seconds and the load average.

    python benchmarks/precision_ab.py [--presets da3-small,da3-base] [--views 1,4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="da3-small,da3-base")
    ap.add_argument("--views", default="1,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--checkpoints", default=str(Path(tempfile.gettempdir()) / "da3-bench-checkpoints"))
    args = ap.parse_args()

    import torch

    from engine.model.random_weights import write_random_checkpoint
    from engine.weights import load_model

    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, input 504x378")
    for preset in args.presets.split(","):
        folder = Path(args.checkpoints) / preset
        if not (folder / "model.safetensors").exists():
            write_random_checkpoint(folder, preset, seed=1)
        models = {d: load_model(folder, device="cpu", dtype=d) for d in ("fp32", "bf16")}
        for views in (int(v) for v in args.views.split(",")):
            x = torch.randn(1, views, 3, 378, 504)
            best = {d: (float("inf"), float("inf")) for d in models}
            for round_ in range(args.rounds + 1):
                for d, model in models.items():
                    t0, c0 = time.perf_counter(), time.process_time()
                    with torch.inference_mode():
                        model(x)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    if round_:  # round 0 warms up
                        best[d] = (min(best[d][0], wall), min(best[d][1], cpu))
            (w32, c32), (w16, c16) = best["fp32"], best["bf16"]
            print(
                f"{preset:10} {views:>3} views: fp32 {w32:6.2f} s ({c32:6.2f} CPU s), bf16 {w16:6.2f} s "
                f"({c16:6.2f} CPU s): bf16 {w32 / w16:.2f}x faster ({c32 / c16:.2f}x in CPU s), "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        del models


if __name__ == "__main__":
    main()
