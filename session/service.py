"""One engine process and its one running job, seen from Blender (no bpy, no torch).

``EngineService`` wraps ``engine.process.client.EngineClient``. It is the only consumer of the client's
events: ``pump()`` drains them (never blocking) and folds them into plain state that a panel can draw
and an operator can act on — the running job's stage and frame counts, its outcome, the engine's device
and loaded model, the last error. Blender calls ``pump()`` from the modal operator's timer on the main
thread; tests call it in a loop.

One job at a time: ``submit`` refuses a second job while one runs. A job ends in exactly one outcome:
``finished`` (with the bundle folder to import), ``cancelled`` or ``failed`` (with a message and
details). A crashed engine is a ``failed`` job and an "error" status, never an exception.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.process.client import EngineClient, EngineStartError, EngineState
from ..engine.process.protocol import (
    ErrorEvent,
    Event,
    FinishedEvent,
    InterruptedEvent,
    LogEvent,
    ProgressEvent,
    ReadyEvent,
    ReconstructRequest,
    ResultEvent,
    StatusEvent,
)
from .engine_env import EngineConfig

__all__ = ["BusyError", "EngineService", "EngineStatus", "JobState", "STAGE_LABELS"]

FORCE_STOP_AFTER_S = 10.0  # a second cancel this long after the first stops the engine process

STAGE_LABELS = {
    "load": "Loading model",
    "decode": "Reading images",
    "preprocess": "Preparing images",
    "network": "Running the network",
    "align": "Aligning",
    "postprocess": "Post-processing",
    "points": "Gathering points",
    "export": "Writing files",
    "write": "Writing the result",
    "metric": "Metric scale",
    "solve": "Floor and solve report",
    "fuse": "Fusing the mesh",
}
SHOT_STAGE_LABELS = {"network": "Solving chunk"}  # a shot's network stage counts chunks


class BusyError(RuntimeError):
    """A reconstruction is already running (one job at a time)."""


@dataclass
class JobState:
    """The running (or last) job as the UI sees it."""

    job: str
    model: str
    frames: int
    output: str = ""  # the folder the engine writes the bundle into
    started: float = field(default_factory=time.monotonic)
    stage: str = "starting"
    current: int = 0
    total: int = 0
    message: str = ""
    outcome: str | None = None  # None while running; "finished", "cancelled" or "failed"
    bundle: str | None = None  # folder of the result bundle (from the `result` event)
    summary: dict = field(default_factory=dict)
    error: str = ""  # short message for the user
    details: str = ""  # traceback or the engine's last stderr lines
    cancel_requested: float | None = None
    imported: bool = False  # the operator imported the result (or decided not to)
    unit: str = "images"  # what ``frames`` counts, for the panel ("images" or "frames" of a shot)
    meta: dict = field(default_factory=dict)  # what the importer needs besides the bundle (a shot's input)

    @property
    def running(self) -> bool:
        return self.outcome is None

    @property
    def fraction(self) -> float:
        return min(1.0, self.current / self.total) if self.total else 0.0

    @property
    def stage_label(self) -> str:
        if self.unit == "frames" and self.stage in SHOT_STAGE_LABELS:
            return SHOT_STAGE_LABELS[self.stage]
        return STAGE_LABELS.get(self.stage, self.stage.replace("_", " ").capitalize())

    @property
    def progress_text(self) -> str:
        """'Running the network 3/8' (or 'Cancelling…')."""
        if self.cancel_requested is not None and self.running:
            return "Cancelling..."
        counts = f" {self.current}/{self.total}" if self.total else ""
        return f"{self.stage_label}{counts}"

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class EngineStatus:
    kind: str  # not_set_up, stopped, starting, ready, busy, error
    text: str


class EngineService:
    """Owns the engine client and the job state. All methods are for the main thread."""

    def __init__(self) -> None:
        self.client: EngineClient | None = None
        self.config: EngineConfig | None = None
        self.job: JobState | None = None
        self.device: str | None = None
        self.torch: str | None = None
        self.loaded_model: str | None = None
        self.last_error: str | None = None  # engine-level, shown in the status line
        self.last_log: str = ""
        self._stopper: threading.Thread | None = None

    # --- engine ------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def configure(self, config: EngineConfig) -> None:
        """Use ``config`` for the next engine start; a running idle engine with another config is stopped."""
        if config == self.config and self.client is not None:
            return
        if self.busy:
            return  # applied after the job (the next configure call)
        self._stop_client(wait=True)
        self.config = config
        self.client = EngineClient(config.python, **config.client_kwargs())

    def _stop_client(self, wait: bool) -> None:
        client = self.client
        if client is None:
            return
        if wait:
            client.stop(timeout=3.0)
        else:
            self._stopper = threading.Thread(target=client.stop, kwargs={"timeout": 1.0}, daemon=True)
            self._stopper.start()

    def shutdown(self) -> None:
        """Stop the engine process (add-on unregister, Blender quit)."""
        self._stop_client(wait=True)
        if self._stopper is not None:
            self._stopper.join(timeout=5.0)
        self.pump()  # the running job's `interrupted`
        if self.job is not None and self.job.running:
            self._end(self.job, "cancelled", error="The engine was stopped.")
        self.client = None
        self.config = None
        self.loaded_model = None
        self.device = None

    def status(self, python_problem: str | None = None) -> EngineStatus:
        """The status line: not set up / stopped / starting / ready on DEVICE with MODEL / busy / error."""
        state = self.client.state if self.client is not None else EngineState.not_started
        if self.busy:
            return EngineStatus("busy", f"Busy: {self.job.progress_text}")
        if state in (EngineState.not_started, EngineState.dead) and python_problem:
            return EngineStatus("not_set_up", python_problem)
        if self.last_error:
            return EngineStatus("error", f"Error: {self.last_error}")
        if state == EngineState.starting:
            return EngineStatus("starting", "Starting the engine...")
        if state == EngineState.ready:
            model = _short_model(self.loaded_model) if self.loaded_model else "no model loaded"
            return EngineStatus("ready", f"Ready on {(self.device or 'cpu').upper()} with {model}")
        return EngineStatus("stopped", "Engine not running (it starts with the first reconstruction)")

    # --- jobs --------------------------------------------------------------------------------------

    def submit(self, request: ReconstructRequest) -> JobState:
        """Start a job (the engine starts first if needed). Raises BusyError; RuntimeError without config."""
        if self.busy:
            raise BusyError("A reconstruction is already running: wait for it or cancel it.")
        if self.client is None:
            raise RuntimeError("configure() the engine before submitting a job")
        if self._stopper is not None and self._stopper.is_alive():
            self._stopper.join(timeout=5.0)
        self.pump()  # leftovers of an earlier engine (e.g. an idle crash) belong to no job
        self.last_error = None
        job = JobState(
            job=request.job, model=request.model, frames=len(request.inputs), output=request.output
        )
        self.job = job
        try:
            self.client.submit(request)
        except EngineStartError as exc:
            self._end(job, "failed", error=str(exc))
            self.last_error = str(exc)
        except OSError as exc:
            self._end(job, "failed", error=f"Cannot talk to the engine: {exc}")
        return job

    def cancel(self) -> bool:
        """Cancel the running job. A second cancel after FORCE_STOP_AFTER_S stops the engine process."""
        job = self.job
        if job is None or not job.running or self.client is None:
            return False
        now = time.monotonic()
        if job.cancel_requested is None:
            job.cancel_requested = now
            if not self.client.cancel(job.job):
                self._end(job, "cancelled", error="Cancelled.")
            return True
        if now - job.cancel_requested >= FORCE_STOP_AFTER_S:
            self._stop_client(wait=False)  # its reader ends the job with `interrupted`
        return True

    def unload(self) -> bool:
        """Free the model in the engine (after the running job). False when no engine runs."""
        if self.client is None or not self.client.unload():
            return False
        self.client.request_status()
        return True

    def _end(self, job: JobState, outcome: str, *, error: str = "", details: str = "") -> None:
        if job.outcome is None:
            job.outcome = outcome
            job.error = error
            job.details = details

    # --- events ------------------------------------------------------------------------------------

    def pump(self) -> list[Event]:
        """Drain the client's events into this state; returns them (tests and the log use them)."""
        if self.client is None:
            return []
        events = self.client.poll()
        for event in events:
            self._apply(event)
        return events

    def _apply(self, event: Event) -> None:
        job = self.job if (self.job is not None and self.job.running) else None
        mine = job is not None and getattr(event, "job", None) == job.job
        if isinstance(event, ReadyEvent):
            self.device, self.torch = event.device, event.torch
            self.loaded_model = event.model
            if event.torch is None:
                self.last_error = "PyTorch is missing in the engine's Python: set up the engine again."
        elif isinstance(event, ProgressEvent) and mine:
            job.stage, job.current, job.total, job.message = (
                event.stage,
                event.current,
                event.total,
                event.message,
            )
        elif isinstance(event, ResultEvent) and mine:
            bundle = event.files.get("bundle")
            if bundle:  # the path of reconstruction.npz (or the folder itself)
                job.bundle = bundle if Path(bundle).is_dir() else str(Path(bundle).parent)
            job.summary = dict(event.summary)
        elif isinstance(event, FinishedEvent) and mine:
            job.summary = {**job.summary, **event.summary}
            self.loaded_model = job.model
            job.bundle = job.bundle or job.output  # the request's output folder holds the bundle
            self._end(job, "finished")
        elif isinstance(event, InterruptedEvent) and mine:
            self._end(job, "cancelled", error=event.message)
        elif isinstance(event, ErrorEvent):
            if mine:
                self._end(job, "failed", error=event.message, details=event.traceback)
            if event.exit_code is not None or event.job is None:
                self.last_error = event.message  # the engine itself is in trouble
            if event.exit_code is not None:
                self.loaded_model = None
        elif isinstance(event, StatusEvent):
            self.loaded_model = event.model
            self.device = event.device or self.device
        elif isinstance(event, LogEvent):
            self.last_log = event.message
            if event.message.startswith("Model unloaded"):
                self.loaded_model = None


def _short_model(model: str) -> str:
    """'depth-anything/DA3-SMALL' → 'DA3-SMALL'; a folder → its name."""
    text = model.rstrip("/\\")
    return text.replace("\\", "/").rsplit("/", 1)[-1] or model
