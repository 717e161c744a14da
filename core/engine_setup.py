""" "Set up engine": create the engine's virtual environment and pip-install torch and the requirements.

The steps are plain command lines (``setup_steps``) that ``SetupRunner`` runs one after the other in a
subprocess, never on Blender's main thread: a reader thread collects the output into a queue and a log
file, and ``poll()`` (called from a Blender timer) turns it into a ``SetupProgress`` for the UI. pip runs
with ``--progress-bar raw``, which prints ``Progress <bytes> of <total>`` lines that give a real
download bar for the big torch wheel.

Nothing here touches the network by itself; ``refusal`` says why setup must not run (Blender's "Allow
Online Access" is off), and the operator checks it first.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .engine_env import venv_python

__all__ = [
    "SetupProgress",
    "SetupRunner",
    "SetupStep",
    "detect_cuda",
    "parse_pip_line",
    "refusal",
    "setup_steps",
    "torch_index_url",
]

TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_PROGRESS_RE = re.compile(r"^Progress (\d+) of (\d+)\s*$")
_DOWNLOAD_RE = re.compile(r"^\s*Downloading (\S+)")
_COLLECT_RE = re.compile(r"^\s*Collecting (\S+)")


def refusal(online_access: bool) -> str | None:
    """Why setup may not run now (None: it may). It downloads PyTorch, so it needs online access."""
    if not online_access:
        return (
            "Online access is off: turn on Preferences > System > Network > Allow Online Access, then "
            "click 'Set up engine' again (it downloads PyTorch, about 1-3 GB). Or choose an existing "
            "Python with PyTorch as the engine Python."
        )
    return None


def detect_cuda(nvidia_smi: str | None = None, timeout: float = 10.0) -> bool:
    """True when ``nvidia-smi -L`` lists a GPU (so the CUDA build of torch is worth installing)."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if not exe:
        return False
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def torch_index_url(cuda: bool, platform: str = sys.platform) -> str | None:
    """The wheel index for torch: CUDA 12.8 builds with a GPU, CPU builds otherwise; macOS uses PyPI
    (its wheels include Apple's MPS backend)."""
    if platform == "darwin":
        return None
    return TORCH_CUDA_INDEX if cuda else TORCH_CPU_INDEX


@dataclass(frozen=True)
class SetupStep:
    label: str
    argv: tuple[str, ...]
    weight: float  # share of the whole setup's progress bar


def setup_steps(
    base_python: str,
    venv_dir: str | os.PathLike,
    requirements: str | os.PathLike,
    *,
    cuda: bool,
    platform: str = sys.platform,
) -> list[SetupStep]:
    """The commands that build the engine environment, in order."""
    py = os.fspath(venv_python(venv_dir))
    pip = (py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "raw")
    index = torch_index_url(cuda, platform)
    torch_args = ("torch",) + (("--index-url", index) if index else ())
    return [
        SetupStep("Creating the environment", (base_python, "-m", "venv", os.fspath(venv_dir)), 0.05),
        SetupStep("Updating pip", (py, "-m", "pip", "install", "--upgrade", "pip"), 0.05),
        SetupStep(f"Installing PyTorch ({'CUDA' if cuda else 'CPU'})", pip + torch_args, 0.7),
        SetupStep("Installing the engine's requirements", pip + ("-r", os.fspath(requirements)), 0.15),
        SetupStep(
            "Checking the engine",
            (
                py,
                "-c",
                "import torch, numpy, safetensors; print('torch', torch.__version__, "
                "'cuda', torch.cuda.is_available())",
            ),
            0.05,
        ),
    ]


def parse_pip_line(line: str) -> tuple[str, float | None] | None:
    """What a pip output line says: ('download', fraction) for raw progress, ('text', None) for a line worth
    showing (Collecting/Downloading/Installing/Successfully), None for noise."""
    m = _PROGRESS_RE.match(line)
    if m:
        done, total = int(m.group(1)), int(m.group(2))
        return ("download", min(1.0, done / total) if total else None)
    stripped = line.strip()
    if _DOWNLOAD_RE.match(line) or _COLLECT_RE.match(line):
        return ("text", None)
    if stripped.startswith(("Installing collected packages", "Successfully installed", "ERROR", "torch ")):
        return ("text", None)
    return None


