""" "Set up engine": make the engine's virtual environment with uv and install the right PyTorch.

uv ships inside the extension (``wheels/``, one zip per platform). The steps are plain command lines
(``setup_steps``): ``uv venv`` on Blender's own Python, ``uv pip install torch`` with the PyTorch
build for this machine's accelerator, ``uv pip install -r engine/requirements.txt``, then a check that
imports torch and says which device it sees.

The accelerator is detected here (``detect_accelerator``: NVIDIA driver from ``nvidia-smi``, AMD GPU
architectures from ``rocminfo``, Apple silicon), shown to the user, and handed to uv
(``UV_CUDA_DRIVER_VERSION`` / ``UV_AMD_GPU_ARCHITECTURE`` with ``--torch-backend=auto``), so the build
uv picks — CUDA matching the driver, ROCm for the GPU, MPS on Apple silicon, else CPU — comes from the
same facts the UI shows.

``SetupRunner`` runs the steps one after the other in a background thread, never on Blender's main
thread: output goes to a queue and a log file, ``poll()`` (called from a Blender timer) folds it into a
``SetupProgress``; ``explain_failure`` turns a failed step's output into one line that says what to do.
Nothing here touches the network by itself; ``refusal`` says why setup must not run.
"""

from __future__ import annotations

import os
import platform as platform_module
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .engine_env import venv_python

__all__ = [
    "Accelerator",
    "SetupProgress",
    "SetupRunner",
    "SetupStep",
    "detect_accelerator",
    "explain_failure",
    "find_uv",
    "parse_nvidia_smi",
    "parse_rocminfo",
    "parse_uv_line",
    "refusal",
    "run_tool",
    "setup_steps",
    "unsupported_platform",
]

# CUDA 12 builds of PyTorch need at least this NVIDIA driver (CUDA 12.0 with minor-version compatibility).
MIN_CUDA12_DRIVER = (525, 60, 13)
_DRIVER_RE = re.compile(r"Driver Version:\s*([0-9][0-9.]*)")
_VERSION_LINE_RE = re.compile(r"^\s*([0-9]{3,}\.[0-9]+(?:\.[0-9]+)?)\s*(?:,|$)")
_GFX_RE = re.compile(r"^\s*Name:\s*(gfx[0-9a-f]+)\s*$", re.IGNORECASE)
_DOWNLOADING_RE = re.compile(r"^\s*Downloading (\S+) \(([0-9.]+)\s*([KMG]i?B)\)")
_DOWNLOADED_RE = re.compile(r"^\s*Downloaded (\S+)")
_UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def refusal(online_access: bool) -> str | None:
    """Why setup may not run now (None: it may). It downloads PyTorch, so it needs online access."""
    if not online_access:
        return (
            "Online access is off: turn on Preferences > System > Network > Allow Online Access, then "
            "click 'Set up engine' again (it downloads PyTorch, about 1-3 GB). Or choose an existing "
            "Python with PyTorch as the engine Python."
        )
    return None


# --- the accelerator --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accelerator:
    """What PyTorch build this machine wants: ``kind`` is cuda, rocm, mps or cpu; ``detail`` is the NVIDIA
    driver version (cuda) or the AMD GPU architecture (rocm); ``note`` a caveat worth showing."""

    kind: str
    detail: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        return {
            "cuda": f"NVIDIA GPU, driver {self.detail}: CUDA build",
            "rocm": f"AMD GPU {self.detail}: ROCm build",
            "mps": "Apple silicon: build with Metal (MPS)",
            "cpu": "no supported GPU found: CPU build",
        }[self.kind]

    def uv_environment(self) -> dict[str, str]:
        """The facts uv's ``--torch-backend=auto`` reads, set to what we detected."""
        if self.kind == "cuda":
            return {"UV_CUDA_DRIVER_VERSION": self.detail}
        if self.kind == "rocm":
            return {"UV_AMD_GPU_ARCHITECTURE": self.detail}
        return {}

    @property
    def torch_backend(self) -> str:
        """``--torch-backend`` for uv: auto for GPUs (uv maps the driver or architecture to its index),
        cpu where there is no GPU (so a driverless machine never downloads a CUDA build)."""
        return "cpu" if self.kind == "cpu" else "auto"


