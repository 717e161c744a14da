"""Results that are all or nothing: a job writes its bundle into a staging folder beside the output and
swaps it in only when everything is written; one job per output folder at a time.

``OutputFolder(out, job)`` (a context manager):

* takes an OS lock on ``<parent>/.<name>.da3-lock`` (``flock``; ``msvcrt.locking`` on Windows) that dies
  with its process, so a second job on a busy folder is refused at once and a killed job never blocks
  the folder;
* repairs what an earlier job left when it was killed: a result moved aside but not yet replaced comes
  back; staging folders (with their shot caches) of jobs that are gone are removed;
* refuses an output that is a file, or a folder of someone else's files (not a finished bundle), before
  any work;
* gives the job a fresh ``staging`` folder on the same disk (and a ``scratch`` folder for working
  files such as a shot's frame and chunk caches, removed when the job ends); ``publish()`` swaps it in (one atomic
  ``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, repaired by the next job if it dies in
  between). Files the user put into an earlier bundle folder (not listed in its manifest) move along.

Until ``publish()`` the previous result stays whole and importable; after any failure, cancel or kill
the folder holds the old result or the new one, never a mix.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
from pathlib import Path

from .schema import MANIFEST_FILE, BundleError

__all__ = ["FolderBusy", "OutputFolder", "is_busy", "lock_file", "staging_leftovers"]

LOCK = ".da3-lock"
STAGING = ".da3-staging-"
RETIRED = ".da3-old-"
_RENAME_EXCHANGE = 2


class FolderBusy(BundleError):
    """Another job is writing the same output folder."""


def _hidden(out: Path, marker: str, job: str = "") -> Path:
    return out.parent / f".{out.name}{marker}{job}"


def staging_leftovers(out: Path) -> list[Path]:
    """Staging and retired folders that jobs on ``out`` left behind."""
    prefixes = (f".{out.name}{STAGING}", f".{out.name}{RETIRED}")
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefixes) and p.is_dir())


def lock_file(out: Path) -> Path:
    """The lock file of an output folder (beside it: the folder itself is swapped)."""
    return _hidden(Path(out), LOCK)


def is_busy(out: str | os.PathLike) -> bool:
    """Whether a job holds the output folder ``out`` now."""
    path = lock_file(Path(out))
    if not path.exists():
        return False
    with open(path, "a+b") as handle:
        return not _lock(handle)  # closing the file releases a lock we just took


def _lock(handle) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where the system cannot."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _listed(folder: Path) -> set[str] | None:
    """The files a finished bundle's manifest lists (with the manifest), or None when it is none."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        return {entry["name"] for entry in manifest["files"]} | {MANIFEST_FILE}
    except (OSError, ValueError, KeyError, TypeError):
        return None


class OutputFolder:
    """The output folder of one job: lock, repair, staging, publish (see the module docstring)."""

    def __init__(self, out: str | os.PathLike, job: str) -> None:
        self.out = Path(out).expanduser().absolute()
        self.job = job
        self.staging = _hidden(self.out, STAGING, job)
        self.scratch = self.staging.with_name(self.staging.name + ".cache")  # a job's working files
        self.published = False
        self._handle = None

    # --- before the work ---------------------------------------------------------------------------

    def __enter__(self) -> OutputFolder:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(lock_file(self.out), "a+b")  # noqa: SIM115 (held until __exit__)
        if not _lock(self._handle):
            self._handle.close()
            self._handle = None
            raise FolderBusy(
                f"Another job is writing {self.out} right now: wait for it to finish (or cancel it), or "
                "choose another output folder."
            )
        try:
            self._repair()
            self._check_target()
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir()
        except BaseException:
            self._unlock()
            raise
        return self

    def _repair(self) -> None:
        """Undo what a killed job left: a retired result comes back if nothing replaced it; every other
        staging or retired folder is removed (we hold the lock, so their jobs are gone)."""
        leftovers = staging_leftovers(self.out)
        retired = [p for p in leftovers if RETIRED in p.name and _listed(p) is not None]
        if not self.out.exists() and retired:
            os.replace(retired[-1], self.out)
        for path in staging_leftovers(self.out):
            shutil.rmtree(path, ignore_errors=True)

    def _check_target(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise BundleError(f"The output '{out}' is a file, not a folder. Choose a folder for the result.")
        if out.is_dir() and any(out.iterdir()) and _listed(out) is None:
            raise BundleError(
                f"The output folder {out} holds files that are not a finished result: choose an empty "
                "folder, or the folder of an earlier result to replace it."
            )

    # --- after the work ----------------------------------------------------------------------------

    def publish(self) -> Path:
        """Swap the finished staging folder in; returns the output folder."""
        out = self.out
        if out.is_dir():
            tops = {name.split("/")[0] for name in _listed(out) or ()}
            for item in out.iterdir():  # the user's own files in the earlier result move along
                if item.name in tops or item.name.endswith(".partial") or (self.staging / item.name).exists():
                    continue
                os.replace(item, self.staging / item.name)
            if _exchange(self.staging, out):
                shutil.rmtree(self.staging, ignore_errors=True)  # now the old result
            else:
                retired = _hidden(out, RETIRED, self.job)
                os.replace(out, retired)
                os.replace(self.staging, out)
                shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(self.staging, out)
        self.published = True
        return out

    def final_path(self, path: str | os.PathLike) -> str:
        """Where a file written into the staging folder is once published."""
        p = Path(path)
        try:
            return os.fspath(self.out / p.relative_to(self.staging))
        except ValueError:
            return os.fspath(p)

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.published:
            shutil.rmtree(self.staging, ignore_errors=True)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self._unlock()

    def _unlock(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock; the lock file stays (harmless, hidden)
            self._handle = None
