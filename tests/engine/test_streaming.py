"""Long shots in chunks: planning, memory estimate, the Sim(3) joint, and the joiner on a known path."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from engine.geometry.cameras import camera_centers
from engine.geometry.sim3 import Sim3
from engine.geometry.streaming import (
    ChunkJoint,
    ChunkPrediction,
    ChunkStore,
    JoinedResult,
    StreamingJoiner,
    fit_chunk_transform,
    join_chunks,
    plan_chunks,
)
from engine.geometry.trajectory import absolute_trajectory_error, path_length
from engine.model.memory import InsufficientMemory, chunk_size_for_memory, estimate_chunk_bytes
from tests.engine import synthetic_shot as shot


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))))


# ---------------------------------------------------------------------------------------------- planning


@pytest.mark.parametrize(
    ("n", "size", "overlap"), [(120, 30, 10), (100, 40, 20), (41, 40, 1), (500, 120, 60)]
)
def test_chunks_cover_every_frame_with_full_size_and_enough_overlap(n, size, overlap):
    chunks = plan_chunks(n, size, overlap)
    covered = np.zeros(n, int)
    for r in chunks:
        covered[r.start : r.stop] += 1
        assert len(r) == size  # every network call sees the same number of frames
    assert covered.min() >= 1 and chunks[0].start == 0 and chunks[-1].stop == n
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.start < b.start and a.stop < b.stop
        assert a.stop - b.start >= overlap


def test_a_short_shot_is_one_chunk():
    assert plan_chunks(25, 40, 10) == [range(0, 25)]
    assert plan_chunks(40, 40, 10) == [range(0, 40)]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0, 10, 5), "at least one frame"),
        ((100, 1, 0), "at least 2 frames"),
        ((100, 10, 10), "smaller than the chunk size"),
        ((100, 10, 0), "at least 1 frame"),
    ],
)
def test_bad_chunk_plans_say_what_to_change(args, words):
    with pytest.raises(ValueError, match=words):
        plan_chunks(*args)


def test_chunk_size_follows_memory_resolution_and_model():
    gib = 2**30
    small = chunk_size_for_memory(8 * gib, 280, 504, "da3-small", max_chunk=10_000)
    assert chunk_size_for_memory(16 * gib, 280, 504, "da3-small", max_chunk=10_000) > small
    assert chunk_size_for_memory(8 * gib, 378, 504, "da3-small", max_chunk=10_000) < small
    assert chunk_size_for_memory(8 * gib, 280, 504, "da3-large", max_chunk=10_000) < small
    # The choice is the largest chunk whose estimate fits in the planned share of the memory.
    fixed = estimate_chunk_bytes("da3-small", 0, 280, 504)
    plan = fixed + 0.8 * (8 * gib - fixed)
    assert (
        estimate_chunk_bytes("da3-small", small, 280, 504)
        <= plan
        < estimate_chunk_bytes("da3-small", small + 1, 280, 504)
    )
    assert chunk_size_for_memory(80 * gib, 280, 504, "da3-small") == 120  # DA3-Streaming's chunk at most


def test_a_user_chunk_size_wins_and_too_little_memory_is_explained():
    assert chunk_size_for_memory(1, 280, 504, "da3-giant", user_chunk_size=16) == 16
    with pytest.raises(InsufficientMemory, match="lower the processing resolution"):
        chunk_size_for_memory(2 * 2**30, 378, 504, "da3nested-giant-large")
    with pytest.raises(ValueError, match="unknown DA3 preset"):
        chunk_size_for_memory(2**33, 280, 504, "da3-tiny")


# ---------------------------------------------------------------------------------------------- one joint


def pair_of_chunks(seed: int = 0, **noise) -> tuple[ChunkPrediction, ChunkPrediction, Sim3]:
    """Chunks [0, 20) and [12, 32) of a 60-frame shot in random worlds; the true next → prev Sim(3)."""
    chunks, worlds = shot.make_chunks(60, [range(0, 20), range(12, 32)], seed=seed, **noise)
    return chunks[0], chunks[1], worlds[0].compose(worlds[1].inverse())


def test_exact_overlap_gives_the_exact_transform():
    prev, nxt, truth = pair_of_chunks()
    joint = fit_chunk_transform(prev, nxt)
    assert joint.method == "points" and joint.overlap_frames == 8
    assert joint.sim3.s == pytest.approx(truth.s, rel=1e-6)
    assert rotation_angle_deg(joint.sim3.R, truth.R) < 1e-5
    np.testing.assert_allclose(joint.sim3.t, truth.t, atol=1e-5 * truth.s)
    assert joint.relative_residual < 1e-6 and joint.inlier_fraction == 1.0


def test_noisy_overlap_with_outliers_still_gives_the_transform():
    prev, nxt, truth = pair_of_chunks(seed=3, depth_noise=0.02, outlier_fraction=0.05)
    joint = fit_chunk_transform(prev, nxt)
    assert joint.sim3.s == pytest.approx(truth.s, rel=3e-3)
    assert rotation_angle_deg(joint.sim3.R, truth.R) < 0.1
    # the outliers show up as missing inliers, the noise as a residual of a few % of the depth
    assert 0.85 < joint.inlier_fraction < 0.97  # 5 % outliers in each chunk: ~10 % of the pairs
    assert 0.01 < joint.relative_residual < 0.06
    assert joint.residual_rms == pytest.approx(joint.relative_residual * joint.scene_scale)


def test_the_fit_is_deterministic_and_bounded_in_points():
    prev, nxt, _ = pair_of_chunks(seed=4, depth_noise=0.01)
    a = fit_chunk_transform(prev, nxt, max_points=2000, seed=7)
    b = fit_chunk_transform(prev, nxt, max_points=2000, seed=7)
    assert a.n_points == 2000
    np.testing.assert_array_equal(a.sim3.matrix(), b.sim3.matrix())


def test_unconfident_overlap_falls_back_to_the_cameras():
    prev, nxt, truth = pair_of_chunks(seed=5)
    conf = nxt.conf.copy()
    conf[:8] = 1.0  # DA3's "no confidence" everywhere in the overlap
    conf[:8, 10, 10] = 50.0  # a handful of confident pixels are not enough for a dense fit
    joint = fit_chunk_transform(
        prev, ChunkPrediction(nxt.frames, nxt.depth, nxt.extrinsics, nxt.intrinsics, conf)
    )
    assert joint.method == "cameras"
    assert joint.sim3.s == pytest.approx(truth.s, rel=1e-4)
    assert rotation_angle_deg(joint.sim3.R, truth.R) < 1e-4
    np.testing.assert_allclose(joint.sim3.t, truth.t, atol=1e-4 * truth.s)


def test_chunks_without_shared_frames_cannot_be_joined():
    chunks, _ = shot.make_chunks(40, [range(0, 10), range(10, 20)])
    with pytest.raises(ValueError, match="share no frame"):
        fit_chunk_transform(*chunks)


def test_joint_round_trips_through_json():
    prev, nxt, _ = pair_of_chunks(seed=6, depth_noise=0.01)
    joint = fit_chunk_transform(prev, nxt)
    back = ChunkJoint.from_dict(json.loads(json.dumps(joint.to_dict())))
    np.testing.assert_allclose(back.sim3.matrix(), joint.sim3.matrix(), atol=1e-12)
    assert back.inlier_fraction == joint.inlier_fraction and back.method == "points"


# ---------------------------------------------------------------------------------------------- whole shot


def join_in_memory(chunks, tmp_path, **options) -> JoinedResult:
    joiner = StreamingJoiner(ChunkStore(tmp_path), **options)
    for c in chunks:
        joiner.add(c)
    return joiner.finish()


@pytest.mark.parametrize(
    "noise",
    [
        {},
        {"depth_noise": 0.02, "outlier_fraction": 0.02, "pose_noise": 0.002},
    ],
    ids=["exact", "noisy"],
)
def test_the_joiner_recovers_the_camera_path(tmp_path, noise):
    n = 150
    ranges = plan_chunks(n, 30, 10)
    chunks, worlds = shot.make_chunks(n, ranges, seed=11, **noise)
    result = join_in_memory(chunks, tmp_path)
    truth = shot.render(n)
    assert np.array_equal(result.frames, np.arange(n))
    ate, _ = absolute_trajectory_error(camera_centers(result.extrinsics), truth.centers)
    limit = 1e-6 if not noise else 0.01  # the bar: below 1 % of the path length
    assert ate / path_length(truth.centers) < limit
    # The joined world is chunk 0's: depth of every frame is the true depth × chunk 0's scale.
    for block in result.iter_blocks():
        rel = block.depth / (truth.depth[block.frames] * worlds[0].s) - 1
        assert abs(float(np.nanmedian(rel))) < (1e-5 if not noise else 0.01)
    assert len(result.joints) == len(ranges) - 1


def test_chunks_in_the_world_of_known_cameras_are_joined_by_the_identity(tmp_path):
    """Known cameras: every chunk is in the cameras' world already; a fit would move the later chunks'
    cameras by the depth noise, the identity keeps them, and the joint still measures the disagreement."""
    n = 70
    ranges = plan_chunks(n, 30, 10)
    rng = np.random.default_rng(5)
    chunks = [shot.to_chunk(shot.render(n, r), Sim3(), rng, depth_noise=0.02) for r in ranges]
    joiner = StreamingJoiner(ChunkStore(tmp_path / "known"), known_world=True)
    joints = [joiner.add(chunk) for chunk in chunks][1:]
    result = joiner.finish()
    np.testing.assert_array_equal(result.extrinsics, shot.render(n).extrinsics)  # exactly the given ones
    assert all(j.method == "known" and j.sim3.matrix().tolist() == np.eye(4).tolist() for j in joints)
    assert all(0.005 < j.relative_residual < 0.06 for j in joints)  # 2 % depth noise in each chunk
    assert (result.depth_scale == 1.0).all()
    fitted = fit_chunk_transform(chunks[0], chunks[1])  # what a fit would have done: move them a little
    assert not np.allclose(fitted.sim3.matrix(), np.eye(4), atol=1e-9)


def test_overlap_frames_come_from_the_later_chunk(tmp_path):
    ranges = plan_chunks(70, 30, 10)  # [0,30) [20,50) [40,70)
    chunks, _ = shot.make_chunks(70, ranges, seed=2)
    result = join_in_memory(chunks, tmp_path)
    expected = np.zeros(70, int)
    expected[20:40], expected[40:] = 1, 2
    np.testing.assert_array_equal(result.chunk_of_frame, expected)
    # each frame's depth scale is its own chunk's accumulated scale
    np.testing.assert_allclose(result.depth_scale, [result.chunk_transforms[k].s for k in expected])


def test_join_from_the_store_matches_the_streaming_join_and_reloads(tmp_path):
    ranges = plan_chunks(60, 24, 8)
    chunks, _ = shot.make_chunks(60, ranges, seed=9, depth_noise=0.01)
    store = ChunkStore(tmp_path / "job")
    for k, c in enumerate(chunks):
        store.write_chunk(k, c)
    streamed = join_in_memory(chunks, tmp_path / "other")
    joined = join_chunks(store)
    np.testing.assert_allclose(joined.extrinsics, streamed.extrinsics, atol=1e-9)
    again = JoinedResult.load(store)
    np.testing.assert_array_equal(again.extrinsics, joined.extrinsics)
    for a, b in zip(again.joints, joined.joints, strict=True):
        assert {**a.to_dict(), "sim3": None} == {**b.to_dict(), "sim3": None}
        np.testing.assert_allclose(a.sim3.matrix(), b.sim3.matrix(), atol=1e-12)
    cloud = joined.points()
    assert cloud["xyz"].shape[1] == 3 and len(cloud["xyz"]) == 60 * 1000
    assert set(np.unique(cloud["frame"])) == set(range(60))


def test_the_reduced_cloud_lies_on_the_true_surfaces(tmp_path):
    ranges = plan_chunks(60, 24, 8)
    chunks, worlds = shot.make_chunks(60, ranges, seed=4)
    result = join_in_memory(chunks, tmp_path, points_per_frame=300)
    cloud = result.points()
    truth_xyz = worlds[0].inverse().apply(cloud["xyz"])  # back to the true world (Z up, metres)
    on_floor = np.abs(truth_xyz[:, 2]) < 1e-3
    on_wall = np.abs(truth_xyz[:, 1] - shot.WALL_Y) < 1e-3
    assert (on_floor | on_wall).mean() > 0.8  # the rest is on the boxes


def test_store_rejects_missing_chunks_with_a_clear_message(tmp_path):
    store = ChunkStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="run its prediction again"):
        store.read_chunk(3)
    with pytest.raises(FileNotFoundError, match="no chunk predictions"):
        join_chunks(store)


def _peak_join_bytes(n: int, tmp_path) -> tuple[int, int]:
    store = ChunkStore(tmp_path / f"n{n}")
    total = 0
    for k, r in enumerate(plan_chunks(n, 20, 5)):
        chunk = shot.make_chunks(n, [r], seed=k)[0][0]
        store.write_chunk(k, chunk)
        total += sum(a.nbytes for a in (chunk.depth, chunk.conf, chunk.images))
    tracemalloc.start()
    try:
        result = join_chunks(store, points_per_frame=50, max_fit_points=5000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result) == n
    return peak, total


def test_joining_a_long_shot_does_not_hold_it_in_memory(tmp_path):
    peak_100, _ = _peak_join_bytes(100, tmp_path)
    peak_400, data_400 = _peak_join_bytes(400, tmp_path)
    assert peak_400 < 0.25 * data_400  # a couple of 20-frame chunks, not 400 frames
    assert peak_400 < 1.3 * peak_100  # flat: four times the frames, about the same peak
