"""The Blender-side client against the scripted fake engine and the real `python -m engine serve`."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from engine.process import protocol as p
from engine.process.client import EngineClient, EngineStartError, EngineState
from tests.fakes.fake_engine import fake_engine_argv, fake_env

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0


@pytest.fixture
def clients():
    """Make clients; every one is stopped afterwards and must leave no process behind."""
    made: list[EngineClient] = []
    pids: list[int] = []

    def make(script: str | None = "ok", *, argv: list[str] | None = None, **options) -> EngineClient:
        if script is not None and argv is None:
            argv = fake_engine_argv()
            options.setdefault("env", fake_env(script, **options.pop("fake", {})))
        client = EngineClient(sys.executable, extension_root=ROOT, argv=argv, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        if client.pid is not None:
            pids.append(client.pid)
        client.stop(timeout=2.0)
        assert client.state is EngineState.not_started
    for pid in pids:  # reaped: the pid no longer exists (no zombie left)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def wait_for(
    client: EngineClient, kind: type[p.Event], timeout: float = TIMEOUT, **fields
) -> tuple[p.Event, list]:
    """Read events until one of ``kind`` with these fields arrives; returns it and everything read."""
    seen: list[p.Event] = []
    deadline = time.monotonic() + timeout
    while True:
        event = client.next_event(timeout=max(0.0, deadline - time.monotonic()))
        if event is None:
            pytest.fail(f"no {kind.__name__} with {fields} within {timeout} s; got {seen}")
        seen.append(event)
        if isinstance(event, kind) and all(getattr(event, k) == v for k, v in fields.items()):
            return event, seen


def request(job: str, model: str = "/models/fake", **options) -> p.ReconstructRequest:
    return p.ReconstructRequest(
        job=job, inputs=("/in/1.jpg", "/in/2.jpg"), output="/out", model=model, options=options
    )


def terminal_events(events: list[p.Event], job: str) -> list[p.Event]:
    return [e for e in events if e.terminal_job == job]


def test_a_job_runs_end_to_end_with_the_fake_engine(clients, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "reconstruction.npz").write_bytes(b"npz")
    (bundle / "points.ply").write_bytes(b"ply")
    client = clients("ok", fake={"bundle": bundle})
    assert client.state is EngineState.not_started and client.poll() == []

    job = client.submit(request("j1"))
    assert job == "j1" and client.state in (EngineState.starting, EngineState.busy)
    finished, events = wait_for(client, p.FinishedEvent, job="j1")
    assert isinstance(events[0], p.ReadyEvent) and events[0].protocol == p.PROTOCOL_VERSION
    assert client.ready_info == events[0] and client.pid == events[0].pid
    stages = [e.stage for e in events if isinstance(e, p.ProgressEvent)]
    assert stages[0] == "load" and "network" in stages and stages[-1] == "write"
    (result,) = [e for e in events if isinstance(e, p.ResultEvent)]
    assert result.files == {
        "bundle": str(bundle / "reconstruction.npz"),
        "points": str(bundle / "points.ply"),
    }
    assert finished.summary["frames"] == 2
    assert len(terminal_events(events, "j1")) == 1
    assert client.state is EngineState.ready and client.pending_jobs == []

    client.request_status()
    status, _ = wait_for(client, p.StatusEvent)
    assert status.busy is None and status.model == "/models/fake"


def test_poll_never_blocks_and_drains_in_order(clients):
    client = clients("ok")
    client.submit(request("j1"))
    wait_for(client, p.ProgressEvent)
    deadline = time.monotonic() + TIMEOUT
    events: list[p.Event] = []
    while not any(e.terminal_job == "j1" for e in events):  # a UI timer: poll, then sleep a tick
        assert time.monotonic() < deadline
        start = time.monotonic()
        events += client.poll()
        assert time.monotonic() - start < 0.5
        time.sleep(0.02)
    assert isinstance(events[-1], p.FinishedEvent)
    assert client.poll() == []


def test_an_engine_error_is_one_terminal_event_and_the_engine_stays(clients):
    client = clients("error")
    client.submit(request("j1"))
    error, events = wait_for(client, p.ErrorEvent, job="j1")
    assert error.message.startswith("Fake failure") and "Traceback" in error.traceback
    assert error.exit_code is None and len(terminal_events(events, "j1")) == 1
    assert client.state is EngineState.ready and client.alive


def test_cancel_ends_the_job_with_interrupted(clients):
    client = clients("slow")
    client.submit(request("j1"))
    wait_for(client, p.ProgressEvent, stage="network")
    assert client.state is EngineState.busy
    assert client.cancel("j1") is True
    interrupted, events = wait_for(client, p.InterruptedEvent, job="j1")
    assert not [e for e in events if isinstance(e, p.FinishedEvent)]
    assert client.cancel("j1") is False  # nothing left to cancel
    assert client.cancel("never-submitted") is False
    assert client.state is EngineState.ready


def test_a_crash_becomes_an_error_with_exit_code_and_stderr_then_a_new_engine_starts(clients, tmp_path):
    client = clients("ok", log_dir=tmp_path / "logs")
    client.submit(request("j1", model="fake:crash"))
    error, events = wait_for(client, p.ErrorEvent, job="j1")
    assert error.exit_code == 3 and "exit code 3" in error.message
    assert "simulated crash" in error.message  # the last stderr line, for the user
    assert "plays 'crash'" in error.traceback and "simulated crash" in error.traceback
    assert client.state is EngineState.dead and not client.alive
    first_pid = events[0].pid

    client.submit(request("j2"))  # the next job starts a new engine
    finished, events = wait_for(client, p.FinishedEvent, job="j2")
    assert isinstance(events[0], p.ReadyEvent) and events[0].pid != first_pid
    assert client.state is EngineState.ready

    log_dir = tmp_path / "logs"
    assert "simulated crash" in (log_dir / "engine.log.1").read_text()  # the crashed engine's log, rotated
    assert "plays 'ok'" in (log_dir / "engine.log").read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kill_9_mid_job_ends_the_job_with_an_error_and_submit_works_again(clients):
    client = clients("slow")
    client.submit(request("j1"))
    client.submit(request("j2"))  # queued behind j1: it must get its terminal event too
    wait_for(client, p.ProgressEvent, job="j1", stage="network")
    os.kill(client.pid, signal.SIGKILL)
    first, events = wait_for(client, p.ErrorEvent, job="j1")
    second, more = wait_for(client, p.ErrorEvent, job="j2")
    for error in (first, second):
        assert error.exit_code == -9 and "SIGKILL" in error.message
        assert "plays 'slow'" in error.traceback  # the stderr tail
    assert len(terminal_events(events + more, "j1")) == 1
    assert client.state is EngineState.dead

    client.submit(request("j3", model="fake:ok"))
    wait_for(client, p.FinishedEvent, job="j3")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_engine_that_dies_while_idle_reports_an_error_without_a_job(clients):
    client = clients("ok")
    client.start()
    client.start()  # idempotent
    ready, _ = wait_for(client, p.ReadyEvent)
    os.kill(ready.pid, signal.SIGKILL)
    error, _ = wait_for(client, p.ErrorEvent)
    assert error.job is None and error.exit_code == -9


def test_stop_interrupts_the_running_job_and_returns_the_exit_code(clients):
    client = clients("slow")
    client.submit(request("j1"))
    wait_for(client, p.ProgressEvent, stage="network")
    assert client.stop() == 0
    interrupted, events = wait_for(client, p.InterruptedEvent, job="j1", timeout=1.0)
    assert len(terminal_events(events, "j1")) == 1
    assert client.state is EngineState.not_started and not client.alive


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_stop_kills_an_engine_that_hangs(clients):
    client = clients("hang")  # ignores cancel, shutdown and SIGTERM
    client.submit(request("j1"))
    wait_for(client, p.ProgressEvent, stage="network")
    start = time.monotonic()
    assert client.stop(timeout=0.3) == -signal.SIGKILL
    assert time.monotonic() - start < 5.0
    interrupted, _ = wait_for(client, p.InterruptedEvent, job="j1", timeout=1.0)
    assert interrupted.message == "The engine was stopped."


def test_starting_state_until_ready(clients):
    client = clients("ok", fake={"ready_delay": 0.5})
    client.start()
    assert client.state is EngineState.starting
    wait_for(client, p.ReadyEvent)
    assert client.state is EngineState.ready


def test_stdout_lines_that_are_not_protocol_become_log_events(clients):
    noisy = [sys.executable, "-c", "import sys; print('hello from a library', flush=True); sys.stdin.read()"]
    client = clients(None, argv=noisy)
    client.start()
    log, _ = wait_for(client, p.LogEvent)
    assert log.level == "warning" and "hello from a library" in log.message
    assert client.state is EngineState.starting  # no ready yet, but nothing crashed


def test_an_engine_of_another_protocol_version_is_refused(clients):
    ready = p.ReadyEvent(protocol=p.PROTOCOL_VERSION + 1, engine="9.9.9", device="cpu", torch=None, cuda=None)
    script = f"import sys; print({ready.encode()!r}, flush=True); sys.stdin.read()"
    client = clients(None, argv=[sys.executable, "-c", script])
    client.start()
    error, _ = wait_for(client, p.ErrorEvent)
    assert error.job is None and "protocol" in error.message and "Update the engine" in error.message


def test_a_missing_python_is_a_clear_start_error(clients, tmp_path):
    client = clients(None, argv=None)
    client.python_exe = str(tmp_path / "no-python")
    with pytest.raises(EngineStartError, match="no-python.*add-on preferences"):
        client.submit(request("j1"))
    assert client.state is EngineState.not_started


def test_the_real_engine_starts_answers_status_and_stops(clients, tmp_path):
    client = clients(None, args=("--device", "cpu"), log_dir=tmp_path)
    assert client.command[1:] == ["-m", "engine", "serve", "--device", "cpu"]
    client.start()
    ready, _ = wait_for(client, p.ReadyEvent, timeout=30.0)
    assert ready.protocol == p.PROTOCOL_VERSION and ready.torch and ready.device == "cpu"
    assert client.state is EngineState.ready
    assert client.request_status() and client.unload()
    status, events = wait_for(client, p.StatusEvent)
    assert status.busy is None and status.model is None and status.device == "cpu"
    assert client.stop() == 0
    assert client.state is EngineState.not_started
    assert not [e for e in client.poll() if isinstance(e, p.ErrorEvent)]  # a requested stop is no error
    assert "shutting down" in (tmp_path / "engine.log").read_text()
