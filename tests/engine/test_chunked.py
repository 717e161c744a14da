"""run_chunked: any chunk predictor, progress per chunk, cancel between chunks, flat memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from engine.errors import JobCancelled
from engine.geometry.cameras import camera_centers
from engine.geometry.streaming import ChunkStore, plan_chunks
from engine.geometry.trajectory import absolute_trajectory_error, path_length
from engine.io.inputs import Cancelled
from engine.jobs.chunking import chunk_from_prediction, run_chunked
from tests.engine import synthetic_shot as shot

N = 100


class FakeNetwork:
    """Predicts a chunk like DA3 would: exact geometry in a random world per call, with some noise."""

    def __init__(self, n_frames: int = N, seed: int = 0):
        self.n_frames = n_frames
        self.rng = np.random.default_rng(seed)
        self.calls: list[range] = []

    def __call__(self, frames: range):
        self.calls.append(frames)
        truth = shot.render(self.n_frames, frames)
        world = shot.random_sim3(self.rng)
        return shot.to_chunk(
            truth, world, self.rng, depth_noise=0.01, outlier_fraction=0.01, pose_noise=0.001
        )


def test_a_long_shot_runs_chunk_by_chunk_and_recovers_the_path(tmp_path):
    net = FakeNetwork()
    events = []
    result = run_chunked(N, net, ChunkStore(tmp_path), 30, 10, on_progress=lambda *e: events.append(e))
    assert net.calls == plan_chunks(N, 30, 10)
    total = len(net.calls)
    assert [e[:2] for e in events] == [(k, total) for k in range(total + 1)]
    assert "joint residual" in events[-1][2]
    truth = shot.render(N)
    ate, _ = absolute_trajectory_error(camera_centers(result.extrinsics), truth.centers)
    assert ate / path_length(truth.centers) < 0.01
    assert len(result.points()["xyz"]) <= 400_000


def test_cancel_between_chunks_stops_the_network(tmp_path):
    net = FakeNetwork()
    with pytest.raises(Cancelled, match="chunk 3"):
        run_chunked(N, net, ChunkStore(tmp_path), 30, 10, should_cancel=lambda: len(net.calls) >= 2)
    assert len(net.calls) == 2
    # the job runner's own exception type passes through
    net = FakeNetwork()
    with pytest.raises(JobCancelled):
        run_chunked(
            N,
            net,
            ChunkStore(tmp_path / "b"),
            30,
            10,
            should_cancel=lambda: len(net.calls) >= 1,
            cancel_error=JobCancelled,
        )
    assert len(net.calls) == 1


def test_a_predictor_that_returns_other_frames_is_caught(tmp_path):
    net = FakeNetwork()

    def off_by_one(frames: range):
        return net(range(frames.start + 1, min(frames.stop + 1, N)))

    with pytest.raises(ValueError, match="asked for 0…29"):
        run_chunked(N, off_by_one, ChunkStore(tmp_path), 30, 10)
    with pytest.raises(TypeError, match="ChunkPrediction"):
        run_chunked(N, lambda frames: None, ChunkStore(tmp_path), 30, 10)


def test_raw_chunks_can_be_dropped_once_joined(tmp_path):
    store = ChunkStore(tmp_path)
    result = run_chunked(60, FakeNetwork(60), store, 24, 8, keep_chunks=False)
    assert store.chunk_indices() == [] and len(result) == 60
    assert sum(len(b.frames) for b in result.iter_blocks()) == 60


def test_a_pipeline_prediction_becomes_a_chunk_with_sky_removed():
    depth = np.full((2, 4, 5), 3.0, np.float32)
    sky = np.zeros((2, 4, 5), bool)
    sky[:, 0] = True
    pred = SimpleNamespace(
        depth=depth,
        sky=sky,
        conf=None,
        extrinsics=np.tile(np.eye(3, 4, dtype=np.float32), (2, 1, 1)),
        intrinsics=np.tile(np.eye(3, dtype=np.float32), (2, 1, 1)),
        processed_images=np.zeros((2, 4, 5, 3), np.uint8),
    )
    chunk = chunk_from_prediction(pred, range(10, 12))
    assert chunk.frames.tolist() == [10, 11]
    assert np.isnan(chunk.depth[:, 0]).all() and (chunk.depth[:, 1:] == 3).all()
    assert chunk.images is pred.processed_images


def test_the_orchestrator_and_geometry_import_without_torch():
    # Blender loads engine.geometry; the job runner's loop must not pull torch in either.
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['bpy'] = None\n"
        "import engine.jobs.chunking, engine.geometry.streaming, engine.geometry.floor\n"
        "import engine.geometry.trajectory, engine.geometry.solve_report\n"
        "from engine.model.memory import chunk_size_for_memory\n"
        "print(chunk_size_for_memory(8 * 2**30, 280, 504, 'da3-small'))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 4
