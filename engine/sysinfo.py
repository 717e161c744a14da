"""What the machine has to give (standard library only): the RAM a new allocation can count on, and the
CPU's native bf16 matrix instructions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["BF16_CPU_FLAGS", "cpu_bf16_flags", "system_memory_available", "user_cache_dir"]


def system_memory_available() -> float:
    """Bytes of RAM available to a new process: MemAvailable (Linux), else the free (or total) pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # macOS has only the total
        try:
            return float(os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            continue
    return 4.0 * 2**30  # Windows without either: assume a modest machine


def user_cache_dir() -> Path:
    """The engine's own cache folder (measurements worth keeping between runs): ``DA3_CACHE_DIR`` if set,
    else the platform's user cache (``~/.cache``/XDG, ``~/Library/Caches``, ``%LOCALAPPDATA%``)."""
    if os.environ.get("DA3_CACHE_DIR"):
        return Path(os.environ["DA3_CACHE_DIR"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "da3-reconstruct"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "da3-reconstruct" / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "da3-reconstruct"


# CPU features that do bf16 matrix products natively (x86: AVX512-BF16 dot products, AMX tiles; ARM: the
# BF16 extension). Names as /proc/cpuinfo spells them (x86 "flags", ARM "Features").
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
_MACOS_BF16_SYSCTL = "hw.optional.arm.FEAT_BF16"  # Apple M2 and later: 1


def cpu_bf16_flags() -> tuple[str, ...]:
    """The native bf16 matrix features this CPU reports (empty when none, or when the OS does not say).

    Linux: the ``flags`` (x86) or ``Features`` (ARM) line of /proc/cpuinfo; macOS: ``sysctl
    hw.optional.arm.FEAT_BF16`` (Apple M2 and later), ``machdep.cpu.leaf7_features`` on Intel Macs.
    Windows says nothing here; the engine asks torch's own CPU probe there (``model.precision``).
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    key, _, value = line.partition(":")
                    if key.strip().lower() in ("flags", "features"):
                        found = set(value.split())
                        return tuple(f for f in BF16_CPU_FLAGS if f in found)
        except OSError:
            return ()
        return ()
    if sys.platform == "darwin":
        if _sysctl(_MACOS_BF16_SYSCTL) == "1":
            return ("bf16",)
        leaf7 = (_sysctl("machdep.cpu.leaf7_features") or "").upper().split()
        return ("avx512_bf16",) if "AVX512BF16" in leaf7 or "AVX512_BF16" in leaf7 else ()
    return ()


def _sysctl(name: str) -> str | None:
    try:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
