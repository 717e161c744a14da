"""What the machine has to give (standard library only): the RAM a new allocation can count on."""

from __future__ import annotations

import os

__all__ = ["system_memory_available"]


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