def parse_nvidia_smi(text: str) -> str | None:
    """The driver version from ``nvidia-smi --query-gpu=driver_version --format=csv,noheader`` (one line
    per GPU) or from the plain ``nvidia-smi`` banner ("Driver Version: 550.54.14"); None if absent."""
    match = _DRIVER_RE.search(text)
    if match:
        return match.group(1)
    for line in text.splitlines():
        match = _VERSION_LINE_RE.match(line)
        if match:
            return match.group(1)
    return None


def parse_rocminfo(text: str) -> list[str]:
    """The GPU architectures (``gfx1100``…) of the GPU agents ``rocminfo`` lists (CPU agents skipped)."""
    archs: list[str] = []
    for block in re.split(r"\n\*{5,}\s*\n", text):
        if not re.search(r"Device Type:\s*GPU", block):
            continue
        for line in block.splitlines():
            match = _GFX_RE.match(line)
            if match and match.group(1).lower() not in archs:
                archs.append(match.group(1).lower())
                break
    return archs


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def run_tool(argv: list[str], timeout: float = 10.0) -> str | None:
    """A tool's standard output, or None when it is missing, fails or hangs."""
    exe = shutil.which(argv[0]) if not os.path.isabs(argv[0]) else argv[0]
    if not exe:
        return None
    try:
        out = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def detect_accelerator(
    *,
    system: str | None = None,
    machine: str | None = None,
    run: Callable[[list[str]], str | None] = run_tool,
) -> Accelerator:
    """The accelerator PyTorch should be built for on this machine (``run`` runs a tool and returns its
    output or None; tests give recorded outputs)."""
    system = (system or platform_module.system()).lower()
    machine = (machine or platform_module.machine()).lower()
    if system == "darwin":
        return Accelerator("mps") if machine in ("arm64", "aarch64") else Accelerator("cpu")
    output = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    driver = parse_nvidia_smi(output) if output else None
    if driver:
        note = ""
        if _version_tuple(driver) < MIN_CUDA12_DRIVER:
            note = (
                f"NVIDIA driver {driver} is older than current PyTorch CUDA builds need "
                f"({'.'.join(map(str, MIN_CUDA12_DRIVER))}+): uv may fall back to the CPU build. "
                "Update the driver for GPU speed."
            )
        return Accelerator("cuda", driver, note)
    if system == "linux":
        output = run(["rocminfo"])
        archs = parse_rocminfo(output) if output else []
        if archs:
            return Accelerator("rocm", archs[0])
    return Accelerator("cpu")


# --- the steps --------------------------------------------------------------------------------------


def find_uv() -> str | None:
    """The uv executable of the bundled wheel (or one on PATH), None when there is none.

    Blender unpacks an extension's wheels itself: the binary stays in ``uv-<version>.data/scripts/``
    beside the ``uv`` package, without its executable bit, where uv's own ``find_uv_bin`` does not look.
    """
    try:
        import uv  # installed by Blender from the extension's wheels/
    except ImportError:
        return shutil.which("uv")
    name = "uv.exe" if os.name == "nt" else "uv"
    site = Path(uv.__file__).resolve().parents[1]
    for candidate in sorted(site.glob(f"uv-*.data/scripts/{name}")):
        if os.name != "nt" and not os.access(candidate, os.X_OK):
            try:
                candidate.chmod(candidate.stat().st_mode | 0o111)
            except OSError:
                continue
        return os.fspath(candidate)
    try:
        return uv.find_uv_bin()
    except FileNotFoundError:
        return shutil.which("uv")


@dataclass(frozen=True)
class SetupStep:
    label: str
    argv: tuple[str, ...]
    weight: float  # share of the whole setup's progress bar
    env: tuple[tuple[str, str], ...] = ()  # added to the runner's environment for this step
    note: str = ""  # shown and logged when the step starts


