"""The real sample shot, tracked as a user would, before and after issue 13: seconds, peak memory, frames
per second and how far the two joined trajectories agree.

Runs ``python -m engine reconstruct <video> --process-res 504`` (da3-small, random weights unless
``--model`` names a checkpoint folder) in a fresh process per case, on the CPU:

* ``after``: the default options (chunks from the cost model, the default precision; the chunk cost is
  measured in this run, in an empty cache folder, so its few seconds are included);
* ``before``: what the defaults were before issue 13 (chunks of 120 frames overlapping by 60, the
  memory's choice on this machine, in fp32). It takes about 15 minutes on a quiet 2-core CPU, so it only
  runs when asked (``--cases after before``).

Peak memory is the child's peak resident set (``os.wait4``), CPU seconds its user + system time. Each
row records the load average before and after it, since a shared machine makes every number slower
(wall time most: compare CPU seconds between runs made under different loads). Trajectory agreement: camera centres of
``after`` Sim(3)-aligned onto ``before`` (Umeyama), RMS as a share of the path length, and the median
rotation difference after the alignment.

    python benchmarks/sample_shot.py [--cases after before] [--video PATH] [--model FOLDER] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT.parent / "shared" / "samples" / "robot_unitree.mp4"
CASES = {
    "after": [],
    "before": ["--chunk-size", "120", "--overlap", "60", "--dtype", "fp32"],
}


def load() -> float:
    return os.getloadavg()[0]


def run_case(name: str, video: Path, model: Path, out: Path, res: int, cache: Path) -> dict:
    """One CLI run in its own process: seconds, peak RSS, the log lines about chunks and precision."""
    command = [sys.executable, "-m", "engine", "reconstruct", str(video), "--out", str(out)]
    command += ["--model", str(model), "--process-res", str(res), "--device", "cpu", *CASES[name]]
    env = {**os.environ, "DA3_CACHE_DIR": str(cache)}
    before = load()
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        err.seek(0)
        log = err.read()
    if proc.returncode != 0:
        sys.exit(f"{name} failed ({proc.returncode}):\n{log[-3000:]}")
    peak_mb = usage.ru_maxrss / 1e6 if sys.platform == "darwin" else usage.ru_maxrss / 1e3
    lines = [line.strip() for line in log.replace("\r", "\n").splitlines()]
    notes = [
        line for line in lines if line.startswith(("Chunks of", "Loading model", "Measured", "First chunk"))
    ]
    from engine.formats.bundle import read_bundle

    b = read_bundle(out)
    return {
        "case": name,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(
            usage.ru_utime + usage.ru_stime, 1
        ),  # less sensitive to other work than wall time
        "peak_rss_mb": round(peak_mb),
        "frames": int(b.num_views),
        "fps": round(b.num_views / seconds, 3),
        "chunk": b.shot["chunk_size"],
        "overlap": b.shot["overlap"],
        "chunks": len(b.shot["chunks"]),
        "load_before": round(before, 2),
        "load_after": round(load(), 2),
        "notes": notes,
    }


def trajectory_agreement(a: Path, b: Path) -> dict:
    """Centres of ``a`` Sim(3)-aligned onto ``b``: RMS / path length, and the rotation difference."""
    from engine.formats.bundle import read_bundle
    from engine.geometry.cameras import camera_centers
    from engine.geometry.sim3 import align_centers
    from engine.geometry.trajectory import path_length

    wa, wb = read_bundle(a).extrinsics.astype(np.float64), read_bundle(b).extrinsics.astype(np.float64)
    ca, cb = camera_centers(wa), camera_centers(wb)
    sim = align_centers(ca, cb)
    aligned = sim.apply(ca)
    rms = float(np.sqrt(np.mean(np.sum((aligned - cb) ** 2, axis=1))))
    # rotation of camera i in b's world: R_a,i · R_simᵀ (world-to-camera); compare with R_b,i
    ra = wa[:, :, :3] @ sim.R.T
    cos = (np.einsum("nij,nij->n", ra, wb[:, :, :3]) - 1) / 2
    angles = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    return {
        "rms_over_path": round(rms / max(path_length(cb), 1e-12), 4),
        "median_rotation_deg": round(float(np.median(angles)), 3),
        "max_rotation_deg": round(float(np.max(angles)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=["after"])
    parser.add_argument("--video", type=Path, default=SAMPLE)
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: random da3-small, seed 0)")
    parser.add_argument("--res", type=int, default=504)
    parser.add_argument("--keep", type=Path, help="keep the bundles here (and reuse one a case already has)")
    args = parser.parse_args()
    if not args.video.exists():
        sys.exit(f"no sample video at {args.video}")

    import torch

    from engine.model.random_weights import write_random_checkpoint

    print(
        f"Sample shot {args.video.name}, process_res {args.res}, CPU ({torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores), {platform.python_implementation()} {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or write_random_checkpoint(tmp / "da3-small", "da3-small", seed=0)
        keep = args.keep or tmp
        rows = []
        for name in args.cases:
            out = keep / name
            row = run_case(name, args.video, model, out, args.res, tmp / f"cache_{name}")
            (keep / f"{name}.json").write_text(json.dumps(row, indent=1))
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.keep:  # rows of earlier runs kept beside the bundles
            for name in CASES:
                if name not in args.cases and (keep / f"{name}.json").exists():
                    rows.append(json.loads((keep / f"{name}.json").read_text()))
        print(f"\n{'case':>7} {'seconds':>8} {'CPU s':>7} {'frames/s':>8} {'peak RSS MB':>11} {'chunk':>5} {'overlap':>7} "
              f"{'chunks':>6} {'load':>10}")  # fmt: skip
        for r in rows:
            print(
                f"{r['case']:>7} {r['seconds']:>8.1f} {r.get('cpu_seconds', float('nan')):>7.0f} {r['fps']:>8.3f} {r['peak_rss_mb']:>11} {r['chunk']:>5} "
                f"{r['overlap']:>7} {r['chunks']:>6} {r['load_before']:>4.1f}-{r['load_after']:<4.1f}"
            )
        names = {r["case"] for r in rows}
        if {"after", "before"} <= names:
            by = {r["case"]: r for r in rows}
            print(f"\nspeed-up: {by['before']['seconds'] / by['after']['seconds']:.2f}x")
            if (keep / "after").exists() and (keep / "before").exists():
                print(
                    "trajectory agreement (after onto before):",
                    trajectory_agreement(keep / "after", keep / "before"),
                )


if __name__ == "__main__":
    main()
