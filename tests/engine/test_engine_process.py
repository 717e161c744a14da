"""The real engine process (``python -m engine serve``) driven through the Blender-side client.

Jobs run on a random da3-small checkpoint we generate, over synthetic stills and videos made by our own
code, at 112 px. Every job must end with exactly one terminal event, and its bundle must be complete
(finished) or not (interrupted, error). Exports are read back with third-party readers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import plyfile
import pycolmap
import pytest
import trimesh
from PIL import Image

from engine.formats.bundle import is_complete, read_bundle
from engine.process import protocol as p
from engine.process.client import EngineClient
from tests.engine.media import make_test_image, make_test_images, read_frame_number, write_test_video

ROOT = Path(__file__).resolve().parents[2]
RES = 112
H, W = 96, 128


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Stills, a short video (8 frames at 24 fps) and a longer one (24 frames) with frame-number barcodes."""
    root = tmp_path_factory.mktemp("media")
    (root / "stills").mkdir()
    for i in range(3):
        Image.fromarray(make_test_image(i, H, W)).save(root / "stills" / f"shot {i}.png")
    (root / "empty").mkdir()
    return {
        "stills": root / "stills",
        "empty": root / "empty",
        "video": write_test_video(root / "short.mkv", make_test_images(8, H, W), fps=24),
        "long": write_test_video(root / "long.mkv", make_test_images(24, H, W), fps=24),
    }


@pytest.fixture(scope="module")
def engine():
    """One engine process for the module's jobs (the model stays loaded between them)."""
    client = EngineClient(sys.executable, extension_root=ROOT, args=("--device", "cpu"))
    yield client
    client.stop(timeout=5.0)


def make_request(inputs, output: Path, model: Path, **options) -> p.ReconstructRequest:
    options.setdefault("process_res", RES)
    return p.ReconstructRequest(
        job=p.new_job_id(),
        inputs=tuple(str(i) for i in inputs),
        output=str(output),
        model=str(model),
        options=p.JobOptions(**options),
    )


def run_job(client: EngineClient, request: p.ReconstructRequest, on_event=None, timeout: float = 120.0):
    """Submit, read events until the job's terminal event, then prove no second one follows.

    ``on_event(event)`` sees every event as it arrives (to cancel or kill mid-job). Returns the terminal
    event and all events read.
    """
    job = client.submit(request)
    events: list[p.Event] = []
    deadline = time.monotonic() + timeout
    while not any(e.terminal_job == job for e in events):
        event = client.next_event(timeout=max(0.0, deadline - time.monotonic()))
        assert event is not None, f"job {job} did not end within {timeout} s; events: {events}"
        events.append(event)
        if on_event is not None:
            on_event(event)
    if client.request_status():  # a status round trip: anything the job still sent arrives before it
        while not isinstance(events[-1], p.StatusEvent):
            event = client.next_event(timeout=30.0)
            assert event is not None, "no status answer"
            events.append(event)
    terminals = [e for e in events if e.terminal_job == job]
    doubles = [e for e in events if isinstance(e, p.LogEvent) and "Ignored a second" in e.message]
    assert len(terminals) == 1 and not doubles, events
    return terminals[0], events


def progress(events, stage: str) -> list[p.ProgressEvent]:
    return [e for e in events if isinstance(e, p.ProgressEvent) and e.stage == stage]


# --- jobs that finish ---------------------------------------------------------------------------------


