"""Shot jobs (issue 5): a video solved in overlapping chunks into a shot bundle (engine/shot_job.py).

Jobs run on a random da3-small checkpoint we generate, over synthetic videos made by our own code
(every frame carries its number as a barcode), at 70 px so the whole file stays quick. The network
is random, so the cameras are not a real solve; what is checked is what a user would notice: one
camera per frame on the right source frame and time, the chunking, the report, a proper floor
alignment, cancel and cleanup, and memory that does not grow with the shot.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import plyfile
import pycolmap
import pytest
import trimesh
from PIL import Image

from engine import jobs
from engine.errors import JobCancelled, UserError
from engine.formats.bundle import is_complete, read_bundle
from engine.geometry.cameras import camera_centers
from engine.geometry.streaming import plan_chunks
from engine.io.frame_cache import FrameCache
from engine.io.video import probe_video
from engine.jobs.shot import SHOT_CACHE, default_overlap
from engine.process import protocol as p
from engine.process.client import EngineClient
from tests.engine.media import make_test_images, read_frame_number, write_test_video
from tests.engine.test_jobs import FakeMetricNet, RecordingContext, save_images

ROOT = Path(__file__).resolve().parents[2]
RES = 70  # 60×80 frames → 56×70 processed
H, W = 60, 80
VFR_TIMES = [0.0, 0.03, 0.09, 0.1, 0.31, 0.33, 0.36, 0.52, 0.6, 0.61, 0.95, 1.0, 1.04, 1.3]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shots")
    return {
        "shot": write_test_video(root / "shot.mkv", make_test_images(24, H, W), fps=24),
        "short": write_test_video(root / "short.mkv", make_test_images(6, H, W), fps=25),
        "vfr": write_test_video(
            root / "vfr.mp4",
            make_test_images(len(VFR_TIMES), H, W),
            vfr_timestamps_s=VFR_TIMES,
            codec="libx264",
        ),
    }


def request(inputs, output: Path, model, **options) -> p.ReconstructRequest:
    options.setdefault("process_res", RES)
    return p.ReconstructRequest(
        job=p.new_job_id(),
        inputs=tuple(str(i) for i in inputs),
        output=str(output),
        model=str(model),
        options=p.JobOptions(**options),
    )


def seen_frame_numbers(folder: Path) -> list[int]:
    """The barcode of every frame the network saw (in solve order), from a kept chunk cache."""
    seen = {}
    for part in sorted((folder / SHOT_CACHE / "chunks").glob("joined_*.npz")):
        with np.load(part) as z:
            for position, image in zip(z["frames"].tolist(), z["images"], strict=True):
                plate = np.asarray(Image.fromarray(image).resize((W, H), Image.BILINEAR))  # barcode grid
                seen[position] = read_frame_number(plate)
    return [seen[i] for i in range(len(seen))]


def assert_floor_alignment(b) -> None:
    """world_alignment: a rotation with uniform scale that takes the floor to Z = 0, cameras above it."""
    m = b.world_alignment
    a = m[:3, :3]
    s2 = np.trace(a @ a.T) / 3
    np.testing.assert_allclose(a @ a.T, s2 * np.eye(3), atol=1e-9 * s2)
    assert np.linalg.det(a) > 0 and np.allclose(m[3], [0, 0, 0, 1])
    n, d = b.floor_plane[:3], b.floor_plane[3]
    assert np.linalg.norm(n) == pytest.approx(1.0)
    basis = np.linalg.svd(n[None])[2][1:]  # two directions along the floor
    on_floor = -d * n + np.random.default_rng(0).normal(size=(50, 2)) @ basis
    aligned = on_floor @ a.T + m[:3, 3]
    np.testing.assert_allclose(aligned[:, 2], 0.0, atol=1e-6 * max(1.0, np.abs(aligned).max()))
    centres = camera_centers(b.extrinsics) @ a.T + m[:3, 3]
    assert (centres[:, 2] > 0).all()  # the cameras' side is +Z
    np.testing.assert_allclose(centres[0, :2], 0.0, atol=1e-6)  # the origin below the first camera


# --- in-process ---------------------------------------------------------------------------------------


def test_a_video_in_chunks_gives_a_complete_shot_bundle(videos, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    req = request(
        [videos["shot"]],
        out,
        small_checkpoint,
        chunk_size=8,
        chunk_overlap=3,
        exports=("points", "glb", "colmap"),
        keep_chunk_cache=True,
    )
    context = RecordingContext()
    summary = jobs.run_job(req, context)
    b = read_bundle(out)
    n = 24
    plan = plan_chunks(n, 8, 3)

    # one camera per frame on the exact source frame and time; no per-frame depth or images
    assert b.images is None and b.depth is None and b.num_views == n and b.image_hw == (56, 70)
    assert b.frame_indices.tolist() == list(range(n))
    np.testing.assert_allclose(b.timestamps_s, np.arange(n) / 24, atol=1e-3)  # Matroska: 1 ms
    assert b.source_paths == (str(videos["shot"]),) * n and b.original_sizes.tolist() == [[H, W]] * n
    assert seen_frame_numbers(out) == list(range(n))  # what the network saw, kept by keep_chunk_cache

    # the shot's facts, the chunking, the constant focal length in plate pixels
    assert b.shot["fps"] == pytest.approx(24.0) and b.shot["frame_count"] == n
    assert (b.shot["chunk_size"], b.shot["overlap"]) == (8, 3)
    assert b.shot["chunks"] == [[r.start, r.stop - 1] for r in plan]
    fx, focal = b.intrinsics_original[:, 0, 0], b.shot["focal_px"]  # a median: robust to odd frames
    assert (fx <= focal + 1e-4).sum() >= n / 2 and (fx >= focal - 1e-4).sum() >= n / 2
    assert b.shot["focal_spread_px"] >= 0
    assert summary["chunks"] == len(plan) and summary["views"] == n and summary["shot"] is True

    # progress per chunk (and inside each: per block, same counts), and the report in the Info log
    network = [e[2:4] for e in context.events if e[:2] == ("progress", "network")]
    assert [c for i, c in enumerate(network) if i == 0 or c != network[i - 1]] == [
        (k, len(plan)) for k in range(len(plan) + 1)
    ]
    assert len(network) > 12 * len(plan)  # da3-small: an event before each of 12 blocks of every chunk
    logs = [e[2] for e in context.events if e[:2] == ("log", "info")]
    assert any(message.startswith("Solve ") and "chunk joints" in message for message in logs)

    # the solve report: an entry per frame in plate pixels, the joints between chunks
    report = b.report
    assert report["frames"] == list(range(n)) and len(report["frame_error_px"]) == n
    errors = np.array([np.nan if e is None else e for e in report["frame_error_px"]])
    assert np.isfinite(errors).sum() >= n // 2 and (errors[np.isfinite(errors)] >= 0).all()
    assert report["pixel_units"] == "plate" and len(report["joints"]) == len(plan) - 1
    assert report["focal_px"] == pytest.approx(b.shot["focal_px"])

    # the reduced cloud, the floor and the alignment Blender puts on the root
    assert len(b.points) > 1000 and b.points.view.max() < n and (b.points.conf >= 1).all()
    assert_floor_alignment(b)

    # exports from the cameras and the reduced cloud, read by third-party readers
    vertex = plyfile.PlyData.read(str(out / "points.ply"))["vertex"]
    np.testing.assert_allclose(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), b.points.xyz)
    scene = trimesh.load(out / "scene.glb")
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert len(clouds) == 1 and len(clouds[0].vertices) == len(b.points)
    rec = pycolmap.Reconstruction(str(out / "colmap" / "sparse" / "0"))
    assert len(rec.images) == n and len(rec.points3D) > 0
    for image in rec.images.values():
        number = int(image.name.rsplit("_", 1)[1].split(".")[0])
        np.testing.assert_allclose(image.cam_from_world().matrix(), b.extrinsics[number], atol=1e-5)


def test_a_frame_range_and_stride_keep_exact_frame_numbers(videos, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    req = request(
        [videos["shot"]], out, small_checkpoint, frames=(3, 22, 2), chunk_size=4, keep_chunk_cache=True
    )
    jobs.run_job(req, RecordingContext())
    b = read_bundle(out)
    expected = list(range(3, 22, 2))
    assert b.frame_indices.tolist() == expected and b.num_views == len(expected)
    np.testing.assert_allclose(b.timestamps_s, np.array(expected) / 24, atol=1e-3)
    assert seen_frame_numbers(out) == expected
    assert b.report["frames"] == expected and b.shot["frame_count"] == 24  # the source's, not the solved
    assert b.shot["overlap"] == default_overlap(4) == 2


def test_a_variable_frame_rate_video_keeps_its_real_timestamps(videos, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    jobs.run_job(request([videos["vfr"]], out, small_checkpoint, chunk_size=6), RecordingContext())
    b = read_bundle(out)
    assert b.frame_indices.tolist() == list(range(len(VFR_TIMES)))
    np.testing.assert_allclose(b.timestamps_s, VFR_TIMES, atol=1e-4)
    assert b.shot["fps"] == pytest.approx(probe_video(videos["vfr"]).fps)
    assert b.shot["frame_count"] == len(VFR_TIMES)


def test_a_range_in_movie_positions_solves_the_frames_blender_shows(videos, small_checkpoint, tmp_path):
    """Blender numbers variable-frame-rate footage by time (position round(t · fps)); a job asked for
    positions 0–11 at 10 fps solves the frames Blender shows there (the later of two on one position)."""
    out = tmp_path / "out"
    req = request(
        [videos["vfr"]], out, small_checkpoint, chunk_size=4, frames=(0, 12, 1), frame_positions_fps=10.0
    )
    jobs.run_job(req, RecordingContext())
    b = read_bundle(out)
    # positions of VFR_TIMES at 10 fps: 0 0 1 1 3 3 4 5 6 6 10 10 10 13
    assert b.frame_indices.tolist() == [1, 3, 5, 6, 7, 9, 12]
    with pytest.raises(p.ProtocolError, match="frame_positions_fps"):
        p.JobOptions(target_fps=12.0, frame_positions_fps=10.0)


def test_a_short_video_without_chunk_options_is_one_chunk_of_the_same_format(
    videos, small_checkpoint, tmp_path
):
    req = request([videos["short"]], tmp_path / "out", small_checkpoint)
    assert req.kind == "shot"
    summary = jobs.run_job(req, RecordingContext())
    b = read_bundle(tmp_path / "out")
    assert summary["chunks"] == 1 and b.shot["chunks"] == [[0, 5]] and b.report["joints"] == []
    assert b.images is None and b.num_views == 6 and len(b.points) > 0 and b.shot["fps"] == pytest.approx(25)
    assert not (tmp_path / "out" / SHOT_CACHE).exists()


def test_the_frame_cache_gives_back_every_frame_exactly(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(5, 7), (6, 4), (5, 7), (1, 1)]]
    with FrameCache(tmp_path / "cache" / "frames.raw") as cache:
        assert [cache.append(f) for f in frames] == [0, 1, 2, 3]
        assert cache.nbytes == sum(f.nbytes for f in frames)
        for i in (2, 0, 3, 1, 2):
            np.testing.assert_array_equal(cache.read(i), frames[i])
        assert [f.shape for f in cache.read_range(range(1, 3))] == [(6, 4, 3), (5, 7, 3)]
        with pytest.raises(IndexError):
            cache.read(4)
        with pytest.raises(ValueError, match="uint8"):
            cache.append(np.zeros((2, 2, 3), np.float32))
    assert (tmp_path / "cache" / "frames.raw").stat().st_size == sum(
        f.nbytes for f in frames
    )  # raw pixels only


def test_which_jobs_are_shots(videos, tmp_path):
    def shot(inputs, **options) -> bool:
        return request(inputs, tmp_path, "m", **options).kind == "shot"

    save_images(tmp_path / "stills", [(H, W)] * 2)
    assert shot([videos["shot"]]) and shot([tmp_path / "stills"], chunk_size=4)
    assert not shot([tmp_path / "stills"]) and not shot([videos["shot"], videos["short"]])
    assert shot([videos["shot"]], cameras="cams.npz")  # known cameras: each chunk conditioned on its own
    assert not shot([videos["shot"]], infer_gs=True)
    assert [default_overlap(c) for c in (2, 3, 4, 8, 120)] == [1, 2, 2, 4, 60]


def test_stills_with_a_chunk_size_become_a_shot(small_checkpoint, tmp_path):
    save_images(tmp_path / "stills", [(H, W)] * 7)
    out = tmp_path / "out"
    jobs.run_job(request([tmp_path / "stills"], out, small_checkpoint, chunk_size=4), RecordingContext())
    b = read_bundle(out)
    assert b.num_views == 7 and b.frame_indices.tolist() == [-1] * 7 and np.isnan(b.timestamps_s).all()
    assert b.shot["fps"] is None and b.shot["frame_count"] == 7 and b.report["frames"] == list(range(7))


def test_metric_scale_from_the_first_chunk_applies_to_the_whole_shot(videos, small_checkpoint, tmp_path):
    context = RecordingContext()
    rel_out = tmp_path / "rel"
    jobs.run_job(
        request([videos["shot"]], rel_out, small_checkpoint, chunk_size=8, keep_chunk_cache=True), context
    )
    rel = read_bundle(rel_out)
    chunks = rel_out / SHOT_CACHE / "chunks"
    with np.load(chunks / "joined_0000.npz") as part, np.load(chunks / "cameras.npz") as cams:
        depth, k = part["depth"], cams["intrinsics"][part["frames"]]
    fake = FakeMetricNet(depth, k, factor=2.5)
    metric_context = RecordingContext(models={**context.models, "fake/metric": fake})
    req = request(
        [videos["shot"]],
        tmp_path / "m",
        small_checkpoint,
        chunk_size=8,
        metric=True,
        metric_model="fake/metric",
    )
    summary = jobs.run_job(req, metric_context)
    b = read_bundle(tmp_path / "m")
    assert b.units == "metre" and b.is_metric and b.scale_factor == pytest.approx(2.5, rel=1e-4)
    assert summary["units"] == "metre" and "metric" in metric_context.stages()
    np.testing.assert_allclose(b.extrinsics[:, :, 3], 2.5 * rel.extrinsics[:, :, 3], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.extrinsics[:, :, :3], rel.extrinsics[:, :, :3], atol=1e-6)
    np.testing.assert_allclose(b.points.xyz, 2.5 * rel.points.xyz, rtol=1e-4, atol=1e-5)
    assert b.world_alignment[:3, 3] == pytest.approx(2.5 * rel.world_alignment[:3, 3], rel=1e-3, abs=1e-5)


def tracked_cameras(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A camera track in its own world: ``(K (n, 3, 3) plate pixels, w2c (n, 4, 4))``, panning and dollying
    with a slow zoom, far from the origin (so nothing about it is the network's own frame)."""
    angles = np.radians(np.linspace(-20.0, 25.0, n))
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, 0, 0] = w2c[:, 2, 2] = np.cos(angles)
    w2c[:, 0, 2], w2c[:, 2, 0] = np.sin(angles), -np.sin(angles)
    centres = np.stack([np.linspace(3.0, 5.0, n), np.full(n, -1.5), np.linspace(10.0, 11.0, n)], 1)
    w2c[:, :3, 3] = -np.einsum("nij,nj->ni", w2c[:, :3, :3], centres)
    focal = np.linspace(70.0, 80.0, n)
    k = np.zeros((n, 3, 3))
    k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = focal, focal * 1.02, W / 2 + 1, H / 2 - 2, 1
    return k, w2c


