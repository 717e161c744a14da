"""The engine's request loop: in-process with an injected job runner, and as `python -m engine serve`."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import JobCancelled, UserError
from engine.jobs.context import resolve_dtype
from engine.process import protocol as p
from engine.process.worker import DeviceInfo, Worker

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


class RequestLines:
    """stdin stand-in: a blocking iterable of lines; close() is EOF."""

    def __init__(self) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()

    def send(self, message: p.Request | str) -> None:
        self._lines.put(message.encode() if isinstance(message, p.Request) else message)

    def close(self) -> None:
        self._lines.put(None)

    def __iter__(self):
        while (line := self._lines.get()) is not None:
            yield line + "\n"


class EventSink:
    """stdout stand-in: decodes every line the worker writes (so each must be valid protocol)."""

    def __init__(self) -> None:
        self.events: list[p.Event] = []
        self._cond = threading.Condition()
        self._seen = 0

    def write(self, text: str) -> int:
        assert text.endswith("\n") and text.count("\n") == 1, "one event per write, one line each"
        event = p.decode_event(text)
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()
        return len(text)

    def flush(self) -> None:
        pass

    def next(
        self, kind: type[p.Event] | tuple[type[p.Event], ...], timeout: float = TIMEOUT, **fields
    ) -> p.Event:
        """The next event (after the last one returned) of this kind whose fields match; fails on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(self._seen, len(self.events)):
                    event = self.events[index]
                    if isinstance(event, kind) and all(getattr(event, k) == v for k, v in fields.items()):
                        self._seen = index + 1
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no {kind} with {fields} within {timeout} s; got {self.events}")
                self._cond.wait(remaining)

    def terminal_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in self.events:
            if event.terminal_job:
                counts[event.terminal_job] = counts.get(event.terminal_job, 0) + 1
        return counts


class Harness:
    def __init__(self, **worker_options) -> None:
        self.requests = RequestLines()
        self.sink = EventSink()
        self.loaded: list[tuple[str, str, str]] = []
        worker_options.setdefault("device_info", DeviceInfo(device="cpu", torch="test", cuda=None))
        worker_options.setdefault("loader", self._load)
        self.worker = Worker(self.requests, self.sink, **worker_options)
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _load(self, source: str, *, device: str, dtype: str) -> object:
        self.loaded.append((source, device, dtype))
        return {"model": source}

    def _run(self) -> None:
        self.exit_code = self.worker.run()

    def send(self, message: p.Request | str) -> None:
        self.requests.send(message)

    def status(self) -> p.StatusEvent:
        self.send(p.StatusRequest())
        return self.sink.next(p.StatusEvent)

    def wait_exit(self) -> int | None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the worker did not exit"
        return self.exit_code


@pytest.fixture
def harness():
    made: list[Harness] = []

    def make(**worker_options) -> Harness:
        made.append(Harness(**worker_options))
        made[-1].sink.next(p.ReadyEvent)
        return made[-1]

    yield make
    for h in made:
        h.requests.close()
        h.wait_exit()
        counts = h.sink.terminal_counts()
        assert all(count == 1 for count in counts.values()), f"a job got several terminal events: {counts}"


def job(job_id: str, model: str = "model-a", **options) -> p.ReconstructRequest:
    return p.ReconstructRequest(
        job=job_id, inputs=("/in/1.jpg",), output="/out", model=model, options=options
    )


def gated_runner(gate: threading.Event):
    """A job that reports progress, then waits for the gate while checking for cancel (no busy wait)."""

    def run(request, context):
        context.progress("network", 0, 1)
        while not gate.wait(0.01):
            context.check_cancel()
        context.check_cancel()
        return {"frames": 1}

    return run


# --- request handling --------------------------------------------------------------------------------


def test_ready_comes_first_and_reports_the_engine(harness):
    h = harness()
    ready = h.sink.events[0]
    assert isinstance(ready, p.ReadyEvent)
    assert ready.protocol == p.PROTOCOL_VERSION and ready.engine == p.ENGINE_VERSION
    assert (ready.device, ready.torch, ready.cuda, ready.model) == ("cpu", "test", None, None)
    assert ready.pid == os.getpid()