@dataclass
class SetupProgress:
    """What the preferences show while setup runs (and after)."""

    state: str = "idle"  # idle, running, done, failed, cancelled
    step: int = 0  # 1-based index of the running step
    steps: int = 0
    label: str = ""
    fraction: float = 0.0  # of the whole setup
    detail: str = ""  # the last interesting output line
    message: str = ""  # the outcome, for done/failed/cancelled
    tail: deque = field(default_factory=lambda: deque(maxlen=8))

    @property
    def running(self) -> bool:
        return self.state == "running"


class SetupRunner:
    """Runs setup steps one after the other in a background thread; ``poll()`` never blocks."""

    def __init__(
        self, steps: list[SetupStep], log_path: str | os.PathLike, env: dict[str, str] | None = None
    ):
        self.steps = list(steps)
        self.log_path = Path(log_path)
        self.env = env
        self.progress = SetupProgress(steps=len(self.steps))
        self._lines: queue.Queue[tuple[int, str]] = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._cancel = threading.Event()
        self._result: tuple[str, str] | None = None
        self._thread: threading.Thread | None = None
        self._step_done = 0.0  # progress weight of the finished steps
        self._step_fraction = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.progress.state = "running"
        self._thread = threading.Thread(target=self._run, name="da3-engine-setup", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the steps ended (scripts and tests); True when they did."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # --- background thread -------------------------------------------------------------------------

    def _run(self) -> None:
        with open(self.log_path, "w", encoding="utf-8") as log:
            for index, step in enumerate(self.steps):
                if self._cancel.is_set():
                    self._result = ("cancelled", "Setup cancelled.")
                    return
                self._lines.put((index, f"\x00step {step.label}"))
                log.write(f"$ {' '.join(step.argv)}\n")
                log.flush()
                try:
                    self._proc = subprocess.Popen(
                        step.argv,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        text=True,
                        errors="replace",
                        env=self.env,
                        bufsize=1,
                    )
                except OSError as exc:
                    self._result = ("failed", f"{step.label} could not start: {exc}. See {self.log_path}.")
                    return
                for line in self._proc.stdout:
                    line = line.rstrip("\r\n")
                    if not _PROGRESS_RE.match(line):
                        log.write(line + "\n")
                        log.flush()
                    self._lines.put((index, line))
                code = self._proc.wait()
                if self._cancel.is_set():
                    self._result = ("cancelled", "Setup cancelled.")
                    return
                if code != 0:
                    self._result = (
                        "failed",
                        f"{step.label} failed (exit code {code}). The log is in {self.log_path}.",
                    )
                    return
            self._result = ("done", "The engine is set up.")

    # --- main thread -------------------------------------------------------------------------------

    def poll(self) -> SetupProgress:
        """Fold the output received so far into ``progress`` (call from a timer on the main thread)."""
        p = self.progress
        while True:
            try:
                index, line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line.startswith("\x00step "):
                self._step_done = sum(s.weight for s in self.steps[:index])
                self._step_fraction = 0.0
                p.step, p.label, p.detail = index + 1, line[6:], ""
                continue
            parsed = parse_pip_line(line)
            if parsed is None:
                if line.strip():
                    p.tail.append(line.strip())
                continue
            kind, fraction = parsed
            if kind == "download" and fraction is not None:
                self._step_fraction = fraction
            else:
                p.detail = line.strip()
                p.tail.append(p.detail)
        total = sum(s.weight for s in self.steps) or 1.0
        weight = self.steps[p.step - 1].weight if p.step else 0.0
        p.fraction = min(1.0, (self._step_done + weight * self._step_fraction) / total)
        if (
            self._result is not None
            and self._lines.empty()
            and not (self._thread and self._thread.is_alive())
        ):
            p.state, p.message = self._result
            if p.state == "done":
                p.fraction = 1.0
        return p


def wait_for(runner: SetupRunner, timeout: float = 60.0, interval: float = 0.05) -> SetupProgress:
    """Poll until the runner ends (for scripts and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = runner.poll()
        if not progress.running:
            return progress
        time.sleep(interval)
    return runner.poll()