def test_a_video_with_known_cameras_runs_as_a_shot_in_their_world(videos, small_checkpoint, tmp_path):
    """A camera track as known cameras: every chunk conditioned on its frames' cameras, the chunks joined
    by the identity (a joint that is only measured), no floor: the shot's cameras are the track's and its
    points lie in the track's frame."""
    frames = (2, 22, 2)  # positions 2, 4, …, 20 of the video: 10 solved frames, one camera each
    n = len(range(*frames))
    k, w2c = tracked_cameras(n)
    np.savez(tmp_path / "track.npz", intrinsics=k, extrinsics=w2c)
    out = tmp_path / "out"
    req = request(
        [videos["shot"]],
        out,
        small_checkpoint,
        frames=frames,
        chunk_size=4,
        chunk_overlap=2,
        cameras=str(tmp_path / "track.npz"),
        exports=("colmap",),
    )
    assert req.kind == "shot"
    context = RecordingContext()
    jobs.run_job(req, context)
    b = read_bundle(out)
    assert b.kind == "shot" and b.num_views == n and b.frame_indices.tolist() == list(range(*frames))
    np.testing.assert_allclose(b.extrinsics, w2c[:, :3], atol=2e-6 * 11)  # float32 in the bundle
    np.testing.assert_allclose(b.intrinsics_original, k, rtol=1e-5)
    assert b.units == "input" and b.world_alignment is None and b.floor_plane is None
    joints = b.report["joints"]
    assert len(joints) == len(plan_chunks(n, 4, 2)) - 1 and {j["method"] for j in joints} == {"known"}
    assert all(j["residual_rms"] is None or j["residual_rms"] >= 0 for j in joints)
    # every point lies in front of the camera of the view it came from and projects into its plate
    p = b.points
    cam = np.einsum("mij,mj->mi", w2c[p.view, :3, :3], p.xyz) + w2c[p.view, :3, 3]
    uv = np.einsum("mij,mj->mi", k[p.view], cam)
    uv = uv[:, :2] / uv[:, 2:]
    assert len(p) > 100 and (cam[:, 2] > 0).all()
    assert (uv > -1e-3).all() and (uv[:, 0] < W + 1e-3).all() and (uv[:, 1] < H + 1e-3).all()
    logs = [e[2] for e in context.events if e[:2] == ("log", "info")]
    assert any("no floor is fitted" in message for message in logs)
    # the COLMAP export carries the track too
    rec = pycolmap.Reconstruction(str(out / "colmap" / "sparse" / "0"))
    for image in rec.images.values():
        row = list(range(*frames)).index(int(image.name.rsplit("_", 1)[1].split(".")[0]))
        np.testing.assert_allclose(image.cam_from_world().matrix(), w2c[row, :3], atol=1e-4)


