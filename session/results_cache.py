"""Cleaning the results folder: finished reconstructions past an age, and the oldest beyond a size cap, go
(preferences: Keep Results For, Results Cap). Only the extension's own job folders are touched (named by
their job id, holding a finished bundle or nothing), never one a job is writing, never one a file of the
open .blend lies in, and never the user's own files. No bpy: the operator passes what the .blend uses.

Importing never makes the scene depend on a results folder: cameras show the user's own photos or packed
pixels, shots their own movie, and points, cameras and the solve live in the .blend.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.formats.bundle import MANIFEST_FILE
from ..engine.formats.bundle.publish import is_busy, lock_file, staging_leftovers

__all__ = ["CleanReport", "clean_results"]

_JOB_FOLDER = re.compile(r"^[0-9a-f]{12}$")  # protocol.new_job_id()


@dataclass
class CleanReport:
    removed: list[Path] = field(default_factory=list)
    freed_bytes: int = 0
    kept_bytes: int = 0


def _size(folder: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def _age_stamp(folder: Path) -> float:
    """When the result was finished (its manifest), else when the folder last changed."""
    for path in (folder / MANIFEST_FILE, folder):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return 0.0


def _ours(folder: Path) -> bool:
    """A job folder of the extension: named by a job id, holding a finished bundle or nothing."""
    if not folder.is_dir() or not _JOB_FOLDER.match(folder.name):
        return False
    return (folder / MANIFEST_FILE).is_file() or not any(folder.iterdir())


def _remove(folder: Path, report: CleanReport, size: int) -> None:
    for leftover in staging_leftovers(folder):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    lock_file(folder).unlink(missing_ok=True)
    report.removed.append(folder)
    report.freed_bytes += size


def clean_results(
    results: str | os.PathLike,
    *,
    max_age_days: float,
    max_bytes: float,
    in_use: Iterable[str | os.PathLike] = (),
    now: float | None = None,
) -> CleanReport:
    """Remove job folders of ``results`` older than ``max_age_days`` (0: no age limit), then the oldest
    until the rest fits in ``max_bytes`` (0: no size cap). ``in_use``: files the open .blend points to."""
    report = CleanReport()
    root = Path(results)
    if not root.is_dir():
        return report
    now = time.time() if now is None else now
    used = {Path(os.path.abspath(p)) for p in in_use if p}
    folders = []
    for folder in sorted(p for p in root.iterdir() if _ours(p)):
        if is_busy(folder) or any(folder in u.parents for u in used):
            continue
        folders.append((_age_stamp(folder), _size(folder), folder))
    folders.sort()  # oldest first
    kept = []
    for stamp, size, folder in folders:
        if max_age_days > 0 and now - stamp > max_age_days * 86400:
            _remove(folder, report, size)
        else:
            kept.append((stamp, size, folder))
    total = sum(size for _stamp, size, _folder in kept)
    while max_bytes > 0 and kept and total > max_bytes:
        _stamp, size, folder = kept.pop(0)
        _remove(folder, report, size)
        total -= size
    report.kept_bytes = total
    return report