def test_status_when_idle(harness):
    status = harness().status()
    assert (status.busy, status.model, status.device, status.queued) == (None, None, "cpu", ())
    assert status.idle_seconds >= 0


def test_bad_lines_are_answered_with_errors_and_the_worker_keeps_serving(harness):
    h = harness()
    for line in (
        "not json at all",
        '{"type": "launch"}',
        '{"type": "status", "x": 1}',
        "[]",
        '{"type":"cancel"}',
    ):
        h.send(line)
        error = h.sink.next(p.ErrorEvent)
        assert error.job is None and error.message.startswith("Bad request:")
    assert "unknown request type 'launch'" in h.sink.events[2].message
    assert h.status().busy is None  # still alive


def test_a_refused_reconstruct_still_gets_its_terminal_error(harness):
    h = harness()
    h.send(json.dumps({**job("j1").to_dict(), "options": {"proces_res": 3}}))
    error = h.sink.next(p.ErrorEvent)
    assert error.job == "j1" and "did you mean 'process_res'" in error.message.lower()


def test_cancel_of_an_unknown_job_is_a_warning_not_an_error(harness):
    h = harness()
    h.send(p.CancelRequest(job="nobody"))
    log = h.sink.next(p.LogEvent)
    assert log.level == "warning" and "nobody" in log.message
    assert not any(isinstance(e, p.ErrorEvent) for e in h.sink.events)


def test_unload_when_nothing_is_loaded(harness):
    h = harness()
    h.send(p.UnloadRequest())
    assert "No model" in h.sink.next(p.LogEvent).message


def test_shutdown_exits_zero(harness):
    h = harness()
    h.send(p.ShutdownRequest())
    assert h.wait_exit() == 0


def test_stdin_eof_exits_zero(harness):
    h = harness()
    h.requests.close()
    assert h.wait_exit() == 0


# --- jobs ----------------------------------------------------------------------------------------------


def test_a_job_streams_progress_result_and_one_finished(harness):
    def run(request, context):
        for i in range(3):
            context.check_cancel()
            context.progress("network", i + 1, 3, f"frame {i}")
        context.result({"bundle": Path(request.output) / "reconstruction.npz"}, {"frames": 3})
        return {"frames": 3, "scale": np.float32(2.0)}

    h = harness(runner=run)
    h.send(job("j1"))
    progress = [h.sink.next(p.ProgressEvent, job="j1") for _ in range(3)]
    assert [e.current for e in progress] == [1, 2, 3] and progress[0].message == "frame 0"
    result = h.sink.next(p.ResultEvent, job="j1")
    assert result.files == {"bundle": os.path.join("/out", "reconstruction.npz")}
    finished = h.sink.next(p.FinishedEvent, job="j1")
    assert finished.summary == {"frames": 3, "scale": 2.0}
    assert h.sink.terminal_counts() == {"j1": 1}
    assert h.status().busy is None


@pytest.mark.parametrize(
    ("exception", "terminal", "message"),
    [
        (UserError("No images found in /shots: add .jpg or .png files."), p.ErrorEvent, None),
        (ValueError("boom\nsecond line"), p.ErrorEvent, "ValueError: boom"),
        (JobCancelled(), p.InterruptedEvent, "Cancelled by the user."),
        (KeyError("depth"), p.ErrorEvent, "KeyError: 'depth'"),
    ],
)
def test_how_a_job_ends_depends_on_what_it_raises(harness, exception, terminal, message):
    def run(request, context):
        raise exception

    h = harness(runner=run)
    h.send(job("j1"))
    event = h.sink.next(terminal, job="j1")
    assert event.message == (message or str(exception))
    if terminal is p.ErrorEvent:
        assert type(exception).__name__ in event.traceback and "Traceback" in event.traceback
    assert h.status().busy is None  # the worker survived


