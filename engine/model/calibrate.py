"""Measure a loaded network's chunk cost on its own device (``chunk_cost.ChunkCost``), in a few seconds.

``a`` and ``b`` of ``T(c) = a·c + b·c²`` come from two timings at the shot's processed size, each after
a warm-up at the same shapes (allocator, oneDNN/cuDNN kernel choice):

* the whole network on 2 random frames: ``T(2) = 2a + 4b``;
* the attention of one global block over ``ATTENTION_FRAMES`` frames of tokens, in the run precision
  (``F.scaled_dot_product_attention``, as the blocks call it): ``b = n_global · t_att / m²``.

Timing the attention on its own keeps the calibration short (a long chunk would take minutes), and the
attention is exactly the part that is quadratic. Each timing is the fastest of ``REPEATS`` runs.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .backbone import PATCH
from .chunk_cost import ChunkCost

__all__ = ["ATTENTION_FRAMES", "measure_chunk_cost"]

ATTENTION_FRAMES = 8  # frames of tokens in the timed global attention (long enough to be quadratic)
REPEATS = 3  # the fastest of a few runs: other work on a shared machine only ever adds time


def _backbones(model) -> list:
    """The backbones a forward runs (the nested model runs two networks)."""
    return [m for m in model.modules() if hasattr(m, "cfg") and hasattr(m, "blocks")]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def measure_chunk_cost(model, h: int, w: int) -> ChunkCost:
    """``ChunkCost`` of ``model`` for frames of ``h × w`` processed pixels (multiples of 14)."""
    device = torch.device(getattr(model, "run_device", "cpu"))
    dtype = getattr(model, "run_dtype", torch.float32)
    tokens = (h // PATCH) * (w // PATCH) + 1
    gen = torch.Generator().manual_seed(0)

    def forward(frames: int) -> None:
        x = torch.randn(1, frames, 3, h, w, generator=gen).to(device)
        with torch.inference_mode():
            model(x)

    forward(2)  # warm-up at the timed shapes (oneDNN and cuDNN pick and build kernels per shape)
    two = min(_timed(lambda: forward(2), device) for _ in range(REPEATS))
    pair = 0.0
    m = ATTENTION_FRAMES
    for bb in _backbones(model):
        cfg = bb.cfg
        n_global = sum(cfg.is_global(i) for i in range(cfg.depth))
        if not n_global:
            continue
        q = torch.randn(1, cfg.num_heads, m * tokens, cfg.head_dim, generator=gen).to(device, dtype)
        with torch.inference_mode():
            F.scaled_dot_product_attention(
                q[:, :, : 2 * tokens], q[:, :, : 2 * tokens], q[:, :, : 2 * tokens]
            )
            t_att = min(
                _timed(lambda q=q: F.scaled_dot_product_attention(q, q, q), device) for _ in range(REPEATS)
            )
        pair += n_global * t_att / (m * m)
    frame = max((two - 4 * pair) / 2, two / 4)  # noise must not make the linear part vanish
    return ChunkCost(frame_s=float(frame), pair_s=float(pair))
