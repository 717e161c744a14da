"""The command line: ``python -m engine reconstruct`` and ``info`` in a subprocess, plus its parsing."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine import cli
from engine.formats.bundle import is_complete, read_bundle
from tests.engine.media import make_test_image, make_test_images, write_test_video

ROOT = Path(__file__).resolve().parents[2]


def engine_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *map(str, args)]


def run_engine(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        engine_command(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def stills(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stills")
    for i in range(3):
        Image.fromarray(make_test_image(i, 96, 128)).save(folder / f"{i}.png")
    return folder


def test_reconstruct_writes_a_bundle_and_prints_one_summary_line(stills, small_checkpoint, tmp_path):
    out = tmp_path / "out"
    done = run_engine(
        "reconstruct", stills, "--out", out, "--model", small_checkpoint, "--process-res", 112,
        "--export", "npz,ply,colmap", "--device", "cpu", "--offline",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.strip()]  # stdout is the one summary line
    assert done.stdout.startswith("Done: 3 views at 112x84 px, units relative,")
    assert done.stdout.rstrip().endswith(f"-> {out}")
    assert "decode: 3/3" in done.stderr and "export: 3/3" in done.stderr  # progress on stderr
    b = read_bundle(out)
    assert b.num_views == 3 and "points.ply" in b.files and "colmap/sparse/0/cameras.bin" in b.files
    assert b.options["exports"] == ["points", "colmap"] and b.options["device"] == "cpu"


def test_reconstruct_a_video_frame_range(small_checkpoint, tmp_path):
    video = write_test_video(tmp_path / "clip.mkv", make_test_images(10, 96, 128), fps=25)
    out = tmp_path / "out"
    done = run_engine(
        "reconstruct", video, "--out", out, "--model", small_checkpoint, "--process-res", 112,
        "--frames", "1:10:1", "--chunk-size", "4", "--overlap", "2", "--export", "ply", "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    b = read_bundle(out)
    assert b.frame_indices.tolist() == list(range(1, 10)) and b.source_paths == (str(video),) * 9
    assert b.shot is not None and b.depth is None and "points.ply" in b.files  # a video is a shot
    assert b.shot["chunk_size"] == 4 and b.shot["overlap"] == 2 and len(b.shot["chunks"]) == 4
    assert b.shot["nominal_fps"] == 25 and b.shot["fps"] == 25
    refused = run_engine(
        "reconstruct", video, "--out", tmp_path / "d", "--model", small_checkpoint, "--export", "depth"
    )
    assert refused.returncode == 1 and "a video shot keeps no per-frame depth" in refused.stderr


def test_reconstruct_errors_exit_1_with_the_message_and_bad_options_exit_2(
    stills, small_checkpoint, tmp_path
):
    missing = run_engine(
        "reconstruct", tmp_path / "nope.jpg", "--out", tmp_path / "o", "--model", small_checkpoint
    )
    assert missing.returncode == 1
    assert "error: The input" in missing.stderr and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr and missing.stdout == ""
    assert not (tmp_path / "o").exists()

    detail = run_engine(
        "reconstruct", stills, "--out", tmp_path / "o", "--model", small_checkpoint, "--mesh-detail", "9"
    )
    assert detail.returncode == 2 and "mesh_detail" in detail.stderr

    frames = run_engine(
        "reconstruct", stills, "--out", tmp_path / "o", "--model", small_checkpoint, "--frames", "x"
    )
    assert frames.returncode == 2 and "START:END:STEP" in frames.stderr

    res = run_engine(
        "reconstruct", stills, "--out", tmp_path / "o", "--model", small_checkpoint, "--process-res", "5"
    )
    assert res.returncode == 2 and "process_res" in res.stderr


def test_ctrl_c_cancels_with_exit_130_and_leaves_no_finished_bundle(small_checkpoint, tmp_path):
    video = write_test_video(tmp_path / "long.mkv", make_test_images(24, 96, 128), fps=24)
    out = tmp_path / "out"
    args = [
        "reconstruct",
        video,
        "--out",
        out,
        "--model",
        small_checkpoint,
        "--process-res",
        112,
        "--export",
        "ply",
    ]
    proc = subprocess.Popen(
        engine_command(*args), cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stderr:
            if line.startswith("network:"):
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Cancelled" in stderr and stdout == ""
    assert not is_complete(out)


def test_info_lists_versions_device_and_cached_da3_models(tmp_path):
    hub = tmp_path / "hub"
    repo = hub / "models--depth-anything--DA3-SMALL"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_bytes(b"\0" * 1500)
    (repo / "snapshots" / "rev").mkdir(parents=True)
    os.symlink(repo / "blobs" / "abc123", repo / "snapshots" / "rev" / "model.safetensors")
    (hub / "models--someone--other-model" / "blobs").mkdir(parents=True)
    env = {**os.environ, "HF_HUB_CACHE": str(hub)}
    done = run_engine("info", env=env)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "DA3 Reconstruct engine" in text and "PyTorch: 2." in text and "Device:" in text
    assert f"Models in {hub}:" in text
    (line,) = [row for row in text.splitlines() if "depth-anything/DA3-SMALL" in row]
    assert line.split()[-2:] == ["1.5", "kB"]  # the blob counted once, not again through its link
    assert "someone/other-model" not in text

    empty = run_engine("info", "--cache-dir", tmp_path / "nothing")
    assert empty.returncode == 0 and "none (a job downloads its model" in empty.stdout


# --- parsing, in-process ------------------------------------------------------------------------------


def test_frame_ranges_and_export_names_parse_like_the_help_says():
    assert cli._frame_range("10:50:2") == (10, 50, 2)
    assert cli._frame_range("10:") == (10, None, 1)
    assert cli._frame_range(":100") == (0, 100, 1)
    assert cli._frame_range("::5") == (0, None, 5)
    with pytest.raises(argparse.ArgumentTypeError):
        cli._frame_range("1:2:3:4")
    assert cli._job_exports("npz,ply,gs,glb,colmap,depth") == (
        "points",
        "gaussians",
        "glb",
        "colmap",
        "depth",
    )
    assert cli._job_exports("npz") == () and cli._job_exports("PLY, ply") == ("points",)
    with pytest.raises(argparse.ArgumentTypeError, match="unknown export 'obj'"):
        cli._job_exports("obj")


def test_the_request_built_from_the_command_line_carries_every_option(tmp_path):
    args = cli._parser().parse_args(
        ["a.jpg", "folder", "--out", "o", "--model", "m", "--export", "gs,ply", "--fps", "12", "--ray-pose",
         "--ref-view", "first", "--seed", "7", "--dtype", "float16", "--metric", "--max-points", "1000"]
    )  # fmt: skip
    request = cli._request(args)
    o = request.options
    assert request.inputs == (os.path.abspath("a.jpg"), os.path.abspath("folder"))
    assert request.output == os.path.abspath("o") and request.model == "m"
    assert o.exports == ("gaussians", "points") and o.infer_gs  # gs turns on the Gaussian head
    assert (o.target_fps, o.use_ray_pose, o.ref_view_strategy, o.seed) == (12.0, True, "first", 7)
    assert (o.dtype, o.metric, o.max_points, o.process_res) == ("float16", True, 1000, 504)


def test_progress_without_a_terminal_prints_a_line_per_stage_and_at_its_end():
    stream = io.StringIO()
    bar = cli.ProgressBar(stream)
    for done in range(4):
        bar.update("decode", done, 3, f"frame {done}")
    bar.update("network", 0, 1)
    bar.print("warning: something")
    assert stream.getvalue().splitlines() == [
        "decode: 0/3 frame 0",
        "decode: 3/3 frame 3",
        "network: 0/1",
        "warning: something",
    ]


def test_the_summary_line_names_views_size_units_time_and_folder():
    summary = {"views": 20, "width": 504, "height": 378, "units": "metre", "is_metric": True,
               "scale_factor": 0.5, "seconds": 12.34, "output": "/out"}  # fmt: skip
    assert (
        cli.summary_line(summary) == "Done: 20 views at 504x378 px, units metre (scale 0.5), 12.3 s -> /out"
    )
    relative = {**summary, "units": "relative", "is_metric": False, "scale_factor": None}
    assert cli.summary_line(relative) == "Done: 20 views at 504x378 px, units relative, 12.3 s -> /out"