def test_a_shot_refuses_a_cameras_file_of_the_wrong_length(videos, small_checkpoint, tmp_path):
    k, w2c = tracked_cameras(5)
    np.savez(tmp_path / "track.npz", intrinsics=k, extrinsics=w2c)
    req = request([videos["shot"]], tmp_path / "out", small_checkpoint, cameras=str(tmp_path / "track.npz"))
    with pytest.raises(UserError, match="has 5 cameras but the job has 24 frames"):
        jobs.run_job(req, RecordingContext())


def test_cancel_between_chunks_leaves_no_bundle_and_no_cache(videos, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    context = RecordingContext(cancel_at=("network", 2))
    with pytest.raises(JobCancelled):
        jobs.run_job(request([videos["shot"]], out, small_checkpoint, chunk_size=8), context)
    network = [e[2] for e in context.events if e[:2] == ("progress", "network")]
    # no third chunk ran: the cancel came before its first block
    assert sorted(set(network)) == [0, 1, 2] and network[-1] == 2
    assert not is_complete(out) and not out.exists()  # the cache went, and with it the folder it made


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exports": ("depth",)}, "'depth' export cannot be made: a video shot keeps no per-frame depth"),
        ({"chunk_size": 8, "infer_gs": True}, "3D Gaussians are not made when a shot runs in chunks"),
    ],
)
def test_what_a_shot_cannot_do_is_refused_before_any_work(
    videos, small_checkpoint, tmp_path, options, message
):
    context = RecordingContext()
    with pytest.raises(UserError, match=message):
        jobs.run_job(request([videos["shot"]], tmp_path / "out", small_checkpoint, **options), context)
    assert not (tmp_path / "out").exists() and "decode" not in context.stages()