def test_a_summary_that_cannot_travel_ends_the_job_with_an_error(harness):
    h = harness(runner=lambda request, context: {"depth": np.zeros(3)})
    h.send(job("j1"))
    assert "arrays never travel" in h.sink.next(p.ErrorEvent, job="j1").message


def test_cancel_stops_the_running_job_with_interrupted(harness):
    gate = threading.Event()
    h = harness(runner=gated_runner(gate))
    h.send(job("j1"))
    h.sink.next(p.ProgressEvent, job="j1")
    h.send(p.CancelRequest(job="j1"))
    assert h.sink.next(p.InterruptedEvent, job="j1").message
    assert h.status().busy is None


def test_a_second_job_is_queued_and_status_answers_while_busy(harness):
    gate = threading.Event()
    h = harness(runner=gated_runner(gate))
    h.send(job("j1"))
    h.sink.next(p.ProgressEvent, job="j1")
    h.send(job("j2"))
    h.send(job("j3"))
    assert "position 1" in h.sink.next(p.LogEvent, job="j2").message
    assert "position 2" in h.sink.next(p.LogEvent, job="j3").message
    status = h.status()
    assert (status.busy, status.queued, status.idle_seconds) == ("j1", ("j2", "j3"), 0.0)

    h.send(p.CancelRequest(job="j2"))  # a queued job is removed at once
    assert h.sink.next(p.InterruptedEvent, job="j2").message == "Cancelled before it started."
    h.send(job("j1"))  # the id of a running job cannot be reused
    assert "already running" in h.sink.next(p.ErrorEvent, job=None).message
    gate.set()
    h.sink.next(p.FinishedEvent, job="j1")
    h.sink.next(p.FinishedEvent, job="j3")
    assert h.sink.terminal_counts() == {"j1": 1, "j2": 1, "j3": 1}


def test_shutdown_interrupts_the_running_and_the_queued_jobs(harness):
    h = harness(runner=gated_runner(threading.Event()))
    h.send(job("j1"))
    h.sink.next(p.ProgressEvent, job="j1")
    h.send(job("j2"))
    h.send(p.ShutdownRequest())
    assert h.wait_exit() == 0
    assert h.sink.terminal_counts() == {"j1": 1, "j2": 1}
    assert all(isinstance(e, p.InterruptedEvent) for e in h.sink.events if e.terminal_job)


def test_the_model_is_kept_between_jobs_and_replaced_for_another_key(harness):
    def run(request, context):
        model = context.model_for(request.model, request.options.device, request.options.dtype)
        assert model == {"model": request.model}
        return {}

    h = harness(runner=run)
    for name, model in (("j1", "model-a"), ("j2", "model-a"), ("j3", "model-b")):
        h.send(job(name, model=model))
        h.sink.next(p.FinishedEvent, job=name)
    auto = resolve_dtype("auto", "cpu")  # bfloat16 on a CPU with native bf16, else float32
    assert h.loaded == [("model-a", "cpu", auto), ("model-b", "cpu", auto)]  # "auto" resolved
    assert h.status().model == "model-b"
    h.send(job("j4", model="model-b", device="cpu", dtype="float16"))  # a different dtype is another key
    h.sink.next(p.FinishedEvent, job="j4")
    assert h.loaded[-1] == ("model-b", "cpu", "float16")
    h.send(p.UnloadRequest())
    assert h.sink.next(p.LogEvent, message="Model unloaded.")
    assert h.status().model is None


def test_unload_while_busy_waits_for_the_job(harness):
    gate = threading.Event()

    def run(request, context):
        context.model_for(request.model)
        return gated_runner(gate)(request, context)

    h = harness(runner=run)
    h.send(job("j1"))
    h.sink.next(p.ProgressEvent, job="j1")
    h.send(p.UnloadRequest())
    assert "after job j1" in h.sink.next(p.LogEvent, level="info", job=None).message
    assert h.status().model == "model-a"  # still loaded while the job runs
    gate.set()
    h.sink.next(p.FinishedEvent, job="j1")
    h.sink.next(p.LogEvent, message="Model unloaded.")
    assert h.status().model is None