def setup_steps(
    uv: str,
    base_python: str,
    venv_dir: str | os.PathLike,
    requirements: str | os.PathLike,
    accelerator: Accelerator,
    *,
    torch_requirement: str = "torch",
    wheel_folder: str | os.PathLike | None = None,
) -> list[SetupStep]:
    """The commands that build the engine environment, in order.

    ``wheel_folder`` (a folder of wheels, e.g. an offline mirror) is searched first; when it holds
    PyTorch, that build is installed as it is (no ``--torch-backend``).
    """
    py = os.fspath(venv_python(venv_dir))
    install = (uv, "pip", "install", "--python", py)
    if wheel_folder is not None:
        install += ("--find-links", os.fspath(wheel_folder))
    torch_args = (torch_requirement,)
    if wheel_folder is None:
        torch_args += (f"--torch-backend={accelerator.torch_backend}",)
    check = (
        "import torch, numpy, safetensors\n"
        "device = 'cuda' if torch.cuda.is_available() else "
        "'mps' if torch.backends.mps.is_available() else 'cpu'\n"
        "print('PyTorch', torch.__version__, 'sees', device)\n"
    )
    return [
        SetupStep(
            "Creating the environment", (uv, "venv", "--python", base_python, os.fspath(venv_dir)), 0.05
        ),
        SetupStep(
            f"Installing PyTorch ({accelerator.label})",
            install + torch_args,
            0.75,
            tuple(sorted(accelerator.uv_environment().items())),
            accelerator.note,
        ),
        SetupStep("Installing the engine's requirements", install + ("-r", os.fspath(requirements)), 0.15),
        SetupStep("Checking the engine", (py, "-c", check), 0.05),
    ]


def _size(number: str, unit: str) -> float:
    return float(number) * _UNITS.get(unit, 1)


def parse_uv_line(line: str) -> tuple[str, str, float] | None:
    """What a line of uv's output says: ('downloading', package, bytes), ('downloaded', package, 0.0),
    ('text', line, 0.0) for a line worth showing, or None for noise."""
    match = _DOWNLOADING_RE.match(line)
    if match:
        return ("downloading", match.group(1), _size(match.group(2), match.group(3)))
    match = _DOWNLOADED_RE.match(line)
    if match:
        return ("downloaded", match.group(1), 0.0)
    stripped = line.strip()
    if stripped.startswith(
        ("Resolved", "Prepared", "Installed", "Creating", "Using ", "+ ", "error", "PyTorch ", "warning")
    ):
        return ("text", stripped, 0.0)
    return None


_FAILURES = (
    (
        ("no space left on device", "os error 28", "disk quota exceeded"),
        "The disk is full: free some space (PyTorch needs about 2-6 GB) and click 'Set up engine' again.",
    ),
    (
        (
            "failed to fetch",
            "error sending request",
            "dns error",
            "failed to lookup address",
            "connection refused",
            "network is unreachable",
            "tcp connect error",
            "timed out",
            "could not connect",
        ),
        "No connection to the package index: check the network (or proxy: HTTPS_PROXY) and click "
        "'Set up engine' again, or choose an existing Python with PyTorch as the engine Python.",
    ),
    (
        ("no wheels with a matching platform tag", "no matching distribution", "has no wheels with"),
        "PyTorch has no build for this platform and Python: choose an existing Python with PyTorch as "
        "the engine Python (see the log).",
    ),
    (
        ("permission denied", "access is denied"),
        "Permission denied writing the engine environment: check the extension's user folder (see the log).",
    ),
)


def explain_failure(label: str, code: int, lines: list[str], log_path: str | os.PathLike) -> str:
    """One line for a failed step: what happened and what to do (the log has the details)."""
    text = "\n".join(lines).lower()
    for needles, message in _FAILURES:
        if any(needle in text for needle in needles):
            return f"{label} failed. {message} Log: {log_path}"
    return f"{label} failed (exit code {code}). The log is in {log_path}."


def unsupported_platform(uv: str | None) -> str | None:
    """Why setup cannot run on this platform (None: it can)."""
    if uv:
        return None
    return (
        f"This copy of the extension has no uv for {sys.platform}/{platform_module.machine()}: install "
        "the DA3 Reconstruct zip made for your platform, or choose an existing Python with PyTorch as "
        "the engine Python."
    )


