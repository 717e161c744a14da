"""End-to-end job benchmark: a synthetic 20-frame video through the whole engine job, stage by stage.

Makes a video with our own code (a textured plate panning sideways, H.264), writes a random da3-small
checkpoint in the official layout, and runs ``jobs.run_reconstruct`` in this process at 504 px with
every export, exactly as ``python -m engine reconstruct`` would. Prints the seconds of each stage in
the order they run (decode; load; preprocess, which includes the per-frame resize done while decoding;
network; postprocess; export, with each file on its own) and memory:

* peak RSS: the most resident memory the process had, at any time up to the end of that stage
  (``resource.getrusage``; torch tensors and numpy arrays alike);
* with ``--tracemalloc``: the peak of numpy arrays and Python objects during the job (not torch's own
  allocator). Tracing slows the Python-heavy exports down about twice, so it is off by default.

    python benchmarks/end_to_end.py [--frames 20] [--size 1280x720] [--res 504] [--device cpu]
"""

from __future__ import annotations

import argparse
import io
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import jobs  # noqa: E402
from engine.cli import CliContext  # noqa: E402
from engine.model.random_weights import write_random_checkpoint  # noqa: E402
from engine.process.protocol import JobOptions, ReconstructRequest  # noqa: E402
from tests.engine.media import real_looking_image, write_test_video  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def make_video(path: Path, frames: int, width: int, height: int) -> Path:
    """A wide textured plate seen through a window that pans right by 1 % of the width per frame."""
    step = max(1, width // 100)
    plate = real_looking_image(height, width + step * frames, seed=3)
    images = [np.ascontiguousarray(plate[:, i * step : i * step + width]) for i in range(frames)]
    return write_test_video(path, images, fps=24, codec="libx264")


class BenchContext(CliContext):
    """The command line's job context, silent, noting the peak RSS at the end of every stage."""

    def __init__(self) -> None:
        super().__init__("bench", offline=True, stream=io.StringIO())
        self.rss_at_stage_end: dict[str, float] = {}
        self._stage: str | None = None

    def progress(self, stage: str, current: int, total: int, message: str = "") -> None:
        if self._stage is not None and stage != self._stage:
            self.rss_at_stage_end[self._stage] = peak_rss_mb()
        self._stage = stage
        super().progress(stage, current, total, message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", default="1280x720", help="video WIDTHxHEIGHT")
    parser.add_argument("--res", type=int, default=504, help="process_res")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace numpy/Python memory (slower)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        video = make_video(tmp / "plate.mp4", args.frames, width, height)
        checkpoint = write_random_checkpoint(tmp / "da3-small", "da3-small")
        setup_s = time.perf_counter() - t0
        request = ReconstructRequest(
            job="bench",
            inputs=(str(video),),
            output=str(tmp / "out"),
            model=str(checkpoint),
            options=JobOptions(
                process_res=args.res,
                device=args.device,
                exports=("points", "glb", "colmap"),  # a video is a shot: no per-frame depth previews
            ),
        )
        context = BenchContext()
        rss_before = peak_rss_mb()
        if args.tracemalloc:
            tracemalloc.start()
        summary = jobs.run_job(request, context)
        traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
        tracemalloc.stop()
        context.rss_at_stage_end[context._stage] = peak_rss_mb()

    import torch

    timings = summary["timings"]
    stages = [name for name in timings if "." not in name]  # sub-stages (export.points …) listed below
    total = sum(timings[name] for name in stages)
    cpu = platform.processor() or platform.machine()
    print(f"DA3 end-to-end job: {args.frames} frames of a {width}x{height} H.264 video, da3-small (random)")
    print(
        f"process_res {args.res} -> {summary['width']}x{summary['height']} px, device {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}"
    )
    print(f"(setup, not timed below: video + checkpoint written in {setup_s:.1f} s)\n")
    print(f"{'stage':<16} {'seconds':>8} {'share':>6} {'peak RSS MB':>12}")
    for stage in stages:
        rss = context.rss_at_stage_end.get(stage)
        rss_text = f"{rss:12.0f}" if rss is not None else f"{'':>12}"
        print(f"{stage:<16} {timings[stage]:8.2f} {timings[stage] / total:6.1%} {rss_text}")
        if stage == "export":
            for name in [k for k in timings if k.startswith("export.")]:
                print(f"  {name[len('export.') :]:<14} {timings[name]:8.2f} {timings[name] / total:6.1%}")
    print(f"{'total':<16} {total:8.2f}")
    print(f"\nwall time {summary['seconds']:.2f} s, {args.frames / summary['seconds']:.2f} frames/s")
    print(f"peak RSS {peak_rss_mb():.0f} MB (before the job: {rss_before:.0f} MB)")
    if traced_peak is not None:
        print(f"numpy/Python peak during the job (tracemalloc): {traced_peak / 1e6:.0f} MB")
    print(f"exports: {', '.join(sorted(summary['files']))}")


if __name__ == "__main__":
    main()