def test_a_stills_job_finishes_with_a_complete_bundle_and_exports_that_readers_accept(
    engine, media, small_checkpoint, tmp_path
):
    out = tmp_path / "bundle"
    exports = ("points", "glb", "colmap", "depth")
    terminal, events = run_job(
        engine, make_request([media["stills"]], out, small_checkpoint, exports=exports)
    )
    assert isinstance(terminal, p.FinishedEvent), terminal
    (result,) = [e for e in events if isinstance(e, p.ResultEvent)]
    assert set(result.files) == {"bundle", *exports} and terminal.summary["views"] == 3
    assert [e.current for e in progress(events, "decode")][1:] == [1, 2, 3]

    b = read_bundle(out)
    n, h, w = b.depth.shape
    assert (n, h, w) == (3, 84, 112) and b.images.shape == (3, 84, 112, 3) and b.conf.shape == (3, h, w)
    assert b.units == "relative" and b.frame_indices.tolist() == [-1, -1, -1]
    assert b.source_paths == tuple(str(media["stills"] / f"shot {i}.png") for i in range(3))
    assert b.original_sizes.tolist() == [[H, W]] * 3

    # points.ply: every point sits on its view's depth map, with that pixel's colour and confidence
    vertex = plyfile.PlyData.read(str(out / "points.ply"))["vertex"]
    names = [prop.name for prop in vertex.properties]
    assert names == ["x", "y", "z", "red", "green", "blue", "confidence", "view"]
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], 1).astype(np.float64)
    view = np.asarray(vertex["view"])
    cam = np.einsum("mij,mj->mi", b.extrinsics[view, :, :3], xyz) + b.extrinsics[view, :, 3]
    uv = np.einsum("mij,mj->mi", b.intrinsics[view], cam)
    u, v = (np.floor(uv[:, :2] / uv[:, 2:3]).astype(int)).T
    np.testing.assert_allclose(cam[:, 2], b.depth[view, v, u], rtol=1e-4)
    rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], 1)
    np.testing.assert_array_equal(rgb, b.images[view, v, u])
    np.testing.assert_allclose(vertex["confidence"], b.conf[view, v, u])
    assert 0.55 * n * h * w <= len(xyz) <= 0.65 * n * h * w  # the 40th confidence percentile is dropped

    # scene.glb: the same points (glTF axes: y and z flipped) and one frustum per view
    scene = trimesh.load(out / "scene.glb")
    points = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    assert len(points) == 1 and len(points[0].vertices) == len(xyz)
    np.testing.assert_allclose(points[0].vertices, xyz * [1, -1, -1], atol=1e-4)
    paths = [g for g in scene.geometry.values() if isinstance(g, trimesh.path.Path3D)]
    assert len(paths) == 1 and len(paths[0].vertices) == 8 * 2 * n  # 8 segments per camera

    # colmap: PINHOLE cameras at the original size, the bundle's poses, copied stills, points that project
    rec = pycolmap.Reconstruction(str(out / "colmap" / "sparse" / "0"))
    images = sorted(rec.images.values(), key=lambda im: im.name)
    assert [im.name for im in images] == [f"shot_{i}.png" for i in range(3)]
    for i, im in enumerate(images):
        camera = rec.cameras[im.camera_id]
        assert (camera.width, camera.height) == (W, H)
        k = b.intrinsics_original[i]
        np.testing.assert_allclose(camera.params, [k[0, 0], k[1, 1], k[0, 2], k[1, 2]], rtol=1e-6)
        np.testing.assert_allclose(im.cam_from_world().matrix(), b.extrinsics[i], atol=1e-5)
        copied = out / "colmap" / "images" / im.name
        assert not copied.is_symlink()
        assert copied.read_bytes() == (media["stills"] / f"shot {i}.png").read_bytes()
    assert 0 < len(rec.points3D) <= len(xyz)
    for point in list(rec.points3D.values())[::97]:
        (element,) = point.track.elements
        image = rec.images[element.image_id]
        np.testing.assert_allclose(
            image.project_point(point.xyz), image.points2D[element.point2D_idx].xy, atol=1e-3
        )

    # previews: one depth and one confidence PNG per view, at the processed size
    for i in range(n):
        for kind in ("depth", "conf"):
            assert Image.open(out / "previews" / f"{kind}_{i:04d}.png").size == (w, h)
    # the bundle lists its copied images: it stays complete when moved with them
    assert sorted(name for name in b.files if name.startswith("colmap/images/")) == [
        f"colmap/images/{im.name}" for im in images
    ]


def test_a_video_job_keeps_frame_numbers_and_writes_the_right_frames_for_colmap(
    engine, media, small_checkpoint, tmp_path
):
    out = tmp_path / "bundle"
    request = make_request([media["video"]], out, small_checkpoint, frames=(1, 7, 2), exports=("colmap",))
    terminal, events = run_job(engine, request)
    assert isinstance(terminal, p.FinishedEvent), terminal
    b = read_bundle(out)
    assert b.frame_indices.tolist() == [1, 3, 5]
    np.testing.assert_allclose(b.timestamps_s, np.array([1, 3, 5]) / 24, atol=1e-3)  # Matroska: 1 ms
    assert b.source_paths == (str(media["video"]),) * 3 and b.original_sizes.tolist() == [[H, W]] * 3
    written = sorted((out / "colmap" / "images").iterdir())
    assert [f.name for f in written] == ["short_000001.jpg", "short_000003.jpg", "short_000005.jpg"]
    for f, frame in zip(written, (1, 3, 5), strict=True):
        image = np.asarray(Image.open(f))
        assert image.shape == (H, W, 3) and read_frame_number(image) == frame
        assert f"colmap/images/{f.name}" in b.files


