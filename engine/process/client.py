"""Starts the engine process and talks to it (the Blender side; stdlib + numpy only, never torch).

No event loop is needed: a reader thread turns the engine's stdout lines into events on a queue, and the
caller (a Blender timer on the main thread) drains it with :meth:`EngineClient.poll`::

    client = EngineClient(python_exe, extension_root=root, log_dir=cache_dir)
    job = client.submit(ReconstructRequest(job=new_job_id(), inputs=paths, output=folder, model=model))
    ...                              # every 0.1 s, on the main thread:
    for event in client.poll():      # ReadyEvent, ProgressEvent, ResultEvent, FinishedEvent, ...
        ...
    client.stop()                    # at unregister / quit

The engine starts on the first :meth:`submit` (or :meth:`start`) and stays up between jobs, so the model
stays loaded. Every submitted job gets exactly one terminal event (``finished``, ``interrupted`` or
``error``), also when the engine dies: its exit code and last stderr lines then become an ``error`` event
for the running and queued jobs (or one with ``job`` None when it was idle), and the next
:meth:`submit` starts a new engine. A stdout line that is not protocol becomes a ``log`` event.

The engine's stderr goes to ``<log_dir>/engine.log`` (rotated: each start and every 2 MB begin a new
file, 3 old ones are kept) and to a ring buffer of its last 50 lines (:meth:`stderr_tail`).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path

from .protocol import (
    PROTOCOL_VERSION,
    CancelRequest,
    ErrorEvent,
    Event,
    InterruptedEvent,
    LogEvent,
    ProtocolError,
    ReadyEvent,
    ReconstructRequest,
    Request,
    ShutdownRequest,
    StatusRequest,
    UnloadRequest,
    decode_event,
)

STDERR_TAIL_LINES = 50
LOG_MAX_BYTES = 2_000_000
LOG_BACKUPS = 3


class EngineState(StrEnum):
    not_started = "not started"
    starting = "starting"  # process spawned, waiting for `ready` (torch import takes seconds)
    ready = "ready"  # idle, model possibly loaded
    busy = "busy"  # at least one submitted job has no terminal event yet
    dead = "dead"  # the process exited without being asked to; the next submit() starts a new one


class EngineStartError(RuntimeError):
    """The engine process could not be started (no such Python, not executable, ...)."""


def describe_exit(code: int | None) -> str:
    """'exit code 3' / 'killed by SIGKILL (exit code -9)', with a hint for the usual causes."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " - often the system ran out of memory" if name == "SIGKILL" else ""
        return f"killed by {name} (exit code {code}){hint}"
    return f"exit code {code}"


class _Session:
    """One engine process and the jobs sent to it."""

    def __init__(self, proc: subprocess.Popen, number: int) -> None:
        self.proc = proc
        self.number = number
        self.pending: list[str] = []  # jobs without a terminal event, in submit order
        self.done: set[str] = set()
        self.ready: ReadyEvent | None = None
        self.stopping = False  # stop() asked for the exit
        self.dead = False  # the stdout reader saw EOF and the exit was handled
        self.exit_code: int | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.threads: list[threading.Thread] = []

    def running(self) -> bool:
        return not self.dead and self.proc.poll() is None