# --- the runner -------------------------------------------------------------------------------------


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
    """Runs setup steps one after the other in a background thread; ``poll()`` never blocks.

    Cancel is race-free: the check for a cancel and the start of a step's process happen under one lock,
    and ``cancel()`` takes that lock before it stops the process, so a cancel either prevents the start
    or finds the started process (and its whole process group) to stop.
    """

    def __init__(
        self,
        steps: list[SetupStep] | Callable[[], list[SetupStep]],
        log_path: str | os.PathLike,
        env: dict[str, str] | None = None,
    ):
        """``steps``, or a function that plans them (run in the background thread first: detecting the
        accelerator runs tools that may take seconds)."""
        self._plan = steps if callable(steps) else None
        self.steps = [] if callable(steps) else list(steps)
        self.log_path = Path(log_path)
        self.env = env
        self.progress = SetupProgress(steps=len(self.steps))
        self._lines: queue.Queue[tuple[int, str]] = queue.Queue()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._result: tuple[str, str] | None = None
        self._thread: threading.Thread | None = None
        self._step_done = 0.0  # progress weight of the finished steps
        self._step_fraction = 0.0
        self._announced: dict[str, float] = {}  # package -> bytes, this step
        self._downloaded: set[str] = set()
        self._last_output = ""

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.progress.state = "running"
        self._thread = threading.Thread(target=self._run, name="da3-engine-setup", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                _stop(proc)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the steps ended (scripts and tests); True when they did."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # --- background thread -------------------------------------------------------------------------

    def _popen(self, step: SetupStep) -> subprocess.Popen:
        env = dict(self.env if self.env is not None else os.environ)
        env.update(dict(step.env))
        return subprocess.Popen(
            step.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
            bufsize=1,
            start_new_session=os.name != "nt",  # its own process group: cancel stops uv's children too
        )

    def _run(self) -> None:
        with open(self.log_path, "w", encoding="utf-8") as log:
            if self._plan is not None:
                try:
                    steps = self._plan()
                except Exception as exc:  # noqa: BLE001 (a planning error is the setup's outcome, shown)
                    self._result = ("failed", f"Setup could not start: {exc}")
                    return
                self.progress.steps, self.steps = len(steps), steps
            for index, step in enumerate(self.steps):
                self._lines.put((index, f"\x00step {step.label}"))
                if step.note:
                    log.write(f"note: {step.note}\n")
                    self._lines.put((index, f"note: {step.note}"))
                log.write(f"$ {' '.join(step.argv)}\n")
                log.flush()
                recent: deque[str] = deque(maxlen=40)
                with self._lock:
                    if self._cancel.is_set():
                        self._result = ("cancelled", "Setup cancelled.")
                        return
                    try:
                        self._proc = self._popen(step)
                    except OSError as exc:
                        self._result = (
                            "failed",
                            f"{step.label} could not start: {exc}. See {self.log_path}.",
                        )
                        return
                for line in self._proc.stdout:
                    line = line.rstrip("\r\n")
                    log.write(line + "\n")
                    log.flush()
                    recent.append(line)
                    self._lines.put((index, line))
                code = self._proc.wait()
                if self._cancel.is_set():
                    self._result = ("cancelled", "Setup cancelled.")
                    return
                if code != 0:
                    self._result = ("failed", explain_failure(step.label, code, list(recent), self.log_path))
                    return
            self._result = ("done", "The engine is set up.")

    # --- main thread -------------------------------------------------------------------------------

    def _fold(self, line: str) -> None:
        p = self.progress
        parsed = parse_uv_line(line)
        if parsed is None:
            if line.strip():
                p.tail.append(line.strip())
            return
        kind, what, size = parsed
        if kind == "downloading":
            self._announced[what] = size
            p.detail = line.strip()
        elif kind == "downloaded":
            self._downloaded.add(what)
            p.detail = line.strip()
        else:
            p.detail = what
            if what.startswith("PyTorch "):
                self._last_output = what
        p.tail.append(line.strip())
        total = sum(self._announced.values())
        if total > 0:
            done = sum(size for name, size in self._announced.items() if name in self._downloaded)
            self._step_fraction = min(1.0, done / total)

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
                self._announced, self._downloaded = {}, set()
                p.step, p.label, p.detail = index + 1, line[6:], ""
                continue
            self._fold(line)
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
                if self._last_output:
                    p.message = f"The engine is set up: {self._last_output}."
        return p


def _stop(proc: subprocess.Popen) -> None:
    """Stop a step's process and everything it started."""
    try:
        if os.name != "nt":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
    except (ProcessLookupError, PermissionError):
        pass


def wait_for(runner: SetupRunner, timeout: float = 60.0, interval: float = 0.05) -> SetupProgress:
    """Poll until the runner ends (for scripts and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = runner.poll()
        if not progress.running:
            return progress
        time.sleep(interval)
    return runner.poll()
