"""Which Python runs the engine, and with what command line and environment.

Torch cannot ship inside an extension, so the engine runs in a Python of its own (DESIGN.md §4):

1. the Python chosen in the add-on preferences, when the user set one (an explicit choice wins, and a
   wrong one is an error rather than a silent fallback);
2. otherwise the virtual environment that "Set up engine" created under the extension's user folder;
3. otherwise none: the UI says "not set up" and how to fix it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EngineConfig", "PythonChoice", "choose_python", "engine_environment", "venv_python"]

# Variables of Blender's own Python that would break another interpreter.
_DROPPED_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__")


def venv_python(venv_dir: str | os.PathLike) -> Path:
    """The interpreter of a virtual environment (``Scripts\\python.exe`` on Windows, ``bin/python`` else)."""
    venv_dir = Path(venv_dir)
    if os.name == "nt":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


@dataclass(frozen=True)
class PythonChoice:
    """The engine Python that will be used (``path``), or why there is none (``problem``)."""

    path: str | None
    source: str  # "preferences", "engine environment" or "none"
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.path is not None and self.problem is None


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def choose_python(preference: str, venv_dir: str | os.PathLike | None) -> PythonChoice:
    """Pick the engine Python (see the module docstring for the order)."""
    preference = (preference or "").strip()
    if preference:
        path = os.path.abspath(os.path.expanduser(preference))
        if os.path.isdir(path):  # a venv folder picked instead of its interpreter: accept it
            path = os.fspath(venv_python(path))
        if not _is_executable(path):
            return PythonChoice(
                None,
                "preferences",
                f"The engine Python in the preferences does not exist or cannot run: {preference}. "
                "Choose a Python with PyTorch, or clear the field and click 'Set up engine'.",
            )
        return PythonChoice(path, "preferences")
    if venv_dir is not None:
        candidate = venv_python(venv_dir)
        if _is_executable(os.fspath(candidate)):
            return PythonChoice(os.fspath(candidate), "engine environment")
    return PythonChoice(
        None,
        "none",
        "The engine is not set up: click 'Set up engine' in the add-on preferences "
        "(or choose a Python that has PyTorch).",
    )


def engine_environment(
    base: dict[str, str] | None = None,
    *,
    model_cache: str = "",
    online: bool = False,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The engine process's environment: ours without Blender's Python variables, plus the model cache
    (``HF_HUB_CACHE``) and ``HF_HUB_OFFLINE=1`` unless Blender allows online access."""
    env = dict(os.environ if base is None else base)
    for name in _DROPPED_VARIABLES:
        env.pop(name, None)
    if model_cache:
        env["HF_HUB_CACHE"] = os.path.abspath(os.path.expanduser(model_cache))
    if online:
        env.pop("HF_HUB_OFFLINE", None)
    else:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class EngineConfig:
    """Everything needed to start an engine process; a change means a new process for the next job."""

    python: str
    extension_root: str
    env: tuple[tuple[str, str], ...] = ()  # sorted items, so configs compare by value
    args: tuple[str, ...] = ()  # extra `serve` arguments (--idle-timeout, --device)
    argv: tuple[str, ...] | None = None  # a whole command instead of `python -m engine serve` (tests)
    log_dir: str | None = None

    @classmethod
    def build(
        cls,
        python: str,
        extension_root: str,
        *,
        env: dict[str, str] | None = None,
        idle_minutes: float = 0.0,
        device: str = "auto",
        argv: list[str] | None = None,
        log_dir: str | None = None,
    ) -> EngineConfig:
        args: list[str] = []
        if idle_minutes > 0:
            args += ["--idle-timeout", f"{idle_minutes * 60:g}"]
        if device and device != "auto":
            args += ["--device", device]
        items = tuple(sorted((env if env is not None else dict(os.environ)).items()))
        return cls(python, extension_root, items, tuple(args), tuple(argv) if argv else None, log_dir)

    def client_kwargs(self) -> dict:
        """Keyword arguments for ``engine.process.client.EngineClient``."""
        return {
            "extension_root": self.extension_root,
            "env": dict(self.env),
            "args": self.args,
            "argv": list(self.argv) if self.argv else None,
            "log_dir": self.log_dir,
        }


def this_python() -> str:
    """The Python running this code (inside Blender: Blender's own; used to create the engine venv)."""
    return sys.executable