class EngineClient:
    """Owns one engine process at a time; thread-safe, but meant to be driven from one thread."""

    def __init__(
        self,
        python_exe: str | os.PathLike[str],
        *,
        extension_root: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        argv: Sequence[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """``python_exe``: the engine's Python (with torch). ``extension_root``: the folder that contains the
        ``engine`` package (put on PYTHONPATH and used as cwd). ``env``: the child's environment (default:
        ours). ``args``: extra ``serve`` arguments (``--idle-timeout 600``). ``argv``: the whole command
        instead of ``python -m engine serve`` (tests run the fake engine this way). ``log_dir``: where
        ``engine.log`` goes (None: only the in-memory tail)."""
        self.python_exe = os.fspath(python_exe)
        self.extension_root = os.path.abspath(os.fspath(extension_root))
        self._env = dict(env) if env is not None else None
        self.args = tuple(args)
        self.argv = list(argv) if argv is not None else None
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._events: queue.Queue[Event] = queue.Queue()
        self._lock = threading.RLock()
        self._session: _Session | None = None
        self._last: _Session | None = None  # the most recent session, also after it ended
        self._started = 0
        self._log: logging.handlers.RotatingFileHandler | None = None

    # --- process ---------------------------------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        return self.argv or [self.python_exe, "-m", "engine", "serve", *self.args]

    @property
    def alive(self) -> bool:
        with self._lock:
            return self._session is not None and self._session.running()

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._session.proc.pid if self._session else None

    @property
    def ready_info(self) -> ReadyEvent | None:
        """The ``ready`` event of the current engine (device, torch and CUDA versions), None before it."""
        with self._lock:
            return self._session.ready if self._session else None

    @property
    def state(self) -> EngineState:
        with self._lock:
            session = self._session
            if session is None:
                return EngineState.not_started
            if not session.running():
                return EngineState.dead
            if session.ready is None:
                return EngineState.starting
            return EngineState.busy if session.pending else EngineState.ready

    @property
    def pending_jobs(self) -> list[str]:
        """Jobs submitted to the current engine that have no terminal event yet."""
        with self._lock:
            return list(self._session.pending) if self._session else []

    def stderr_tail(self) -> list[str]:
        """The last engine stderr lines (of the current or the last engine)."""
        with self._lock:
            session = self._session or self._last
            return list(session.stderr_tail) if session else []

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ if self._env is None else self._env)
        paths = [self.extension_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONUNBUFFERED"] = "1"  # stderr lines reach the log as they are written
        env["PYTHONIOENCODING"] = "utf-8"
        return env

    def start(self) -> None:
        """Start the engine unless one is running (idempotent). Raises EngineStartError."""
        with self._lock:
            if self._session is not None and self._session.running():
                return
            command = self.command
            options: dict = {}
            if os.name == "nt":
                options["creationflags"] = subprocess.CREATE_NO_WINDOW
            else:
                options["start_new_session"] = True  # Ctrl+C in Blender's terminal must not hit the engine
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=self.extension_root,
                    env=self._child_env(),
                    **options,
                )
            except OSError as exc:
                raise EngineStartError(
                    f"Cannot start the engine with {command[0]!r}: {exc.strerror or exc}. "
                    "Check the engine's Python in the add-on preferences."
                ) from exc
            self._started += 1
            session = _Session(proc, self._started)
            if self._session is not None:
                self._last = self._session
            self._session = session
            self._open_log()
            self._write_log(f"--- engine #{session.number} started (pid {proc.pid}): {' '.join(command)}")
            for target, name in ((self._read_stderr, "stderr"), (self._read_stdout, "stdout")):
                thread = threading.Thread(
                    target=target, args=(session,), name=f"engine-{name}-{session.number}", daemon=True
                )
                session.threads.append(thread)
                thread.start()

    def stop(self, timeout: float = 5.0) -> int | None:
        """Ask the engine to shut down; after ``timeout`` s terminate it, then kill it. Returns its exit code.

        Jobs still running get ``interrupted``. Afterwards the state is ``not started``."""
        with self._lock:
            session = self._session
            if session is None:
                return None
            session.stopping = True
            self._send(session, ShutdownRequest())
            try:
                session.proc.stdin.close()  # EOF: the engine exits even if it missed the request
            except OSError:
                pass
        proc = session.proc
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                code = proc.wait(min(2.0, max(timeout, 0.2)))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        for thread in session.threads:
            thread.join(timeout=5.0)
        with self._lock:
            if self._session is session:
                self._last, self._session = session, None
                if self._log is not None:
                    self._log.close()
                    self._log = None
        return code

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- requests --------------------------------------------------------------------------------------

    def _send(self, session: _Session, request: Request) -> bool:
        """Write one request line; False when the engine is gone (its reader reports the exit)."""
        data = (request.encode() + "\n").encode("utf-8")
        with self._lock:
            try:
                session.proc.stdin.write(data)
                session.proc.stdin.flush()
                return True
            except (OSError, ValueError):
                return False

    def submit(self, request: ReconstructRequest) -> str:
        """Send a job (starting the engine if needed) and return its id. A second job while one runs is
        queued by the engine; check ``state`` first if the UI allows one job at a time."""
        if not isinstance(request, ReconstructRequest):
            raise TypeError(f"submit() takes a ReconstructRequest, got {type(request).__name__}")
        with self._lock:
            self.start()
            session = self._session
            assert session is not None
            if request.job in session.pending:
                raise ValueError(f"Job {request.job} is already running; give the new job a new id.")
            session.pending.append(request.job)
            self._send(session, request)  # if the engine just died, its reader ends this job with an error
        return request.job

    def _send_current(self, request: Request) -> bool:
        with self._lock:
            session = self._session
            if session is None or not session.running():
                return False
            return self._send(session, request)

    def cancel(self, job: str) -> bool:
        """Cancel a running or queued job (it ends with ``interrupted``); False if there is no such job."""
        with self._lock:
            if self._session is None or job not in self._session.pending:
                return False
            return self._send_current(CancelRequest(job=job))

    def unload(self) -> bool:
        """Free the engine's model (after the running job). False when no engine runs."""
        return self._send_current(UnloadRequest())

    def request_status(self) -> bool:
        """Ask for a StatusEvent (it arrives through poll()). False when no engine runs."""
        return self._send_current(StatusRequest())

    # --- events ----------------------------------------------------------------------------------------

    def poll(self) -> list[Event]:
        """All events received so far, oldest first; never blocks."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def next_event(self, timeout: float | None = None) -> Event | None:
        """Block up to ``timeout`` seconds for the next event (for scripts and tests; the UI uses poll)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _deliver(self, session: _Session, event: Event) -> None:
        with self._lock:
            if isinstance(event, ReadyEvent):
                session.ready = event
                if event.protocol != PROTOCOL_VERSION:
                    self._events.put(event)
                    event = ErrorEvent(
                        job=None,
                        message=(
                            f"The engine speaks protocol {event.protocol} but this add-on speaks "
                            f"{PROTOCOL_VERSION}: engine {event.engine} belongs to another add-on version. "
                            "Update the engine (Set up engine in the add-on preferences)."
                        ),
                    )
                    session.stopping = True
                    self._send(session, ShutdownRequest())
            job = event.terminal_job
            if job is not None:
                if job in session.pending:
                    session.pending.remove(job)
                    session.done.add(job)
                elif job in session.done:
                    event = LogEvent(
                        level="warning", message=f"Ignored a second {event.TYPE!s} for job {job}."
                    )
            self._events.put(event)

    def _read_stdout(self, session: _Session) -> None:
        stream = session.proc.stdout
        try:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not text.strip():
                    continue
                try:
                    event = decode_event(text)
                except ProtocolError as exc:
                    event = LogEvent(
                        level="warning", message=f"Engine output that is not protocol ({exc}): {text}"
                    )
                self._deliver(session, event)
        except (OSError, ValueError):
            pass
        finally:
            self._on_exit(session)

    def _read_stderr(self, session: _Session) -> None:
        try:
            for raw in iter(session.proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._lock:
                    session.stderr_tail.append(line)
                self._write_log(line)
        except (OSError, ValueError):
            pass

    def _on_exit(self, session: _Session) -> None:
        """stdout closed: collect the exit code and stderr, and end every job still open."""
        proc = session.proc
        try:
            code = proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # it closed stdout but lives on: it can no longer talk
            proc.kill()
            code = proc.wait()
        for thread in session.threads:
            if thread.name.startswith("engine-stderr"):
                thread.join(timeout=2.0)  # let the last stderr lines in (a grandchild may hold the pipe)
        with self._lock:
            session.dead = True
            session.exit_code = code
            tail = "\n".join(session.stderr_tail)
            last_line = next((line.strip() for line in reversed(session.stderr_tail) if line.strip()), "")
            pending, session.pending = list(session.pending), []
            session.done.update(pending)
            self._write_log(f"--- engine #{session.number} exited: {describe_exit(code)}")
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
            if session.stopping:
                for job in pending:
                    self._events.put(InterruptedEvent(job=job, message="The engine was stopped."))
                return
            message = f"The engine stopped unexpectedly ({describe_exit(code)})."
            if last_line:
                message += f" Last message: {last_line[:200]}"
            if pending:
                for job in pending:
                    self._events.put(ErrorEvent(job=job, message=message, traceback=tail, exit_code=code))
            elif code != 0:
                self._events.put(ErrorEvent(job=None, message=message, traceback=tail, exit_code=code))
            else:
                self._events.put(LogEvent(level="warning", message="The engine exited (exit code 0)."))

    # --- log file --------------------------------------------------------------------------------------

    def _open_log(self) -> None:
        if self.log_dir is None:
            return
        if self._log is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._log = logging.handlers.RotatingFileHandler(
                self.log_dir / "engine.log", maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
            )
            self._log.setFormatter(logging.Formatter("%(message)s"))
        try:
            if self._log.stream is not None and self._log.stream.tell() > 0:
                self._log.doRollover()  # each engine start begins a fresh file
        except OSError:  # another Blender holds the file (Windows): keep appending
            pass

    def _write_log(self, line: str) -> None:
        handler = self._log
        if handler is not None:
            handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO, "levelname": "INFO"}))

    @property
    def log_path(self) -> Path | None:
        return self.log_dir / "engine.log" if self.log_dir is not None else None


def default_python() -> str:
    """The Python running this code: a sensible engine Python outside Blender (tests, scripts)."""
    return sys.executable
