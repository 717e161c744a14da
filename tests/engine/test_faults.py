"""Fault injection (issue 10): whatever goes wrong — a full disk at any stage, Ctrl-C or kill -9 at any
stage boundary, two jobs on one folder, a re-run over a finished bundle, a checkpoint of NaN weights —
the output folder holds exactly the old result or exactly the new one, never a mix or a half, and a later
read (what Blender's import does) works.

Still jobs run in-process (``jobs.run_job`` with the recording context of test_jobs); signals go to the
real command line (``python -m engine reconstruct``) in a child process, killed when its progress shows
the stage.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine import jobs
from engine.errors import UserError, explain
from engine.formats.bundle import is_complete, read_bundle
from engine.formats.bundle.publish import OutputFolder
from engine.io.safetensors_io import read_header, write_file
from tests.engine.media import make_test_images, write_test_video
from tests.engine.test_jobs import RecordingContext, request, save_images

ROOT = Path(__file__).resolve().parents[2]


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a result folder, by relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".da3-staging-" in p.name or ".da3-old-" in p.name)


@pytest.fixture
def finished(small_checkpoint, tmp_path):
    """A finished 2-view bundle in tmp/out (with points.ply) and its files, plus a 3-view input set."""
    save_images(tmp_path / "in2", [(96, 128)] * 2)
    save_images(tmp_path / "in3", [(96, 128)] * 3)
    jobs.run_job(
        request([tmp_path / "in2"], tmp_path / "out", small_checkpoint, exports=("points",)),
        RecordingContext(),
    )
    assert is_complete(tmp_path / "out")
    return tmp_path / "out", _snapshot(tmp_path / "out")


# --- a full disk ----------------------------------------------------------------------------------------


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/full/disk/file")


@pytest.mark.parametrize(
    "where",
    [
        "engine.jobs.exports.write_points_ply",  # an export
        "engine.jobs.exports.write_depth_preview",  # an export folder
        "engine.formats.bundle.writer._atomic_write",  # reconstruction.npz or the manifest
        "engine.formats.bundle.publish.OutputFolder.publish",  # the swap itself
    ],
)
def test_a_full_disk_at_any_stage_keeps_the_old_result_and_says_so(
    finished, small_checkpoint, tmp_path, where, monkeypatch
):
    out, before = finished
    monkeypatch.setattr(where, _disk_full)  # the module attribute, or the class's method
    req = request([tmp_path / "in3"], out, small_checkpoint, exports=("points", "depth"))
    with pytest.raises(OSError) as caught:
        jobs.run_job(req, RecordingContext())
    assert explain(caught.value).startswith("The disk is full")
    assert _snapshot(out) == before and read_bundle(out).num_views == 2
    assert _leftovers(tmp_path) == []


def test_the_message_for_a_full_disk_is_one_line_that_says_what_to_do():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/data/out/reconstruction.npz.partial")
        except OSError as exc:
            raise ValueError("seek of closed file") from exc
    except ValueError as buried:
        message = explain(buried)
    assert message == (
        "The disk is full (/data/out/reconstruction.npz.partial): free some space or choose an output folder "
        "on another disk."
    )
    assert explain(OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300)).startswith(
        "A file or folder name is too long"
    )


# --- re-runs, two jobs ----------------------------------------------------------------------------------


def test_a_rerun_replaces_the_result_whole_without_the_old_exports(finished, small_checkpoint, tmp_path):
    out, before = finished
    (out / "my_notes.txt").write_text("the user's own file")  # not ours: it must survive the re-run
    jobs.run_job(request([tmp_path / "in3"], out, small_checkpoint), RecordingContext())
    bundle = read_bundle(out)
    assert bundle.num_views == 3
    assert not (out / "points.ply").exists()  # the earlier run's export is not carried into the new result
    assert (out / "my_notes.txt").read_text() == "the user's own file"
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["name"] for f in manifest["files"]} == {"reconstruction.npz"}
    assert _leftovers(tmp_path) == []


def test_a_second_job_on_a_busy_folder_is_refused_at_once(finished, small_checkpoint, tmp_path):
    out, before = finished
    with OutputFolder(out, "other-job"):  # another job holds the folder
        started = time.perf_counter()
        with pytest.raises(UserError, match="Another job is writing .* right now"):
            jobs.run_job(request([tmp_path / "in3"], out, small_checkpoint), RecordingContext())
        assert time.perf_counter() - started < 2
    assert _snapshot(out) == before
    jobs.run_job(request([tmp_path / "in3"], out, small_checkpoint), RecordingContext())  # free again
    assert read_bundle(out).num_views == 3


def test_a_folder_of_other_files_is_refused_before_any_work(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 2)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not ours")
    context = RecordingContext()
    with pytest.raises(UserError, match="holds files that are not a finished result"):
        jobs.run_job(request([tmp_path / "in"], tmp_path / "photos", small_checkpoint), context)
    assert context.stages() == [] and (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"not ours"


def test_a_killed_jobs_leftovers_are_repaired_by_the_next_job(finished, small_checkpoint, tmp_path):
    """kill -9 between the two renames of a swap (systems without an atomic exchange): the result was
    moved aside and the new one not yet moved in. The next job puts the old one back, then runs."""
    out, before = finished
    os.replace(out, tmp_path / ".out.da3-old-deadjob")
    (tmp_path / ".out.da3-staging-deadjob").mkdir()
    (tmp_path / ".out.da3-staging-deadjob" / "reconstruction.npz.partial").write_bytes(b"half")
    (tmp_path / ".out.da3-staging-deadjob.cache").mkdir()
    with OutputFolder(out, "next"):
        assert _snapshot(out) == before
        assert _leftovers(tmp_path) == [".out.da3-staging-next"]
    assert _leftovers(tmp_path) == []


# --- bad numbers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nan_checkpoint(small_checkpoint, tmp_path_factory):
    """The small checkpoint with every weight NaN (config.json unchanged)."""
    from safetensors.numpy import load_file

    folder = tmp_path_factory.mktemp("nan") / "da3-small"
    folder.mkdir()
    (folder / "config.json").write_text((small_checkpoint / "config.json").read_text())
    state = {
        k: np.full_like(v, np.nan) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in load_file(small_checkpoint / "model.safetensors").items()
    }
    write_file(
        folder / "model.safetensors",
        state,
        metadata=read_header(small_checkpoint / "model.safetensors").metadata,
    )
    return folder


def test_nan_weights_fail_with_a_message_and_write_nothing(finished, nan_checkpoint, tmp_path):
    out, before = finished
    with pytest.raises(
        UserError, match=r"not finite \(NaN\) for 3 of 3 views \(img0.png, img1.png, img2.png\).*fp32"
    ):
        jobs.run_job(request([tmp_path / "in3"], out, nan_checkpoint), RecordingContext())
    assert _snapshot(out) == before and _leftovers(tmp_path) == []


def test_nan_weights_fail_a_shot_too(nan_checkpoint, tmp_path):
    video = write_test_video(tmp_path / "shot.mp4", make_test_images(8, 64, 96), fps=24)
    req = request([video], tmp_path / "shot_out", nan_checkpoint, chunk_size=4, chunk_overlap=2)
    assert req.kind == "shot"
    with pytest.raises(UserError, match="not finite"):
        jobs.run_job(req, RecordingContext())
    assert not (tmp_path / "shot_out").exists() and _leftovers(tmp_path) == []


# --- Ctrl-C and kill -9 at stage boundaries, through the command line -----------------------------------


def _cli(inputs: list[Path], out: Path, checkpoint: Path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "engine", "reconstruct", *map(str, inputs), "--out", str(out)]
    argv += ["--model", str(checkpoint), "--device", "cpu", "--process-res", "112", *extra]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_at(proc: subprocess.Popen, stage: str, sig: int) -> str:
    """Send ``sig`` when the progress shows ``stage``; returns everything the process wrote on stderr."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"{stage}:"):
            proc.send_signal(sig)
            break
    seen += proc.stderr.readlines()
    proc.wait(60)
    return "".join(seen)