# --- cancel and crash ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["decode", "network"])
def test_cancel_mid_job_ends_interrupted_without_a_complete_bundle(
    engine, media, small_checkpoint, tmp_path, stage
):
    out = tmp_path / "bundle"
    request = make_request([media["long"]], out, small_checkpoint, exports=("points",))
    sent = []

    def cancel_once(event):
        if isinstance(event, p.ProgressEvent) and event.stage == stage and not sent:
            sent.append(engine.cancel(request.job))

    terminal, events = run_job(engine, request, on_event=cancel_once)
    assert sent == [True]
    assert isinstance(terminal, p.InterruptedEvent), terminal
    assert not is_complete(out) and not (out / "manifest.json").exists()
    assert not any(isinstance(e, p.ResultEvent) for e in events)


def test_a_killed_engine_becomes_an_error_with_its_exit_code_and_the_next_job_works(
    media, small_checkpoint, tmp_path
):
    client = EngineClient(sys.executable, extension_root=ROOT, args=("--device", "cpu"))
    try:
        killed = []

        def kill_once(event):
            if isinstance(event, p.ProgressEvent) and event.stage == "decode" and not killed:
                killed.append(client.pid)
                os.kill(client.pid, signal.SIGKILL)

        request = make_request([media["long"]], tmp_path / "a", small_checkpoint)
        terminal, _ = run_job(client, request, on_event=kill_once)
        assert isinstance(terminal, p.ErrorEvent) and terminal.exit_code == -signal.SIGKILL
        assert "stopped unexpectedly" in terminal.message and not is_complete(tmp_path / "a")

        terminal, _ = run_job(client, make_request([media["stills"]], tmp_path / "b", small_checkpoint))
        assert isinstance(terminal, p.FinishedEvent) and client.pid != killed[0]
        assert is_complete(tmp_path / "b")
    finally:
        client.stop(timeout=5.0)


# --- bad input ----------------------------------------------------------------------------------------


def _bad_jobs(media: dict[str, Path], tmp: Path) -> dict[str, tuple[dict, str]]:
    """name → (request fields, expected message); files are made here."""
    broken = tmp / "broken"
    broken.mkdir()
    Image.fromarray(make_test_image(0, H, W)).save(broken / "a.png")
    (broken / "b.png").write_bytes(b"\x89PNG not really")
    pickle_model = tmp / "pickle-model"
    pickle_model.mkdir()
    (pickle_model / "config.json").write_text(json.dumps({"model_name": "da3-small"}))
    (pickle_model / "model.pt").write_bytes(b"\x80\x04")
    (tmp / "cams.json").write_text(json.dumps({"intrinsics": [[1, 0, 0], [0, 1, 0]]}))
    stills = [media["stills"]]
    return {
        "no such path": ({"inputs": [tmp / "nope.jpg"]}, "does not exist. Check the path"),
        "empty folder": ({"inputs": [media["empty"]]}, "contains no images"),
        "unreadable image": (
            {"inputs": [broken], "skip_unreadable": False},
            "Cannot read image 'b.png'.*turn on skipping unreadable",
        ),
        "zero frames": ({"inputs": stills, "frames": (10, 20, 1)}, "selects none of the 3 images"),
        "zero video frames": (
            {"inputs": [media["video"]], "frames": (50, None, 1)},
            "No frames selected from",
        ),
        "missing model": ({"model": tmp / "no-model"}, "neither an existing folder nor a hub id"),
        "pickle checkpoint": ({"model": pickle_model}, "pickle checkpoint.*safetensors"),
        "bad cameras": ({"cameras": str(tmp / "cams.json")}, r"cameras file .*not \(N, 3, 3\)"),
        "gaussians on a small model": ({"infer_gs": True, "exports": ("gaussians",)}, "need a giant model"),
    }


def test_every_bad_input_ends_with_an_error_that_says_what_is_wrong(
    engine, media, small_checkpoint, tmp_path
):
    for name, (fields, message) in _bad_jobs(media, tmp_path).items():
        inputs = fields.pop("inputs", [media["stills"]])
        model = fields.pop("model", small_checkpoint)
        out = tmp_path / "out" / name.replace(" ", "-")
        terminal, _ = run_job(engine, make_request(inputs, out, model, **fields))
        assert isinstance(terminal, p.ErrorEvent), (name, terminal)
        assert terminal.job is not None and re.search(message, terminal.message), (name, terminal)
        assert not is_complete(out), name


def test_unreadable_images_are_skipped_with_a_warning_by_default(engine, media, small_checkpoint, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(make_test_image(i, H, W)).save(folder / f"{i}.png")
    (folder / "9-broken.jpg").write_bytes(b"not a jpeg")
    request = make_request([folder], tmp_path / "out", small_checkpoint)  # skipping is the default
    terminal, events = run_job(engine, request)
    assert isinstance(terminal, p.FinishedEvent), terminal
    warnings = [e.message for e in events if isinstance(e, p.LogEvent) and e.level == "warning"]
    assert any("9-broken.jpg" in message for message in warnings), warnings
    assert read_bundle(tmp_path / "out").num_views == 2
