"""Where the network's time goes, stage by stage (issue 13): per-view blocks, global blocks (their
attention on its own), the dense head and the rest, for presets × view counts × precisions.

Random weights (our generator), input 504×378 (already multiples of 14), one warm-up then the fastest of
``--repeats`` forwards, each stage timed with forward hooks (wall time; the hooks cost microseconds).
Prints the load average with every row: on a shared machine every number is slower than it would be.

    python benchmarks/cpu_stages.py [--presets da3-small,da3-base,da3-large] [--views 1,4,16]
                                    [--dtypes fp32,bf16] [--repeats 2] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

H, W = 378, 504


def stage_times(model, views: int, repeats: int) -> tuple[float, dict[str, float]]:
    """(total seconds, seconds per stage) of the fastest of ``repeats`` forwards after a warm-up."""
    import torch
    import torch.nn.functional as F

    spent: dict[str, float] = defaultdict(float)
    started: dict[int, float] = {}

    def timed(name):
        def pre(module, args, kwargs=None):
            started[id(module)] = time.perf_counter()

        def post(module, args, output, kwargs=None):
            spent[name] += time.perf_counter() - started.pop(id(module))

        return pre, post

    cfg = model.backbone.cfg
    for i, block in enumerate(model.backbone.blocks):
        pre, post = timed("global blocks" if cfg.is_global(i) else "per-view blocks")
        block.register_forward_pre_hook(pre)
        block.register_forward_hook(post)
    for name, module in (("dense head", model.head), ("camera decoder", getattr(model, "cam_dec", None))):
        if module is not None:
            pre, post = timed(name)
            module.register_forward_pre_hook(pre)
            module.register_forward_hook(post)
    sdpa = F.scaled_dot_product_attention
    attention = defaultdict(float)

    def timed_sdpa(q, k, v, *a, **kw):  # the attention kernel alone, split by sequence kind
        t0 = time.perf_counter()
        out = sdpa(q, k, v, *a, **kw)
        attention[
            "global attention" if q.shape[-2] > (H // 14) * (W // 14) + 1 else "per-view attention"
        ] += time.perf_counter() - t0
        return out

    x = torch.randn(1, views, 3, H, W)
    best, best_stages = float("inf"), {}
    F.scaled_dot_product_attention = timed_sdpa
    try:
        for run in range(repeats + 1):
            spent.clear()
            attention.clear()
            t0 = time.perf_counter()
            with torch.inference_mode():
                model(x)
            total = time.perf_counter() - t0
            if run and total < best:  # run 0 is the warm-up
                best, best_stages = total, {**spent, **attention}
    finally:
        F.scaled_dot_product_attention = sdpa
    return best, best_stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="da3-small,da3-base,da3-large")
    ap.add_argument("--views", default="1,4,16")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--checkpoints", default=str(Path(tempfile.gettempdir()) / "da3-bench-checkpoints"))
    args = ap.parse_args()

    import torch

    from engine.model.random_weights import write_random_checkpoint
    from engine.weights import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"CPU stages, input {W}x{H}, {torch.get_num_threads()} threads ({os.cpu_count()} cores), torch "
        f"{torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}"
    )
    stages = ["per-view blocks", "global blocks", "per-view attention", "global attention", "dense head"]
    print(
        f"{'preset':10} {'views':>5} {'dtype':5} {'total s':>8} "
        + " ".join(f"{s:>18}" for s in stages)
        + "  load"
    )
    for preset in args.presets.split(","):
        folder = Path(args.checkpoints) / preset
        if not (folder / "model.safetensors").exists():
            write_random_checkpoint(folder, preset, seed=1)
        for dtype in args.dtypes.split(","):
            model = load_model(folder, device="cpu", dtype=dtype)
            for views in (int(v) for v in args.views.split(",")):
                total, spent = stage_times(model, views, args.repeats)
                cells = " ".join(
                    f"{spent.get(s, 0):8.2f} s ({100 * spent.get(s, 0) / total:3.0f} %)" for s in stages
                )
                print(
                    f"{preset:10} {views:>5} {dtype:5} {total:8.2f} {cells}  {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            del model


if __name__ == "__main__":
    main()
