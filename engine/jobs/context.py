"""What a job runs with: the ``Context`` protocol every job function takes, and the model side shared by
the engine process's job context and the command line's (``ModelContext`` over a ``ModelCache`` kept
between jobs, the job's cancel flag, the device and precision "auto" stands for).
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import JobCancelled

__all__ = [
    "Context",
    "DeviceInfo",
    "Loader",
    "ModelCache",
    "ModelContext",
    "probe_device",
    "resolve_dtype",
    "resolve_precision",
]

Loader = Callable[..., Any]  # loader(source, device=..., dtype=...) -> model


class Context(Protocol):
    """What a job needs from its runner (``process.worker.JobContext``, ``cli.CliContext``)."""

    job: str

    def model_for(self, source: str, device: str = "auto", dtype: str = "auto") -> Any: ...
    def progress(self, stage: str, current: int, total: int, message: str = "") -> None: ...
    def log(self, level: str, message: str) -> None: ...
    def result(self, files: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> None: ...
    def cancelled(self) -> bool: ...
    def check_cancel(self) -> None: ...


@dataclass(frozen=True)
class DeviceInfo:
    """What ``ready`` reports: the default device and the torch build."""

    device: str  # "cuda", "mps" or "cpu" (or what --device forced)
    torch: str | None  # torch version, None when torch cannot be imported
    cuda: str | None  # CUDA version of the torch build, None on CPU/MPS builds
    problem: str | None = None  # why torch could not be imported


def probe_device(requested: str = "auto") -> DeviceInfo:
    """Import torch (slow) and pick the default device: CUDA, then Apple MPS, then CPU."""
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install (missing DLL, bad wheel)
        return DeviceInfo("cpu", None, None, f"{type(exc).__name__}: {exc}")
    if requested != "auto":
        device = requested
    elif torch.cuda.is_available():
        device = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    return DeviceInfo(device, str(torch.__version__), torch.version.cuda)


def resolve_dtype(dtype: str, device: str) -> str:
    """Resolve "auto" (``model.precision.auto_precision``): bf16 on CUDA GPUs and x86 CPUs that compute
    it natively, fp16 on older CUDA GPUs, float32 elsewhere. Any other value is kept."""
    return resolve_precision(dtype, device)[0]


def resolve_precision(dtype: str, device: str) -> tuple[str, str]:
    """(precision, why) for a job's ``dtype`` on ``device``: "auto" resolved with its reason."""
    if dtype != "auto":
        return dtype, "as asked"
    from ..model.precision import auto_precision  # torch: imported when a job runs

    picked = auto_precision(device)
    return picked.dtype, picked.reason


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")  # never import torch just to free memory
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _default_loader(source: str, *, device: str, dtype: str) -> Any:
    from .. import weights  # torch: imported when the first model loads

    return weights.load_model(source, device=device, dtype=dtype)


class ModelCache:
    """The one loaded model, keyed by (source, device, dtype); a different key unloads the old one first."""

    def __init__(self, loader: Loader | None = None) -> None:
        self._loader = loader or _default_loader
        self.key: tuple[str, str, str] | None = None
        self.model: Any = None

    @property
    def source(self) -> str | None:
        return self.key[0] if self.key else None

    def get(self, source: str, device: str, dtype: str) -> Any:
        key = (source, device, dtype)
        if self.key == key:
            return self.model
        self.unload()
        model = self._loader(source, device=device, dtype=dtype)
        self.model, self.key = model, key
        return model

    def unload(self) -> bool:
        """Drop the model and give its memory back; True when there was one."""
        if self.key is None:
            return False
        self.model, self.key = None, None
        gc.collect()
        _empty_cuda_cache()
        return True


class ModelContext:
    """What every job context has (the engine process's and the command line's): models from a
    ``ModelCache`` kept between jobs, and the job's cancel flag. Subclasses say which device "auto" means
    (``default_device``) and how to ``log``."""

    def __init__(self, job: str, models: ModelCache) -> None:
        self.job = job
        self._models = models
        self._cancel = threading.Event()

    def default_device(self) -> str:
        raise NotImplementedError

    def log(self, level: str, message: str) -> None:
        raise NotImplementedError

    def model_for(self, source: str, device: str = "auto", dtype: str = "auto") -> Any:
        """The model for (source, device, dtype), loaded once and kept between jobs ("auto" resolved)."""
        device = self.default_device() if device == "auto" else device
        dtype, why = resolve_precision(dtype, device)
        loading = self._models.key != (source, device, dtype)
        what = "Loading model" if loading else "Model"
        self.log("info", f"{what} {source} on {device} in {dtype} ({why})")  # every job says its precision
        return self._models.get(source, device, dtype)

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancel(self) -> None:
        """Raise JobCancelled if the user cancelled; call between frames, chunks and stages."""
        if self._cancel.is_set():
            raise JobCancelled()
