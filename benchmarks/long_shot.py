"""Long-shot benchmark: time and peak memory of a shot job for 100, 200 and 400 frames (issue 5).

Makes synthetic videos with our own code (a camera gliding over a textured plate: a pan with a slow
push-in, lossless), writes a random da3-small checkpoint in the official layout, and runs each length
as a shot job (``jobs.run_reconstruct``, the engine's own path) in a **fresh process**, so every
peak RSS (``resource.getrusage``) is that length's alone. CPU, low resolution, a fixed chunk size.
Prints per length: seconds, frames per second, peak RSS, the ratios to the first length, and the
seconds of each stage. Time should grow linearly with the frames and memory stay flat: the frames
spill to a cache file, chunks to the chunk store, and only small per-frame arrays stay in memory.

    python benchmarks/long_shot.py [--frames 100 200 400] [--res 168] [--chunk 16] [--overlap 4]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.engine.media import real_looking_image  # noqa: E402

VIDEO_WH = (320, 180)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def write_glide(path: Path, frames: int, width: int, height: int, fps: int = 24) -> Path:
    """A camera gliding over a textured plate: pans right 2 px a frame and pushes in slowly (lossless
    FFV1). Frames are made and encoded one at a time, so making a long video needs little memory."""
    import av

    from engine.io.imaging import resize_uint8

    plate = real_looking_image(2 * height, 2 * width + 2 * frames, seed=7)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
        for i in range(frames):
            zoom = 1.0 - 0.25 * i / max(frames - 1, 1)  # window shrinks to 75 %: a push-in
            w, h = int(2 * width * zoom), int(2 * height * zoom)
            x0, y0 = 2 * i + (2 * width - w) // 2, (2 * height - h) // 2
            crop = np.ascontiguousarray(plate[y0 : y0 + h, x0 : x0 + w])
            image = resize_uint8(crop, width, height)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def quiet_context():
    """The command line's job context, with its progress bar going nowhere."""
    from engine.cli import CliContext

    return CliContext("bench", offline=True, stream=io.StringIO())


def child(video: str, checkpoint: str, res: int, chunk: int, overlap: int) -> None:
    """Run one shot job in this (fresh) process and print one JSON line with its numbers."""
    from engine import jobs
    from engine.process.protocol import JobOptions, ReconstructRequest

    with tempfile.TemporaryDirectory() as out:
        options = JobOptions(process_res=res, device="cpu", chunk_size=chunk, chunk_overlap=overlap)
        request = ReconstructRequest(
            job="bench", inputs=(video,), output=out, model=checkpoint, options=options
        )
        t0 = time.perf_counter()
        summary = jobs.run_job(request, quiet_context())
        seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
                "views": summary["views"],
                "chunks": summary["chunks"],
                "size": f"{summary['width']}x{summary['height']}",
                "timings": summary["timings"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--res", type=int, default=168, help="process_res (140-196 keeps it quick)")
    parser.add_argument("--chunk", type=int, default=16, help="frames per chunk")
    parser.add_argument("--overlap", type=int, default=4, help="frames shared by consecutive chunks")
    parser.add_argument("--child", nargs=2, metavar=("VIDEO", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.res, args.chunk, args.overlap)
        return

    import torch

    from engine.model.random_weights import write_random_checkpoint

    print(
        f"Long shot: da3-small (random weights), {VIDEO_WH[0]}x{VIDEO_WH[1]} video, process_res {args.res}, "
        f"chunk {args.chunk}, overlap {args.overlap}, CPU ({torch.get_num_threads()} threads), "
        f"{platform.python_implementation()} {platform.python_version()}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = write_random_checkpoint(tmp / "da3-small", "da3-small", seed=0)
        rows = []
        for frames in args.frames:
            video = write_glide(tmp / f"glide_{frames}.mkv", frames, *VIDEO_WH)
            command = [sys.executable, __file__, "--child", str(video), str(checkpoint)]
            command += ["--res", str(args.res), "--chunk", str(args.chunk), "--overlap", str(args.overlap)]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"the {frames}-frame job failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            video.unlink()

    base = rows[0]
    print(f"\n{'frames':>6} {'chunks':>6} {'size':>8} {'seconds':>8} {'frames/s':>8} {'peak RSS MB':>11} "
          f"{'time ×':>7} {'RSS ×':>6}")  # fmt: skip
    for r in rows:
        print(
            f"{r['views']:>6} {r['chunks']:>6} {r['size']:>8} {r['seconds']:>8.1f} "
            f"{r['views'] / r['seconds']:>8.2f} {r['peak_rss_mb']:>11.0f} "
            f"{r['seconds'] / base['seconds']:>7.2f} {r['peak_rss_mb'] / base['peak_rss_mb']:>6.2f}"
        )
    stages = [name for name in rows[-1]["timings"] if "." not in name]
    print("\nseconds per stage: " + ", ".join(stages))
    for r in rows:
        print(f"{r['views']:>6}  " + "  ".join(f"{name} {r['timings'].get(name, 0):.1f}" for name in stages))


if __name__ == "__main__":
    main()
