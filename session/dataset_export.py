"""Export Dataset: a reconstruction's bundle written as a 3DGS/SuGaR/gsplat or nerfstudio/DN-Splatter
dataset on a worker thread (no bpy there), in the frame of the root's current transform.

The operator checks the request on the main thread (``DatasetExport.check``), starts the thread, then
polls ``status()`` from its timer; ``cancel()`` stops it between files. The dataset is written into a
hidden sibling of the target and renamed at the end (``formats.datasets.export``), so a failure or a
cancel leaves nothing half-done.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.errors import explain
from ..engine.formats.bundle import BundleError, is_complete, read_bundle
from ..engine.formats.datasets import (
    DatasetError,
    Similarity,
    check_target,
    export_dataset,
    source_from_bundle,
)
from ..engine.process.protocol import DATASET_POINTS_DEFAULT

__all__ = ["DatasetExport", "ExportCancelled"]


class ExportCancelled(Exception):
    """Raised inside the worker thread when the user cancelled."""


@dataclass
class _State:
    done: int = 0
    total: int = 0
    message: str = "Reading the bundle"
    outcome: str | None = None  # "finished", "cancelled" or "failed" once the thread has ended
    error: str = ""
    sidecar: object = None
    seconds: float = 0.0


class DatasetExport:
    """One dataset export: ``check()`` on the main thread, ``start()``, then ``status()`` until it ends."""

    def __init__(
        self,
        tool: str,
        bundle_folder: str,
        target: str,
        root_matrix: np.ndarray,
        root_name: str | None,
        max_points: int = DATASET_POINTS_DEFAULT,
    ) -> None:
        self.tool, self.bundle_folder, self.target = tool, bundle_folder, target
        self.root_matrix = np.asarray(root_matrix, np.float64)
        self.root_name, self.max_points = root_name, max_points
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._state = _State()
        self._thread: threading.Thread | None = None

    def check(self) -> None:
        """Refuse what cannot work before any file is touched (``DatasetError`` with what to do)."""
        if not self.bundle_folder:
            raise DatasetError(
                "The active reconstruction has no bundle folder: import it from a bundle first."
            )
        if not Path(self.bundle_folder).is_dir():
            raise DatasetError(
                f"The bundle folder {self.bundle_folder} is gone: the dataset is written from it. Put it back, "
                "or import the bundle again from where it is now."
            )
        if not is_complete(self.bundle_folder):
            raise DatasetError(
                f"{self.bundle_folder} holds no complete bundle: run the reconstruction again."
            )
        if not self.target:
            raise DatasetError("Choose a folder for the dataset.")
        target = check_target(self.target)
        bundle = Path(self.bundle_folder).resolve()
        if target == bundle or bundle in target.parents or target in bundle.parents:
            raise DatasetError("Choose a dataset folder outside the bundle folder (and not above it).")
        Similarity(self.root_matrix)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="da3-dataset-export", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends (tests, scripts); True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.status().outcome is not None

    def status(self) -> _State:
        with self._lock:
            return _State(**vars(self._state))

    @property
    def progress_text(self) -> str:
        s = self.status()
        return f"{s.message} ({s.done}/{s.total})" if s.total else s.message

    def _progress(self, done: int, total: int, message: str) -> None:
        with self._lock:
            self._state.done, self._state.total, self._state.message = done, total, message

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise ExportCancelled()

    def _run(self) -> None:
        started = time.perf_counter()
        outcome, error, sidecar = "failed", "", None
        try:
            bundle = read_bundle(self.bundle_folder)
            self._check_cancel()
            self._progress(0, 0, "Gathering seed points")
            source = source_from_bundle(bundle, max_points=self.max_points)
            sidecar = export_dataset(
                self.tool,
                self.target,
                source,
                self.root_matrix,
                root_name=self.root_name,
                progress=self._progress,
                check_cancel=self._check_cancel,
            )
            outcome = "finished"
        except ExportCancelled:
            outcome = "cancelled"
        except (DatasetError, BundleError) as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a worker thread: every failure becomes the message
            error = explain(exc)
        with self._lock:
            self._state.outcome, self._state.error, self._state.sidecar = outcome, error, sidecar
            self._state.seconds = time.perf_counter() - started

    def summary(self) -> str:
        s = self.status()
        target = os.path.abspath(self.target)
        return f"Exported the {self.tool} dataset to {target} in {s.seconds:.1f} s"
