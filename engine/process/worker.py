"""The engine process (``python -m engine serve``): reads requests on stdin, runs jobs, streams events.

Pipes. stdin carries requests and stdout carries events, one JSON line each (see ``protocol``). stdout
is reserved for the protocol: at start the real stdout is duplicated for events and fd 1 / ``sys.stdout``
are pointed at stderr, so whatever a library prints lands in the engine log, never in the pipe. stdin is
read through its own duplicate and fd 0 is pointed at the null device for the same reason.

Threads. A daemon reader thread decodes requests and answers the quick ones at once (``status``,
``cancel``, ``shutdown``, bad lines), even while a job runs. The main thread runs jobs, loads and unloads
models, and exits; all torch work happens on it.

Choices:

* ``ready`` is sent once, after torch is imported and the default device is known (importing torch
  takes seconds; the client shows "starting" meanwhile). Requests sent earlier wait in the pipe and are
  answered after ``ready``. If torch cannot be imported, ``ready`` says ``torch: null`` and jobs end with
  an error that says so, while ``status``/``shutdown`` keep working.
* One job at a time. A ``reconstruct`` that arrives while another runs is **queued** (first in, first
  out) and a ``log`` event gives its position; nothing is refused, so a batch client can queue a shot
  list. (The Blender UI itself submits one job at a time.)
* ``cancel`` of the running job sets a flag that the job checks between frames, chunks and stages
  (``JobContext.check_cancel``); ``cancel`` of a queued job removes it and sends ``interrupted`` for it.
* ``unload`` frees the model after the running job (at once when idle). With ``--idle-timeout S`` the
  model is unloaded after S idle seconds; the process stays up.
* ``shutdown``, SIGTERM/SIGINT and stdin EOF (Blender gone) cancel the running job, interrupt the
  queued ones and exit 0. A second signal exits at once.
* Every job ends with exactly one of ``finished``, ``interrupted`` (``errors.JobCancelled``) or
  ``error`` (``errors.UserError``: its message as written; any other exception: ``"Type: message"``
  plus the traceback). A bad request never kills the worker: it is answered with ``error``.

The job itself is ``jobs.run_job(request, context)`` (imported lazily); it returns a summary
dict (or None) for ``finished``. Tests inject another ``runner`` and drive ``Worker`` with in-memory
streams.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

from ..errors import JobCancelled, UserError, explain
from ..jobs.context import DeviceInfo, Loader, ModelCache, ModelContext, probe_device
from ..version import ENGINE_VERSION
from .protocol import (
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
    Request,
    ResultEvent,
    ShutdownRequest,
    StatusEvent,
    StatusRequest,
    UnloadRequest,
    decode_request,
)

log = logging.getLogger(__name__)
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

Runner = Callable[[ReconstructRequest, "JobContext"], "Mapping[str, Any] | None"]


class JobContext(ModelContext):
    """What a job runner gets in the engine process: the worker's model cache, event emitters and the
    cancel flag of its job."""

    def __init__(self, worker: Worker, request: ReconstructRequest) -> None:
        super().__init__(request.job, worker.models)
        self.request = request
        self.device = worker.device_info.device  # default device of this engine
        self.device_info = worker.device_info
        self._worker = worker

    def default_device(self) -> str:
        return self.device

    def progress(self, stage: str, current: int, total: int, message: str = "") -> None:
        self._worker.emit(
            ProgressEvent(job=self.job, stage=stage, current=current, total=total, message=message)
        )

    def log(self, level: str, message: str) -> None:
        self._worker.emit(LogEvent(level=level, message=message, job=self.job))

    def result(self, files: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> None:
        """Report written files (name → path; "bundle" for reconstruction.npz) and a JSON summary."""
        paths = {name: os.fspath(path) for name, path in files.items()}
        self._worker.emit(ResultEvent(job=self.job, files=paths, summary=dict(summary or {})))


def _default_runner(request: ReconstructRequest, context: JobContext) -> Mapping[str, Any] | None:
    if context.device_info.torch is None:
        raise UserError(
            "PyTorch is not installed in the engine's Python "
            f"({sys.executable}): {context.device_info.problem}. Set up the engine in the add-on preferences."
        )
    from ..jobs import run_job  # the jobs import numpy, formats and geometry: not needed to start

    return run_job(request, context)


class Worker:
    """The request loop. ``run()`` blocks until shutdown (or input EOF) and returns the exit code."""

    def __init__(
        self,
        requests: Iterable[str],
        events: TextIO,
        *,
        runner: Runner | None = None,
        loader: Loader | None = None,
        device_info: DeviceInfo | None = None,
        device: str = "auto",
        idle_timeout: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._input = requests
        self._output = events
        self._runner = runner or _default_runner
        self._requested_device = device
        self.device_info = device_info  # probed in run() when None
        self.idle_timeout = idle_timeout
        self._clock = clock
        self.models = ModelCache(loader)

        self._emit_lock = threading.Lock()
        self._output_broken = False
        self._cond = threading.Condition()
        self._queue: deque[ReconstructRequest] = deque()
        self._running: JobContext | None = None
        self._shutdown = False
        self._unload_pending = False
        self._idle_since = clock()
        self._reader: threading.Thread | None = None
        self._handling = threading.Lock()  # held while a request is answered; run() waits for it at exit

    # --- events --------------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Write one event line and flush. Thread-safe; a closed pipe (client gone) triggers shutdown."""
        try:
            line = event.encode()
        except ProtocolError as exc:
            log.error("cannot encode %s: %s", event.TYPE, exc)
            if not event.terminal_job:
                return
            line = ErrorEvent(job=event.terminal_job, message=f"Internal error: {exc}").encode()
        if isinstance(event, LogEvent | ErrorEvent):  # the engine log (stderr) keeps the story too
            level = "error" if isinstance(event, ErrorEvent) else event.level
            log.log(_LOG_LEVELS[level], "[%s] %s", event.job or "engine", event.message)
        with self._emit_lock:
            if self._output_broken:
                return
            try:
                self._output.write(line + "\n")
                self._output.flush()
            except (OSError, ValueError):  # broken pipe, or the stream was closed
                self._output_broken = True
        if self._output_broken:
            self.request_shutdown("the client closed the event pipe")

    def _status(self) -> StatusEvent:
        with self._cond:
            running = self._running
            return StatusEvent(
                busy=running.job if running else None,
                model=self.models.source,
                device=self.device_info.device if self.device_info else "unknown",
                idle_seconds=0.0 if running else max(0.0, self._clock() - self._idle_since),
                queued=tuple(request.job for request in self._queue),
            )

    # --- requests (reader thread) --------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            for line in self._input:
                if not line.strip():
                    continue
                with self._handling:
                    self.handle_line(line)
                if self._shutdown:
                    break
        except (OSError, ValueError) as exc:
            log.warning("reading requests failed: %s", exc)
        finally:
            self.request_shutdown("stdin closed")

    def handle_line(self, line: str) -> None:
        """Decode and dispatch one request line; every failure becomes an ``error`` event."""
        try:
            request = decode_request(line)
        except ProtocolError as exc:
            job = exc.job if exc.job and not self._is_known(exc.job) else None
            self.emit(ErrorEvent(job=job, message=f"Bad request: {exc}"))
            return
        try:
            self.dispatch(request)
        except Exception as exc:  # a bug here must not kill the worker
            log.exception("handling %s failed", request.TYPE)
            self.emit(ErrorEvent(job=None, message=explain(exc), traceback=traceback.format_exc()))

    def _is_known(self, job: str) -> bool:
        with self._cond:
            running = self._running is not None and self._running.job == job
            return running or any(request.job == job for request in self._queue)

    def dispatch(self, request: Request) -> None:
        if isinstance(request, ReconstructRequest):
            self._enqueue(request)
        elif isinstance(request, CancelRequest):
            self._cancel(request.job)
        elif isinstance(request, StatusRequest):
            self.emit(self._status())
        elif isinstance(request, UnloadRequest):
            with self._cond:
                self._unload_pending = True
                running = self._running.job if self._running else None
                self._cond.notify_all()
            if running:
                self.emit(LogEvent(level="info", message=f"The model will be unloaded after job {running}."))
        elif isinstance(request, ShutdownRequest):
            self.request_shutdown("shutdown requested")
        else:  # a request type added to the protocol but not handled here
            self.emit(
                ErrorEvent(job=None, message=f"Request {request.TYPE!s} is not supported by this engine.")
            )

    def _enqueue(self, request: ReconstructRequest) -> None:
        with self._cond:  # events sent under the lock, so "queued" comes before that job's own events
            if self._shutdown:
                self.emit(InterruptedEvent(job=request.job, message="The engine is shutting down."))
            elif self._is_known(request.job):
                self.emit(ErrorEvent(job=None, message=f"Job id {request.job} is already running or queued."))
            else:
                ahead = len(self._queue) + (1 if self._running else 0)
                position = len(self._queue) + 1  # 1: runs next
                self._queue.append(request)
                self._cond.notify_all()
                if ahead:
                    message = f"Job {request.job} queued at position {position} ({ahead} job(s) ahead)."
                    self.emit(LogEvent(level="info", message=message, job=request.job))

    def _cancel(self, job: str) -> None:
        with self._cond:
            running = self._running if self._running and self._running.job == job else None
            queued = next((request for request in self._queue if request.job == job), None)
            if running:
                running.cancel()
            elif queued:
                self._queue.remove(queued)
        if running:
            self.emit(LogEvent(level="info", message=f"Cancelling job {job}...", job=job))
        elif queued:
            self.emit(InterruptedEvent(job=job, message="Cancelled before it started."))
        else:
            self.emit(LogEvent(level="warning", message=f"Cancel: no running or queued job {job}."))

    def request_shutdown(self, reason: str = "shutdown requested") -> None:
        """Cancel the running job, interrupt queued ones and let ``run()`` return. Idempotent, any thread."""
        with self._cond:
            if self._shutdown:
                return
            log.info("shutting down: %s", reason)  # before run() can return and the process exit
            self._shutdown = True
            dropped = list(self._queue)
            self._queue.clear()
            if self._running:
                self._running.cancel()
            for request in dropped:  # under the lock: sent before run() can return
                self.emit(InterruptedEvent(job=request.job, message="The engine is shutting down."))
            self._cond.notify_all()

    # --- main loop -----------------------------------------------------------------------------------

    def _idle_wait(self) -> float | None:
        """Seconds until the idle unload is due (<= 0: now), None when it never is."""
        if self.idle_timeout <= 0 or self.models.key is None or self._running:
            return None
        return self.idle_timeout - (self._clock() - self._idle_since)

    def run(self) -> int:
        if self.device_info is None:
            self.device_info = probe_device(self._requested_device)
        info = self.device_info
        self.emit(
            ReadyEvent(
                protocol=PROTOCOL_VERSION,
                engine=ENGINE_VERSION,
                device=info.device,
                torch=info.torch,
                cuda=info.cuda,
                model=self.models.source,
                pid=os.getpid(),
            )
        )
        if info.problem:
            self.emit(LogEvent(level="error", message=f"PyTorch could not be imported: {info.problem}"))
        self._reader = threading.Thread(target=self._read_loop, name="engine-requests", daemon=True)
        self._reader.start()

        while True:
            with self._cond:
                while not (self._shutdown or self._unload_pending or self._queue):
                    wait = self._idle_wait()
                    if wait is not None and wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._shutdown:
                    break
                context = None
                if self._unload_pending:
                    self._unload_pending = False
                    action = "unload"
                elif self._queue:
                    context = self._running = JobContext(self, self._queue.popleft())
                    action = "job"
                else:
                    action = "idle"
            if context is not None:
                self._run_job(context)
            elif action == "unload":
                message = "Model unloaded." if self.models.unload() else "No model was loaded."
                self.emit(LogEvent(level="info", message=message))
            elif self.models.unload():
                self.emit(
                    LogEvent(level="info", message=f"Model unloaded after {self.idle_timeout:g} s idle.")
                )
        self.models.unload()
        if self._handling.acquire(timeout=2.0):  # let the reader finish the answer it is writing
            self._handling.release()
        return 0

    def _run_job(self, context: JobContext) -> None:
        job = context.job
        fatal: BaseException | None = None
        try:
            summary = self._runner(context.request, context)
            terminal: Event = FinishedEvent(job=job, summary=dict(summary or {}))
        except JobCancelled as exc:
            terminal = InterruptedEvent(job=job, message=str(exc) or "Cancelled.")
        except UserError as exc:
            terminal = ErrorEvent(
                job=job, message=str(exc) or "The job failed.", traceback=traceback.format_exc()
            )
        except BaseException as exc:  # every job must end with a terminal event
            terminal = ErrorEvent(job=job, message=explain(exc), traceback=traceback.format_exc())
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: report, then let it go on
                fatal = exc
        with self._cond:
            self._running = None
            self._idle_since = self._clock()
        self.emit(terminal)
        if fatal is not None:
            raise fatal


