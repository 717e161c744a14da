"""A shot's chunk size and overlap (issue 13): the user's, or the plan that takes least time on this device
within its memory (``model.chunk_cost.plan_shot``).

The cost constants are measured once per (device, model, processed size, precision, threads, torch) with
``model.calibrate`` (a few seconds) and kept in ``chunk_costs.json`` in the user cache folder
(``sysinfo.user_cache_dir``), so a second shot of the same kind plans at once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import UserError
from ..model.chunk_cost import MIN_CHUNK, ChunkCost, ChunkPlan, chunk_count, plan_shot
from ..model.memory import InsufficientMemory, chunk_size_for_memory
from ..process.protocol import JobOptions
from ..sysinfo import system_memory_available, user_cache_dir
from .context import Context

__all__ = [
    "COSTS_FILE",
    "SYSTEM_RAM_SHARE",
    "choose_chunking",
    "chunk_cost_for",
    "default_overlap",
    "duration",
]

COSTS_FILE = "chunk_costs.json"
SYSTEM_RAM_SHARE = 0.5  # share of the available RAM a CPU (or MPS) shot plans its chunks for
FALLBACK_CHUNK = 32  # chunk size for a network without a memory estimate (a test double)
_MEASURED: dict[str, ChunkCost] = {}  # this process's measurements (the engine process lives long)


def default_overlap(chunk_size: int) -> int:
    """Half a chunk, at least 2 frames, fewer than the chunk (1 for a 2-frame chunk): the overlap of a
    chunk size the user set."""
    return min(int(chunk_size) - 1, max(2, int(chunk_size) // 2))


def _memory_chunk(model, image_hw: tuple[int, int]) -> tuple[int, float]:
    """(the most frames that fit in memory, bytes to work in)."""
    from ..pipeline import device_memory  # torch: imported when a job runs

    memory = device_memory(model)
    free = memory.free_bytes
    if free is None:
        free = SYSTEM_RAM_SHARE * system_memory_available()
    available = free + memory.weight_bytes  # the weights are loaded already
    h, w = image_hw
    try:
        return chunk_size_for_memory(
            available, h, w, getattr(model, "model_name", ""), dtype_bytes=memory.dtype_bytes
        ), available
    except InsufficientMemory as exc:
        raise UserError(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
    except ValueError:  # a network without a memory estimate
        return FALLBACK_CHUNK, available


def _cost_key(model, image_hw: tuple[int, int]) -> str | None:
    import torch

    name = getattr(model, "model_name", "")
    if not name or not hasattr(model, "modules"):
        return None  # a test double: no network to measure
    device = str(getattr(model, "run_device", "cpu"))
    dtype = str(getattr(model, "run_dtype", torch.float32)).removeprefix("torch.")
    h, w = image_hw
    return f"{name}|{device}|{h}x{w}|{dtype}|threads={torch.get_num_threads()}|torch={torch.__version__}"


def _read_costs(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_costs(path: Path, costs: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(costs, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a new measurement next time


def chunk_cost_for(model, image_hw: tuple[int, int], context: Context) -> ChunkCost | None:
    """The measured chunk cost of ``model`` at ``image_hw`` (cached), or None for a network we cannot
    measure."""
    key = _cost_key(model, image_hw)
    if key is None:
        return None
    if key in _MEASURED:
        return _MEASURED[key]
    path = user_cache_dir() / COSTS_FILE
    stored = _read_costs(path).get(key)
    if isinstance(stored, dict) and {"frame_s", "pair_s"} <= stored.keys():
        cost = ChunkCost(float(stored["frame_s"]), float(stored["pair_s"]))
    else:
        from ..model.calibrate import measure_chunk_cost  # torch

        context.check_cancel()
        context.progress("network", 0, 1, "measuring this device's speed")
        t0 = time.perf_counter()
        cost = measure_chunk_cost(model, *image_hw)
        context.log(
            "info",
            f"Measured the network's speed in {time.perf_counter() - t0:.1f} s: {cost.frame_s:.3f} s per "
            f"frame + {cost.pair_s:.4f} s per frame pair of global attention (kept in {path}).",
        )
        costs = _read_costs(path)
        costs[key] = cost.to_dict()
        _write_costs(path, costs)
        context.check_cancel()
    _MEASURED[key] = cost
    return cost


def choose_chunking(model, frames: int, image_hw: tuple[int, int], options: JobOptions, context: Context):
    """The shot's ``ChunkPlan``: the user's chunk size (with half a chunk of overlap unless set), else
    the fastest plan within memory; logged with its expected time."""
    if options.chunk_size is not None:
        chunk = int(options.chunk_size)
        overlap = options.chunk_overlap if options.chunk_overlap is not None else default_overlap(chunk)
        if overlap >= chunk:
            context.log(
                "warning",
                f"An overlap of {overlap} frames does not fit chunks of {chunk}: using {chunk - 1}.",
            )
            overlap = chunk - 1
        return ChunkPlan(chunk, int(overlap), chunk_count(frames, chunk, overlap), None, frames)
    max_chunk, available = _memory_chunk(model, image_hw)
    # a shot of up to two minimal chunks gains little from splitting (each chunk needs its overlap again):
    # it runs whole when it fits, without spending seconds on measuring
    cost = chunk_cost_for(model, image_hw, context) if frames > 2 * MIN_CHUNK else None
    plan = plan_shot(frames, cost, max_chunk=max_chunk, overlap=options.chunk_overlap)
    where = f"{available / 2**30:.1f} GiB to work in allows {max_chunk}"
    if plan.seconds is None:
        context.log("info", f"Chunks of {plan.chunk} frames ({where}).")
    else:
        context.log(
            "info",
            f"Chunks of {plan.chunk} frames overlapping by {plan.overlap} ({plan.chunks} chunks; {where}): "
            f"about {plan.seconds_per_frame:.2f} s per frame, {duration(plan.seconds)} for the network.",
        )
    return plan


def duration(seconds: float) -> str:
    """Seconds in words for a log line: "42 s", "7 min", "1.5 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