def test_an_idle_model_is_unloaded_after_the_idle_timeout(harness):
    h = harness(runner=lambda request, context: context.model_for(request.model) and {}, idle_timeout=0.2)
    h.send(job("j1"))
    h.sink.next(p.FinishedEvent, job="j1")
    assert "idle" in h.sink.next(p.LogEvent, timeout=3.0, job=None).message
    assert h.status().model is None
    assert h.thread.is_alive()  # the process stays


def test_jobs_fail_clearly_when_torch_is_missing(harness):
    h = harness(
        device_info=DeviceInfo(device="cpu", torch=None, cuda=None, problem="ModuleNotFoundError: torch")
    )
    h.send(job("j1"))  # default runner: must not even try to import engine.jobs.still
    error = h.sink.next(p.ErrorEvent, job="j1")
    assert "PyTorch is not installed" in error.message and "preferences" in error.message


# --- the real process ----------------------------------------------------------------------------------


def serve(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "serve", "--device", "cpu", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reap(proc: subprocess.Popen) -> None:
    """Leave no process and no open pipe behind."""
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()


def read_event(proc: subprocess.Popen) -> p.Event:
    line = proc.stdout.readline()
    assert line, f"engine closed stdout; stderr: {proc.stderr.read()[-2000:]}"
    return p.decode_event(line)


def test_real_engine_process_speaks_only_protocol_on_stdout():
    proc = serve()
    try:
        ready = read_event(proc)
        assert (
            isinstance(ready, p.ReadyEvent)
            and ready.torch
            and ready.device == "cpu"
            and ready.pid == proc.pid
        )
        lines = [
            '{"type": "status"}',
            "garbage",
            json.dumps({**job("j1").to_dict(), "inputs": []}),
            '{"type":"shutdown"}',
        ]
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.flush()
        status = read_event(proc)
        assert isinstance(status, p.StatusEvent) and status.busy is None
        bad = read_event(proc)
        assert isinstance(bad, p.ErrorEvent) and bad.job is None and "not valid JSON" in bad.message
        refused = read_event(proc)
        assert (
            isinstance(refused, p.ErrorEvent)
            and refused.job == "j1"
            and "at least one image" in refused.message
        )
        assert proc.wait(TIMEOUT) == 0
        assert proc.stdout.read() == ""  # nothing but protocol lines came out
    finally:
        reap(proc)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_engine_exits_cleanly_on_sigterm_and_on_stdin_eof():
    procs = [serve(), serve()]
    try:
        for proc in procs:
            assert isinstance(read_event(proc), p.ReadyEvent)
        procs[0].send_signal(signal.SIGTERM)
        procs[1].stdin.close()
        assert [proc.wait(TIMEOUT) for proc in procs] == [0, 0]
        assert "signal" in procs[0].stderr.read() and "stdin closed" in procs[1].stderr.read()
    finally:
        for proc in procs:
            reap(proc)


def test_library_prints_go_to_stderr_not_into_the_event_pipe():
    code = (
        "import os, sys\n"
        "from engine.process import worker, protocol\n"
        "requests, events = worker._protocol_streams()\n"
        "print('python print')\n"
        "os.write(1, b'C-level write\\n')\n"
        "events.write(protocol.LogEvent(level='info', message='hello').encode() + '\\n'); events.flush()\n"
        "assert sys.stdin.read() == ''  # fd 0 is the null device now\n"
        "assert requests.readline() == 'request line\\n'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        input="request line\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert [p.decode_event(line) for line in result.stdout.splitlines()] == [
        p.LogEvent(level="info", message="hello")
    ]
    assert "python print" in result.stderr and "C-level write" in result.stderr


def test_python_dash_m_engine_dispatches_commands():
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
        )

    assert run("--help").returncode == 0 and "serve" in run("--help").stdout
    unknown = run("explode")
    assert unknown.returncode == 2 and "unknown command 'explode'" in unknown.stderr
    assert run().returncode == 2
