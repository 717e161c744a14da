"""Chunks sized by a cost model (issue 13): the plan that takes least time within memory, its constants
measured on the device and cached, and a shot that plans with it, reports progress inside each chunk
and the time per frame once the first chunk is done."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from engine import jobs
from engine.geometry.streaming import plan_chunks
from engine.jobs import chunk_choice
from engine.model.chunk_cost import MIN_OVERLAP, NEAR_BEST, ChunkCost, chunk_count, plan_shot
from tests.engine.media import make_test_images, write_test_video
from tests.engine.test_jobs import RecordingContext
from tests.engine.test_shot_job import request


def brute_force_best(n: int, cost: ChunkCost, max_chunk: int) -> float:
    """The least network time of any chunking with at least MIN_OVERLAP frames of overlap."""
    best = cost.chunk_seconds(n) if n <= max_chunk else float("inf")
    for c in range(MIN_OVERLAP + 1, min(max_chunk, n) + 1):
        for o in range(MIN_OVERLAP, c):
            best = min(best, len(plan_chunks(n, c, o)) * cost.chunk_seconds(min(c, n)))
    return best


@pytest.mark.parametrize(
    ("n", "c", "o"), list(itertools.product([1, 9, 40, 174, 500], [2, 9, 16, 33, 120], [1, 4, 8]))
)
def test_chunk_count_matches_the_planner(n, c, o):
    if o >= c:
        return
    assert chunk_count(n, c, o) == len(plan_chunks(n, c, o))


@pytest.mark.parametrize(
    "cost", [ChunkCost(0.35, 0.027), ChunkCost(0.9, 0.003), ChunkCost(0.02, 0.05), ChunkCost(1.0, 0.0)]
)
@pytest.mark.parametrize("n", [17, 60, 174, 400])
def test_the_plan_is_near_the_fastest_and_keeps_a_joinable_overlap(cost, n):
    plan = plan_shot(n, cost, max_chunk=120)
    chunks = plan_chunks(n, plan.chunk, plan.overlap)
    assert len(chunks) == plan.chunks and plan.chunk <= 120
    assert plan.chunks == 1 or plan.overlap >= MIN_OVERLAP
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.stop - b.start >= MIN_OVERLAP  # every joint fits on at least MIN_OVERLAP frames
    assert plan.seconds == pytest.approx(plan.chunks * cost.chunk_seconds(min(plan.chunk, n)))
    assert plan.seconds <= NEAR_BEST * brute_force_best(n, cost, 120) + 1e-9


def test_quadratic_attention_shortens_chunks_and_linear_cost_lengthens_them():
    """Memory alone would take 120 frames; with the attention of the measured CPU the best chunk is far
    shorter and the shot several times faster, while a cost without attention takes the fewest chunks."""
    cpu = ChunkCost(0.35, 0.027)  # da3-small, 504x283, this CPU in bf16 (order of magnitude)
    plan = plan_shot(174, cpu, max_chunk=120)
    old = 2 * cpu.chunk_seconds(120)  # chunks of 120 overlapping by 60
    assert 16 <= plan.chunk <= 40 and old / plan.seconds > 3
    linear = plan_shot(174, ChunkCost(1.0, 0.0), max_chunk=120)
    assert linear.chunks == 2 and linear.chunk > 90  # as few chunks as memory allows, each as short as that
    assert plan_shot(174, cpu, max_chunk=20).chunk == 20  # memory still caps it
    tight = plan_shot(174, cpu, max_chunk=8)  # little memory: half a chunk of overlap, not all but one frame
    assert (tight.chunk, tight.overlap) == (8, 4)


def test_a_users_chunk_and_overlap_are_kept():
    plan = plan_shot(174, ChunkCost(0.35, 0.027), max_chunk=120, chunk=64, overlap=10)
    assert (plan.chunk, plan.overlap, plan.chunks) == (64, 10, 4)
    assert plan_shot(174, ChunkCost(0.35, 0.027), max_chunk=120, overlap=12).overlap >= 12


def test_the_measured_cost_predicts_a_real_chunk(small_checkpoint):
    """Constants measured in a few seconds predict the time of a longer chunk (within 3x: this CPU is shared)."""
    import torch

    from engine.model.calibrate import measure_chunk_cost
    from engine.weights import load_model

    model = load_model(small_checkpoint, device="cpu")
    h, w = 154, 224  # 176 tokens a frame
    t0 = time.perf_counter()
    cost = measure_chunk_cost(model, h, w)
    calibration = time.perf_counter() - t0
    assert cost.frame_s > 0 and cost.pair_s > 0 and calibration < 60
    x = torch.randn(1, 12, 3, h, w)
    t0 = time.perf_counter()
    with torch.inference_mode():
        model(x)
    took = time.perf_counter() - t0
    predicted = cost.chunk_seconds(12)
    print(
        f"12 frames: {took:.2f} s measured, {predicted:.2f} s predicted ({cost}); calibration {calibration:.1f} s"
    )
    assert 1 / 3 < took / predicted < 3.0


def test_the_cost_is_measured_once_and_cached(small_checkpoint, engine_cache_dir, monkeypatch):
    from engine.model import calibrate
    from engine.weights import load_model

    calls = []
    monkeypatch.setattr(chunk_choice, "_MEASURED", {})
    monkeypatch.setattr(
        calibrate, "measure_chunk_cost", lambda model, h, w: calls.append((h, w)) or ChunkCost(0.1, 0.01)
    )
    model = load_model(small_checkpoint, device="cpu")
    ctx = RecordingContext()
    assert chunk_choice.chunk_cost_for(model, (70, 98), ctx) == ChunkCost(0.1, 0.01)
    stored = json.loads((engine_cache_dir / chunk_choice.COSTS_FILE).read_text())
    assert [k for k in stored if k.startswith("da3-small|cpu|70x98|bfloat16|threads=")]
    monkeypatch.setattr(chunk_choice, "_MEASURED", {})  # a new engine process: read from the file
    assert chunk_choice.chunk_cost_for(model, (70, 98), ctx) == ChunkCost(0.1, 0.01)
    assert calls == [(70, 98)]


class MessageContext(RecordingContext):
    def progress(self, stage, current, total, message=""):
        super().progress(stage, current, total, message)
        self.events.append(("message", stage, message))


def test_a_shot_plans_its_chunks_by_cost_and_reports_inside_them(small_checkpoint, tmp_path, monkeypatch):
    """40 frames with a cost whose attention dominates (the planner's shortest chunk): chunks of the planned size (not the memory's),
    progress before every block of every chunk, and the pace once the first chunk is done."""
    video = write_test_video(tmp_path / "shot.mkv", make_test_images(40, 64, 96), fps=24)
    monkeypatch.setattr(chunk_choice, "chunk_cost_for", lambda model, hw, context: ChunkCost(0.01, 0.05))
    ctx = MessageContext()
    summary = jobs.run_job(request([video], tmp_path / "out", small_checkpoint, process_res=98), ctx)
    expected = plan_shot(40, ChunkCost(0.01, 0.05), max_chunk=120)
    assert (summary["chunk_size"], summary["overlap"], summary["chunks"]) == (16, 8, 4)
    assert (expected.chunk, expected.overlap, expected.chunks) == (16, 8, 4)
    messages = [e[2] for e in ctx.events if e[0] == "message" and e[1] == "network"]
    assert sum("block" in m for m in messages) == 4 * 12  # da3-small: 12 blocks in each of 4 chunks
    assert any(m.startswith("chunk 2/4: block 1/12;") and "s per frame, about" in m for m in messages)
    logs = [e[2] for e in ctx.events if e[0] == "log"]
    assert any(m.startswith("Chunks of 16 frames overlapping by 8 (4 chunks;") for m in logs)
    assert any(m.startswith("First chunk in") for m in logs)
    assert np.isfinite(summary["seconds"])
