"""The precision "auto" stands for on a device, and why (issue 13).

* CUDA: bf16 where the GPU does it natively (Ampere and later), else fp16;
* CPU: bf16 where the CPU has native bf16 matrix instructions on x86 (AVX512-BF16 or AMX): measured
  1.3-1.5x faster than fp32 on da3-small/base with a median depth difference of 0.2 % (issue 13). fp32
  elsewhere: without them bf16 is emulated and slower. ARM CPUs with the BF16 extension (Apple M2+,
  Graviton 3) stay fp32 until someone measures them;
* Apple MPS: fp32 — reduced precision there has not been measured against fp32 yet.

The user can always force a precision (``--dtype``, the job option, Blender's preferences).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sysinfo import cpu_bf16_flags

__all__ = ["Precision", "auto_precision", "cpu_native_bf16"]

_X86_NATIVE = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Precision:
    dtype: str  # "bfloat16", "float16" or "float32"
    reason: str  # why, in words for the log: "this CPU has native bf16 matrix instructions (avx512_bf16)"

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def cpu_native_bf16() -> tuple[str, ...]:
    """Native bf16 matrix features of this x86 CPU (empty when none): torch's own CPU probe (cpuinfo, which
    works on every OS) and the OS's report (``sysinfo.cpu_bf16_flags``)."""
    found = [f for f in cpu_bf16_flags() if f in _X86_NATIVE]
    probe = getattr(torch, "cpu", None)
    try:
        if probe is not None and probe._is_avx512_bf16_supported() and "avx512_bf16" not in found:
            found.append("avx512_bf16")
        if probe is not None and probe._is_amx_tile_supported() and "amx_bf16" not in found:
            found.append("amx_bf16")
    except (AttributeError, RuntimeError):  # an older torch without the probes: the OS's word alone
        pass
    return tuple(found)


def auto_precision(device: str | torch.device) -> Precision:
    """What "auto" means on ``device`` ("cpu", "cuda", "cuda:1", "mps"), with the reason."""
    kind = torch.device(device).type
    if kind == "cuda":
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.3 has no emulation flag (and no emulation)
            native = torch.cuda.is_bf16_supported()
        if native:
            return Precision("bfloat16", "this GPU computes bf16 natively")
        return Precision("float16", "this GPU has no native bf16; fp16 autocast as upstream")
    if kind == "cpu":
        native = cpu_native_bf16()
        if native:
            return Precision(
                "bfloat16", f"this CPU has native bf16 matrix instructions ({', '.join(native)})"
            )
        if "bf16" in cpu_bf16_flags():
            return Precision("float32", "bf16 on ARM CPUs is not measured yet")
        return Precision("float32", "this CPU has no native bf16 matrix instructions")
    if kind == "mps":
        return Precision("float32", "reduced precision on Apple GPUs is not measured yet")
    return Precision("float32", f"no reduced precision chosen for {kind}")
