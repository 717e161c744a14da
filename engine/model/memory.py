"""How much memory a DA3 network needs for a chunk of frames, and so how many frames fit (numpy only:
the presets are plain dataclasses)."""

from __future__ import annotations

from .presets import get_preset

__all__ = ["InsufficientMemory", "chunk_size_for_memory", "estimate_chunk_bytes"]


class InsufficientMemory(ValueError):
    """Not even a minimal chunk fits in the memory available."""


# Unique parameter counts (DA3_SPEC.md §1.5) and the shapes that drive activation memory.
_PARAMS = {
    "da3-small": 34_299_463,
    "da3-base": 135_366_599,
    "da3-large": 410_941_767,
    "da3-giant": 1_355_674_125,
    "da3metric-large": 334_171_394,
    "da3mono-large": 334_171_394,
    "da3nested-giant-large": 1_689_845_519,
}
_NESTED_PARTS = ("da3-giant", "da3metric-large")


HEAD_VIEWS = 4  # engine/model/network.py runs the DPT head on 4 views at a time (``head_chunk``)


def _preset_bytes(model_name: str, h: int, w: int, dtype_bytes: int) -> tuple[float, float]:
    """(bytes per frame, bytes independent of the frame count) of one network, weights excluded."""
    p = get_preset(model_name)
    tokens = (h // 14) * (w // 14) + 1
    c = p.backbone.embed_dim
    ch = 2 * c if p.backbone.cat_token else c  # channels of an exported layer
    # Backbone, every frame at once: the four exported layers (fp32 copies for the head, plus the
    # run-precision originals while they are converted) and one block's working set (≈ 8 C values:
    # x, norm, qkv, attention, MLP hidden; measured ≈ 6 C on the CPU).
    exported = 4 * ch * (4 if dtype_bytes == 4 else 4 + dtype_bytes)
    per_token = exported + 8 * c * dtype_bytes
    # Inputs and outputs per pixel: float32 input, uint8 and normalised copies, depth and confidence
    # in torch and numpy: ≈ 48 bytes.
    per_frame = tokens * per_token + 48 * h * w
    # DPT head (fp32, HEAD_VIEWS views at a time): ≈ 0.6 F + 100 float32 values per pixel and view.
    head = HEAD_VIEWS * h * w * (0.6 * p.head.features + 100) * 4
    return per_frame, head


def _weight_bytes(model_name: str, dtype_bytes: int) -> float:
    # Backbone matmul weights are held in the run precision, the rest in fp32 (engine/model/loading.py);
    # about 70 % of the parameters are backbone matmuls.
    return _PARAMS[model_name] * (0.7 * dtype_bytes + 0.3 * 4)


def estimate_chunk_bytes(model_name: str, chunk_size: int, H: int, W: int, dtype_bytes: int = 2) -> float:
    """Estimated peak bytes to run ``chunk_size`` frames of ``H × W`` (processed size) through a preset.

    Weights + the DPT head's working set (a few views at a time) + ``chunk_size`` × per-frame memory;
    see ``chunk_size_for_memory`` for the model and how it was checked.
    """
    if model_name not in _PARAMS:
        raise ValueError(f"unknown DA3 preset {model_name!r}; known presets: {', '.join(_PARAMS)}")
    parts = _NESTED_PARTS if model_name == "da3nested-giant-large" else (model_name,)
    costs = [_preset_bytes(m, H, W, dtype_bytes) for m in parts]
    # The nested model runs its parts one after the other; the first part's outputs (≈ 48 B/pixel)
    # wait while the second runs.
    per_frame = max(c[0] for c in costs) + 48 * H * W * (len(parts) - 1)
    fixed = _weight_bytes(model_name, dtype_bytes) + max(c[1] for c in costs)
    return fixed + chunk_size * per_frame


def chunk_size_for_memory(
    available_bytes: float,
    H: int,
    W: int,
    model_name: str,
    *,
    user_chunk_size: int | None = None,
    dtype_bytes: int = 2,
    headroom: float = 0.8,
    min_chunk: int = 4,
    max_chunk: int = 120,
) -> int:
    """How many frames of ``H × W`` (processed pixels) fit in ``available_bytes`` for a preset.

    A user's chunk size (``user_chunk_size``) always wins. Otherwise an analytic estimate
    (``estimate_chunk_bytes``), meant to err on the safe side:

    * fixed: the weights (parameter counts of DA3_SPEC.md §1.5; backbone matmuls in the run
      precision ``dtype_bytes`` — 2 under CUDA autocast, 4 for fp32 on the CPU — the rest fp32)
      and the DPT head, which runs in fp32 on 4 views at a time: ≈ (0.6·F + 100) values per pixel;
    * per frame: the backbone sees every frame at once (attention through SDPA is linear in the
      tokens): the four exported layers kept for the head and one block's working set, ≈ 16·C
      (+ 8·C·``dtype_bytes`` when converting) bytes per patch token; plus ≈ 48 bytes per pixel of
      inputs and outputs. The nested model counts its larger part, plus the outputs it holds.

    Checked against the peak resident memory of our network on the CPU (fp32, 280×504, 6 and 12
    frames, weights excluded): per frame da3-small 20 MiB measured / 23 MiB estimated, da3-base
    43 / 40 MiB; fixed part small 295 / 298 MiB, base 371 / 381 MiB. Not checked on a GPU yet,
    whose allocator and cuDNN workspaces add their own overhead: hence the ``headroom``.

    Only ``headroom`` of what is left after the weights is planned (allocator fragmentation,
    cuDNN workspaces). The result is clamped to ``[min_chunk, max_chunk]`` (120 is DA3-Streaming's
    default chunk); ``InsufficientMemory`` when not even ``min_chunk`` frames fit.
    """
    if user_chunk_size is not None:
        if int(user_chunk_size) < 2:
            raise ValueError(f"chunk size must be at least 2 frames, got {user_chunk_size}")
        return int(user_chunk_size)
    if H < 14 or W < 14:
        raise ValueError(f"processed image size must be at least 14×14 pixels, got {H}×{W}")
    fixed = estimate_chunk_bytes(model_name, 0, H, W, dtype_bytes)
    per_frame = estimate_chunk_bytes(model_name, 1, H, W, dtype_bytes) - fixed
    budget = (float(available_bytes) - fixed) * headroom
    n = int(budget // per_frame) if budget > 0 else 0
    if n < min_chunk:
        need = fixed + min_chunk * per_frame / headroom
        raise InsufficientMemory(
            f"{model_name} at {W}×{H} needs about {need / 2**30:.1f} GiB for {min_chunk} frames, but only "
            f"{available_bytes / 2**30:.1f} GiB is available: lower the processing resolution, pick a "
            "smaller model, or set a chunk size by hand"
        )
    return min(n, max_chunk)