# --- process entry point ----------------------------------------------------------------------------


def _protocol_streams() -> tuple[TextIO, TextIO]:
    """Take fds 0/1 for the protocol and point fd 0 at the null device and fd 1 (and sys.stdout) at stderr."""
    event_fd = os.dup(1)
    request_fd = os.dup(0)
    os.dup2(2, 1)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    sys.stdout = sys.stderr
    events = os.fdopen(event_fd, "w", encoding="utf-8", newline="\n")
    requests = os.fdopen(request_fd, "r", encoding="utf-8", errors="replace")
    return requests, events


def main(argv: list[str] | None = None) -> int:
    """``python -m engine serve [--idle-timeout S] [--device D]``: serve requests until shutdown."""
    parser = argparse.ArgumentParser(prog="python -m engine serve", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="unload the model after this idle time",
    )
    parser.add_argument("--device", default="auto", help="default device: auto, cpu, cuda, cuda:N, mps")
    args = parser.parse_args(argv)

    requests, events = _protocol_streams()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    worker = Worker(requests, events, device=args.device, idle_timeout=max(0.0, args.idle_timeout))

    signalled = []

    def on_signal(signum: int, _frame: Any) -> None:
        if signalled:  # second signal: stop now
            os._exit(128 + signum)
        signalled.append(signum)
        threading.Thread(target=worker.request_shutdown, args=(f"signal {signum}",), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = worker.run()
    for stream in (sys.stderr, events):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # Exit without interpreter teardown: the reader thread may be blocked on stdin, and torch's atexit
    # handlers have nothing to save.
    os._exit(code)