class PeakContext(RecordingContext):
    """Records the peak of traced memory (numpy arrays and Python objects) of each stage: the interval
    up to a progress event belongs to the stage of the event before it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.peaks: dict[str, int] = {}
        self._stage = "start"

    def progress(self, stage: str, current: int, total: int, message: str = "") -> None:
        self.peaks[self._stage] = max(self.peaks.get(self._stage, 0), tracemalloc.get_traced_memory()[1])
        tracemalloc.reset_peak()
        self._stage = stage
        super().progress(stage, current, total, message)


def _traced_peaks(folder: Path, frames: int, checkpoint: Path, models: dict) -> dict[str, int]:
    """Peak traced bytes per stage of a shot job over ``frames`` frames."""
    video = write_test_video(folder / f"{frames}.mkv", make_test_images(frames, H, W), fps=24)
    req = request(
        [video], folder / f"out{frames}", checkpoint, chunk_size=6, chunk_overlap=2, max_points=2000
    )
    context = PeakContext(models=models)  # the model is loaded already: weights are not per-frame memory
    tracemalloc.start()
    try:
        jobs.run_job(req, context)
        context.progress("end", 0, 0)
    finally:
        tracemalloc.stop()
    return context.peaks


def test_memory_does_not_grow_with_the_number_of_frames(small_checkpoint, tmp_path, monkeypatch):
    """Frames spill to the cache file and chunks to the chunk store, so 4× the frames may add small
    per-frame arrays (cameras, frame refs, paths and report rows: a few kB a frame), never frames. One
    processed frame is 56·70·3 ≈ 12 kB, with its depth and confidence 43 kB: holding any of those for
    36 extra frames adds more than a quarter of 43 kB per frame.

    Traced memory (tracemalloc) is numpy's and Python's, exact and repeatable; torch's allocator is not
    traced, and its working set is one chunk whatever the length (the network never sees more)."""
    from engine import pipeline

    seen: list[int] = []
    predict = pipeline.predict

    def counting_predict(model, images, **kwargs):
        seen.append(len(images))
        return predict(model, images, **kwargs)

    monkeypatch.setattr(pipeline, "predict", counting_predict)
    models = {str(small_checkpoint): RecordingContext().model_for(str(small_checkpoint))}
    short = _traced_peaks(tmp_path, 12, small_checkpoint, models)
    long = _traced_peaks(tmp_path, 48, small_checkpoint, models)
    small_per_frame = 0.25 * 56 * 70 * (3 + 4 + 4) * (48 - 12)
    assert max(seen) == 6  # the network sees one chunk at a time
    for stage in ("decode", "solve", "export"):  # decoding, the report and the bundle hold no frames
        assert long[stage] - short[stage] < small_per_frame, (stage, short, long)
    # a chunk's joint fit needs up to ~1 MB more or less depending on the content, not on the length
    assert long["network"] - short["network"] < 0.25 * short["network"], (short, long)


# --- through the engine process -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    client = EngineClient(sys.executable, extension_root=ROOT, args=("--device", "cpu"))
    yield client
    client.stop(timeout=5.0)


def run_job(client: EngineClient, req: p.ReconstructRequest, on_event=None, timeout: float = 120.0):
    job = client.submit(req)
    events: list[p.Event] = []
    while not any(e.terminal_job == job for e in events):
        event = client.next_event(timeout=timeout)
        assert event is not None, f"job {job} did not end; events: {events}"
        events.append(event)
        if on_event is not None:
            on_event(event)
    return events[-1], events


def test_the_engine_process_runs_a_shot_and_reports_each_chunk(engine, videos, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    terminal, events = run_job(
        engine, request([videos["shot"]], out, small_checkpoint, chunk_size=8, chunk_overlap=3)
    )
    assert isinstance(terminal, p.FinishedEvent), terminal
    chunks = [
        e
        for e in events
        if isinstance(e, p.ProgressEvent) and e.stage == "network" and e.current > 0 and "frames" in e.message
    ]  # the events that end a chunk (those inside one say "chunk 3/5: block 4/12")
    assert [e.message.split(":")[0] for e in chunks] == [f"chunk {k}/5" for k in range(1, 6)]
    assert chunks[2].message.startswith("chunk 3/5: frames 10–17")
    assert terminal.summary["shot"] and terminal.summary["views"] == 24
    json.dumps(terminal.summary)  # plain JSON for the client
    b = read_bundle(out)
    assert b.num_views == 24 and b.frame_indices.tolist() == list(range(24)) and b.shot["fps"] == 24
    assert len(b.report["frame_error_px"]) == 24 and b.world_alignment is not None
    assert not (out / SHOT_CACHE).exists()


def test_cancel_between_chunks_in_the_engine_process_ends_interrupted(
    engine, videos, small_checkpoint, tmp_path
):
    out = tmp_path / "out"
    req = request([videos["shot"]], out, small_checkpoint, chunk_size=8, chunk_overlap=3)
    sent = []

    def cancel_after_first_chunk(event):
        if (
            isinstance(event, p.ProgressEvent)
            and event.stage == "network"
            and event.current == 1
            and not sent
        ):
            sent.append(engine.cancel(req.job))

    terminal, events = run_job(engine, req, on_event=cancel_after_first_chunk)
    assert sent == [True] and isinstance(terminal, p.InterruptedEvent), terminal
    assert not any(isinstance(e, p.ResultEvent) for e in events)
    assert not (out / "manifest.json").exists() and not (out / SHOT_CACHE).exists()
