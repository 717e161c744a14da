"""A scripted fake engine process for UI and client tests (Krita AI Diffusion's MockClient idea).

Speaks the real protocol (``engine.process.protocol``) on stdin/stdout without torch or a model, and plays a
script for each ``reconstruct`` job. Run it through the real client::

    EngineClient(sys.executable, extension_root=ROOT, argv=fake_engine_argv(), env=fake_env("slow"))

Environment (fake-only):

* ``DA3_FAKE_SCRIPT``: ``ok`` (default), ``error``, ``slow``, ``crash`` or ``hang``. A job whose model is
  ``"fake:<script>"`` plays that script instead, so one engine can play several.
* ``DA3_FAKE_BUNDLE``: a prepared bundle folder; ``ok`` reports its files in ``result`` (writes nothing).
* ``DA3_FAKE_DELAY``: seconds per step (default 0.02; ``slow`` takes 200 steps).
* ``DA3_FAKE_READY_DELAY``: seconds before ``ready`` (default 0), to see the "starting" state.

Scripts:

* ``ok``: progress (decode, network, write), ``result`` with the bundle's files, ``finished``.
* ``error``: a little progress, then ``error`` with a fake traceback.
* ``slow``: 200 network steps; ``cancel`` or ``shutdown`` ends it with ``interrupted``.
* ``crash``: a little progress, a line on stderr, then exit code 3 without a terminal event.
* ``hang``: progress, then it ignores cancel and shutdown (and SIGTERM when ``DA3_FAKE_SCRIPT=hang``):
  only a kill stops it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path

from engine.errors import JobCancelled
from engine.process.protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    ErrorEvent,
    Event,
    FinishedEvent,
    InterruptedEvent,
    LogEvent,
    ProgressEvent,
    ProtocolError,
    ReadyEvent,
    ReconstructRequest,
    ResultEvent,
    ShutdownRequest,
    StatusEvent,
    StatusRequest,
    UnloadRequest,
    decode_request,
)
from engine.version import ENGINE_VERSION

SCRIPTS = ("ok", "error", "slow", "crash", "hang")
# bundle entry → ResultEvent.files key
FILE_NAMES = {
    "reconstruction.npz": "bundle",
    "points.ply": "points",
    "gaussians.ply": "gaussians",
    "mesh.ply": "mesh",
    "colmap": "colmap",
    "scene.glb": "glb",
    "transforms.json": "nerfstudio",
}


def fake_engine_argv(python: str = sys.executable) -> list[str]:
    """The command that runs this fake (pass as ``EngineClient(argv=...)``)."""
    return [python, str(Path(__file__).resolve())]


def fake_env(script: str = "ok", **extra: str) -> dict[str, str]:
    """Our environment plus ``DA3_FAKE_SCRIPT`` and any ``DA3_FAKE_*`` given as keywords (bundle=...)."""
    env = dict(os.environ, DA3_FAKE_SCRIPT=script)
    env.update({f"DA3_FAKE_{key.upper()}": str(value) for key, value in extra.items()})
    return env


def bundle_files(folder: str | None) -> dict[str, str]:
    if not folder:
        return {}
    return {FILE_NAMES.get(p.name, p.stem): str(p) for p in sorted(Path(folder).iterdir())}


class FakeEngine:
    def __init__(self) -> None:
        self.out = sys.stdout
        self.emit_lock = threading.Lock()
        self.cond = threading.Condition()
        self.queue: deque[ReconstructRequest] = deque()
        self.running: ReconstructRequest | None = None
        self.cancel_flag = threading.Event()
        self.hanging = False
        self.stopping = False
        self.model: str | None = None
        self.idle_since = time.monotonic()
        self.delay = float(os.environ.get("DA3_FAKE_DELAY", "0.02"))

    def emit(self, event: Event) -> None:
        with self.emit_lock:
            self.out.write(event.encode() + "\n")
            self.out.flush()

    # --- jobs ----------------------------------------------------------------------------------------

    def step(self, job: str, stage: str, current: int, total: int) -> None:
        if self.cancel_flag.is_set():
            raise JobCancelled()
        self.emit(ProgressEvent(job=job, stage=stage, current=current, total=total))
        self.cancel_flag.wait(self.delay)  # sleeps, but wakes at once on cancel

    def play(self, request: ReconstructRequest) -> Event:
        model = request.model
        script = model[5:] if model.startswith("fake:") else os.environ.get("DA3_FAKE_SCRIPT", "ok")
        job, n = request.job, len(request.inputs)
        if script not in SCRIPTS:
            return ErrorEvent(job=job, message=f"Unknown DA3_FAKE_SCRIPT {script!r}; use one of {SCRIPTS}.")
        self.model = model
        print(f"fake engine: job {job} plays {script!r}", file=sys.stderr, flush=True)
        self.step(job, "load", 1, 1)
        if script == "crash":
            self.step(job, "network", 1, n + 1)
            print("fake engine: simulated crash in the network", file=sys.stderr, flush=True)
            os._exit(3)
        if script == "error":
            self.step(job, "decode", 1, n)
            return ErrorEvent(
                job=job,
                message="Fake failure: the network produced nothing.",
                traceback='Traceback (most recent call last):\n  File "fake_engine.py"\nRuntimeError: fake\n',
            )
        if script == "hang":
            self.hanging = True
            self.emit(ProgressEvent(job=job, stage="network", current=0, total=n))
            threading.Event().wait()  # never returns; ignores cancel and shutdown
        steps = 200 if script == "slow" else n
        for i in range(steps):
            self.step(job, "network", i + 1, steps)
        self.step(job, "write", 1, 1)
        files = bundle_files(os.environ.get("DA3_FAKE_BUNDLE"))
        self.emit(ResultEvent(job=job, files=files, summary={"frames": n, "fake": True}))
        return FinishedEvent(job=job, summary={"frames": n, "seconds": 0.0, "fake": True})

    def job_loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                request = self.running = self.queue.popleft()
                self.cancel_flag.clear()
            try:
                terminal = self.play(request)
            except JobCancelled:
                terminal = InterruptedEvent(job=request.job)
            with self.cond:
                self.running = None
                self.idle_since = time.monotonic()
            self.emit(terminal)

    # --- requests ------------------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Answer one request line; False when the engine should stop reading."""
        try:
            request = decode_request(line)
        except ProtocolError as exc:
            self.emit(ErrorEvent(job=exc.job, message=f"Bad request: {exc}"))
            return True
        if isinstance(request, ReconstructRequest):
            with self.cond:
                ahead = len(self.queue) + (self.running is not None)
                self.queue.append(request)
                self.cond.notify_all()
            if ahead:
                self.emit(
                    LogEvent(
                        level="info", message=f"Job {request.job} queued ({ahead} ahead).", job=request.job
                    )
                )
        elif isinstance(request, CancelRequest):
            with self.cond:
                queued = next((r for r in self.queue if r.job == request.job), None)
                if queued:
                    self.queue.remove(queued)
                elif self.running and self.running.job == request.job:
                    self.cancel_flag.set()
            if queued:
                self.emit(InterruptedEvent(job=request.job, message="Cancelled before it started."))
        elif isinstance(request, StatusRequest):
            with self.cond:
                running = self.running
                queued = tuple(r.job for r in self.queue)
                idle = 0.0 if running else time.monotonic() - self.idle_since
            self.emit(
                StatusEvent(
                    busy=running and running.job,
                    model=self.model,
                    device="cpu",
                    idle_seconds=idle,
                    queued=queued,
                )
            )
        elif isinstance(request, UnloadRequest):
            self.model = None
            self.emit(LogEvent(level="info", message="Model unloaded."))
        elif isinstance(request, ShutdownRequest):
            return False
        return True

    def run(self) -> int:
        time.sleep(float(os.environ.get("DA3_FAKE_READY_DELAY", "0")))
        self.emit(
            ReadyEvent(
                protocol=PROTOCOL_VERSION,
                engine=ENGINE_VERSION,
                device="cpu",
                torch=None,
                cuda=None,
                pid=os.getpid(),
            )
        )
        jobs = threading.Thread(target=self.job_loop, daemon=True)
        jobs.start()
        for line in sys.stdin:
            if line.strip() and not self.handle(line):
                break
        with self.cond:  # shutdown or EOF: interrupt queued jobs, cancel the running one
            dropped = list(self.queue)
            self.queue.clear()
            self.stopping = True
            self.cancel_flag.set()
            self.cond.notify_all()
        for request in dropped:
            self.emit(InterruptedEvent(job=request.job, message="The engine is shutting down."))
        jobs.join()  # a hanging job never ends: only a kill stops this process
        return 0


if __name__ == "__main__":
    if os.environ.get("DA3_FAKE_SCRIPT") == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(FakeEngine().run())
