"""Progress and cancel inside a network pass (issue 13): the backbone reports every block and the head
every view chunk, and a cancel stops a running forward at the next block — measured through the real
engine process, which then runs the next job."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from engine import jobs
from engine.errors import JobCancelled
from engine.process import protocol as p
from engine.process.client import EngineClient
from tests.engine.test_engine_process import make_request
from tests.engine.test_jobs import RecordingContext, request, save_images

ROOT = Path(__file__).resolve().parents[2]
CANCEL_LIMIT_S = 2.0  # the bound on this 2-core machine


def test_the_network_pass_reports_every_block_and_stops_inside(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 2)
    done = RecordingContext()
    jobs.run_job(request([tmp_path / "in"], tmp_path / "out", small_checkpoint), done)
    blocks = [e for e in done.events if e[0] == "progress" and e[1] == "network" and e[3] == 12]
    assert [e[2] for e in blocks] == list(range(12))  # da3-small: 12 blocks, one event before each

    class CancelInside(RecordingContext):
        def progress(self, stage, current, total, message=""):
            super().progress(stage, current, total, message)
            if stage == "network" and message == "block 6/12":
                self._cancel = True

    stopped = CancelInside()
    with pytest.raises(JobCancelled):
        jobs.run_job(request([tmp_path / "in"], tmp_path / "again", small_checkpoint), stopped)
    assert "postprocess" not in stopped.stages()  # the pass stopped inside, not after
    assert not (tmp_path / "again").exists()


def test_cancel_in_a_running_forward_returns_within_seconds_and_the_engine_goes_on(
    small_checkpoint, tmp_path
):
    save_images(tmp_path / "in", [(378, 504)] * 4)
    client = EngineClient(sys.executable, extension_root=ROOT, args=("--device", "cpu"))
    try:
        slow = make_request([tmp_path / "in"], tmp_path / "slow", small_checkpoint, process_res=504)
        job = client.submit(slow)
        cancelled_at, terminal = None, None
        deadline = time.monotonic() + 180
        while terminal is None and time.monotonic() < deadline:
            event = client.next_event(timeout=1.0)
            if event is None:
                continue
            if (
                isinstance(event, p.ProgressEvent)
                and event.stage == "network"
                and event.message == "block 2/12"
            ):
                client.cancel(job)
                cancelled_at = time.monotonic()
            if event.terminal_job == job:
                terminal = event
        latency = time.monotonic() - cancelled_at
        assert isinstance(terminal, p.InterruptedEvent) and latency < CANCEL_LIMIT_S, latency
        print(f"cancel latency inside a forward: {latency:.2f} s")

        nxt = make_request([tmp_path / "in"], tmp_path / "next", small_checkpoint, process_res=112)
        job = client.submit(nxt)
        while True:
            event = client.next_event(timeout=120)
            if event is not None and event.terminal_job == job:
                break
        assert isinstance(event, p.FinishedEvent), event
    finally:
        client.stop(timeout=5.0)


def test_cancel_in_a_long_global_attention_of_a_shot_returns_within_seconds(small_checkpoint, tmp_path):
    """One chunk of 24 frames at 504x378: each global block attends over 23 000 tokens at once (some
    800 GFLOP, many seconds on this CPU). A cancel just before the first global block stops it within its
    attention, and the engine runs the next job."""
    from tests.engine.media import make_test_images, write_test_video

    video = write_test_video(tmp_path / "shot.mkv", make_test_images(24, 378, 504), fps=24)
    client = EngineClient(sys.executable, extension_root=ROOT, args=("--device", "cpu"))
    try:
        long = make_request([video], tmp_path / "shot", small_checkpoint, process_res=504, chunk_size=24)
        job = client.submit(long)
        cancelled_at, terminal = None, None
        deadline = time.monotonic() + 300
        while terminal is None and time.monotonic() < deadline:
            event = client.next_event(timeout=1.0)
            if event is None:
                continue
            if (  # da3-small: blocks 0-4 see one view at a time, block 5 (the 6th) is the first global one
                cancelled_at is None
                and isinstance(event, p.ProgressEvent)
                and event.stage == "network"
                and event.message.startswith("chunk 1/1: block 6/12")
            ):
                client.cancel(job)
                cancelled_at = time.monotonic()
            if event.terminal_job == job:
                terminal = event
        assert cancelled_at is not None, terminal
        latency = time.monotonic() - cancelled_at
        assert isinstance(terminal, p.InterruptedEvent) and latency < CANCEL_LIMIT_S, latency
        print(f"cancel latency inside a global attention: {latency:.2f} s")

        save_images(tmp_path / "in", [(96, 128)] * 2)
        job = client.submit(
            make_request([tmp_path / "in"], tmp_path / "next", small_checkpoint, process_res=112)
        )
        while True:
            event = client.next_event(timeout=120)
            if event is not None and event.terminal_job == job:
                break
        assert isinstance(event, p.FinishedEvent), event
    finally:
        client.stop(timeout=5.0)


def test_a_long_attention_reports_its_progress_at_most_every_second(monkeypatch):
    """Inside a global block's attention (many seconds over a long chunk) the text moves, throttled."""
    from engine.jobs import stages

    context, emitted = RecordingContext(), []
    step = stages.network_steps(context, emitted.append)
    step("backbone", 5, 12)
    step("attention", 512, 2048)  # right after the block's event: nothing new
    assert emitted == [(5, 12, "block 6/12")]
    monkeypatch.setattr(stages, "ATTENTION_EVENT_S", 0.0)
    step("attention", 1024, 2048)
    assert emitted[-1] == (5, 12, "block 6/12, attention 50 %")
    context._cancel = True
    with pytest.raises(JobCancelled):
        step("attention", 1536, 2048)  # every piece checks the cancel