@pytest.mark.parametrize("stage", ["decode", "load", "network", "export"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_signal_at_any_stage_leaves_the_old_result_whole(finished, small_checkpoint, tmp_path, stage, sig):
    out, before = finished
    proc = _cli([tmp_path / "in3"], out, small_checkpoint, "--export", "ply,depth")
    stderr = _signal_at(proc, stage, sig)
    assert f"{stage}:" in stderr, stderr
    snapshot = _snapshot(out)
    if snapshot != before:  # the swap happened before the signal landed: then it is the new result, whole
        assert read_bundle(out).num_views == 3 and stage == "export", stderr
    else:
        assert read_bundle(out).num_views == 2
    if sig == signal.SIGINT:
        assert proc.returncode != 0 or snapshot != before
        if snapshot == before:
            assert f"the earlier result in {out} is intact" in stderr, stderr
        assert "Traceback" not in stderr
    # the next run repairs whatever the killed one left, and finishes
    proc = _cli([tmp_path / "in3"], out, small_checkpoint)
    assert proc.wait(300) == 0, proc.stderr.read()
    assert read_bundle(out).num_views == 3 and _leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def shot_video(tmp_path_factory):
    """A 12-frame video: a shot for the command line (a single video is a shot)."""
    folder = tmp_path_factory.mktemp("shot")
    return write_test_video(folder / "shot.mp4", make_test_images(12, 64, 96), fps=24)


@pytest.mark.parametrize("stage", ["decode", "load", "network", "solve", "export"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_signal_at_any_stage_of_a_shot_leaves_the_old_result_whole(
    small_checkpoint, shot_video, tmp_path, stage, sig
):
    out = tmp_path / "shot_out"
    chunks = ("--chunk-size", "4", "--overlap", "2", "--export", "ply")
    first = _cli([shot_video], out, small_checkpoint, "--frames", "0:8:1", *chunks)
    assert first.wait(300) == 0, first.stderr.read()
    before = _snapshot(out)
    assert read_bundle(out).kind == "shot" and read_bundle(out).num_views == 8
    proc = _cli([shot_video], out, small_checkpoint, *chunks)  # the re-run: all 12 frames
    stderr = _signal_at(proc, stage, sig)
    assert f"{stage}:" in stderr, stderr
    snapshot = _snapshot(out)
    if snapshot != before:
        assert stage == "export" and read_bundle(out).num_views == 12, stderr
    else:
        assert read_bundle(out).num_views == 8
    if sig == signal.SIGINT:
        assert "Traceback" not in stderr
    proc = _cli([shot_video], out, small_checkpoint, *chunks)  # the next run repairs and finishes
    assert proc.wait(300) == 0, proc.stderr.read()
    assert read_bundle(out).num_views == 12 and _leftovers(tmp_path) == []


def test_ctrl_c_on_a_fresh_folder_says_nothing_was_written(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 2)
    proc = _cli([tmp_path / "in"], tmp_path / "fresh", small_checkpoint)
    stderr = _signal_at(proc, "network", signal.SIGINT)
    assert f"nothing was written to {tmp_path / 'fresh'}" in stderr, stderr
    assert not (tmp_path / "fresh").exists() and _leftovers(tmp_path) == []


# --- inputs lost or degraded -----------------------------------------------------------------------------


def test_a_view_cropped_away_by_mixed_shapes_is_named_with_what_to_do(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128), (96, 128), (40, 200)])
    context = RecordingContext()
    jobs.run_job(request([tmp_path / "in"], tmp_path / "out", small_checkpoint), context)
    warnings = [e[2] for e in context.events if e[0] == "log" and e[1] == "warning"]
    cropped = [w for w in warnings if "differ in shape" in w]
    assert len(cropped) == 1, warnings
    assert "img0.png" in cropped[0] and "img1.png" in cropped[0] and "img2.png" not in cropped[0]
    assert "split the set" in cropped[0]


def test_a_video_that_ends_early_says_which_frames_are_missing(small_checkpoint, tmp_path):
    video = write_test_video(tmp_path / "short.mkv", make_test_images(10, 64, 96), fps=24)
    context = RecordingContext()
    jobs.run_job(request([video, video], tmp_path / "out", small_checkpoint, frames=(0, 20, 5)), context)
    warnings = [e[2] for e in context.events if e[0] == "log" and e[1] == "warning"]
    assert any("ended early: requested frames 10, 15 could not be decoded" in w for w in warnings), warnings
    assert read_bundle(tmp_path / "out").num_views == 4  # frames 0 and 5 of each


def test_a_very_large_image_loads_and_a_bomb_says_the_limit(tmp_path, monkeypatch):
    from PIL import Image

    from engine.io import imaging

    big = tmp_path / "big.jpg"
    Image.new("RGB", (10_000, 9_600), (90, 120, 200)).save(big, quality=70)  # 96 MP: above Pillow's guard
    image = imaging.load_image(big)
    assert image.shape == (9_600, 10_000, 3)
    assert np.abs(image[5000, 5000].astype(int) - [90, 120, 200]).max() <= 2  # JPEG rounding
    del image
    monkeypatch.setattr(imaging, "pixel_limit", lambda: 1_000_000)
    with pytest.raises(imaging.ImageReadError, match="allows images up to 1 megapixels"):
        imaging.load_image(big)


# --- the model ------------------------------------------------------------------------------------------


def test_a_config_naming_another_model_says_which_model_the_weights_are(small_checkpoint, tmp_path):
    from engine.weights import CheckpointError, load_model

    folder = tmp_path / "mislabelled"
    folder.mkdir()
    (folder / "model.safetensors").symlink_to(small_checkpoint / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_name": "da3-base"}))
    with pytest.raises(CheckpointError) as caught:
        load_model(folder, device="cpu", dtype="float32")
    message = str(caught.value)
    assert "says the model is da3-base, but model.safetensors holds the weights of da3-small" in message
    assert len(message) < 400  # one line, not a dump of keys


def test_a_hub_id_without_network_is_refused_at_once(tmp_path):
    code = (
        "import time\n"
        "from engine.checkpoints import resolve_checkpoint\n"
        "t0 = time.perf_counter()\n"
        "try:\n"
        f"    resolve_checkpoint('depth-anything/DA3-SMALL', cache_dir={str(tmp_path)!r})\n"
        "except Exception as exc:\n"
        "    print(round(time.perf_counter() - t0, 2), exc)\n"
    )
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there: no connection
    env.pop("HF_HUB_OFFLINE", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds, _, message = out.stdout.partition(" ")
    assert float(seconds) < 5 and "is not in the local cache" in message, out.stdout + out.stderr


def test_a_bundle_with_a_nan_camera_is_refused_when_read(tmp_path):
    """What Blender's import reads: a NaN camera (a bundle from an older or foreign writer) is a message."""
    from engine.formats.bundle import BundleError, write_bundle

    n, h, w = 3, 8, 12
    rng = np.random.default_rng(0)
    extrinsics = np.tile(np.eye(4)[:3], (n, 1, 1)).astype(np.float32)
    intrinsics = np.tile(np.array([[10, 0, 6], [0, 10, 4], [0, 0, 1]], np.float32), (n, 1, 1))
    arrays = {
        "images": rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8),
        "depth": np.ones((n, h, w), np.float32),
        "extrinsics": extrinsics,
        "intrinsics": intrinsics,
        "source_paths": ["a.png", "b.png", "c.png"],
        "frame_indices": np.full(n, -1),
        "timestamps_s": np.full(n, np.nan),
        "original_sizes": np.tile([h, w], (n, 1)),
    }
    folder = write_bundle(tmp_path / "b", arrays, {"is_metric": False, "units": "relative", "model_id": "x"})
    assert read_bundle(folder).num_views == 3
    with np.load(folder / "reconstruction.npz") as npz:
        data = {k: npz[k] for k in npz.files}
    data["extrinsics"][1, 0, 3] = np.nan
    np.savez(folder / "reconstruction.npz", **data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][0]["size"] = (folder / "reconstruction.npz").stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"not finite \(NaN\) in extrinsics \(views 2\)"):
        read_bundle(folder)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda tmp: tmp / ("x" * 300), "name is too long"),
        (
            lambda tmp: Path("/proc/da3-cannot-write/out"),
            "Cannot write the output folder|not permitted|Permission",
        ),
    ],
    ids=["name-over-255-bytes", "unwritable"],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    small_checkpoint, tmp_path, output, message
):
    save_images(tmp_path / "in", [(96, 128)] * 2)
    context = RecordingContext()
    with pytest.raises(UserError, match=message):
        jobs.run_job(request([tmp_path / "in"], output(tmp_path), small_checkpoint), context)
    assert context.stages() == []  # refused before decoding, let alone the network


def test_keeping_the_chunk_cache_twice_into_one_folder_works(small_checkpoint, shot_video, tmp_path):
    out = tmp_path / "kept"
    for end in (8, 12):
        options = {"frames": (0, end, 1), "chunk_size": 4, "chunk_overlap": 2, "keep_chunk_cache": True}
        jobs.run_job(request([shot_video], out, small_checkpoint, **options), RecordingContext())
        assert (out / ".shot_cache").is_dir() and read_bundle(out).num_views == end
    assert _leftovers(tmp_path) == []
