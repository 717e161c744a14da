"""Loading a DA3 network from a hub repo id or a checkpoint folder (``load_model``): the checkpoint is found
and its keys checked by ``checkpoints``, the network built and filled by ``model.loading``.

Imports no torch at import time; ``load_model`` builds the network lazily.
"""

from __future__ import annotations

from .checkpoints import (
    CheckpointError,
    CheckpointFiles,
    check_keys,
    read_checkpoint_header,
    resolve_checkpoint,
)

__all__ = ["CheckpointError", "CheckpointFiles", "check_keys", "load_model", "resolve_checkpoint"]


def load_model(
    source,
    *,
    device=None,
    dtype=None,
    revision: str | None = None,
    cache_dir: str | None = None,
    allow_download: bool = True,
):
    """Load a DA3 network (eval mode, no grad) from a hub repo id or a checkpoint folder.

    device: "cuda", "mps", "cpu" or None (auto). dtype: "fp32", "bf16", "fp16", a torch dtype, or
    None (auto, ``model.precision``: bf16 on CUDA GPUs and x86 CPUs that do it natively, fp16 on older
    CUDA GPUs, fp32 elsewhere).
    Reduced precision applies to the backbone's matrix multiplies; heads and geometry stay fp32.
    """
    files = resolve_checkpoint(source, revision=revision, cache_dir=cache_dir, allow_download=allow_download)
    from .model.loading import build_and_load  # torch

    return build_and_load(files, read_checkpoint_header(files), device=device, dtype=dtype)
