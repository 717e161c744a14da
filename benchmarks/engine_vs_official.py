"""Our engine vs the official DA3 package: time and peak memory on the same weights and inputs.

    python benchmarks/engine_vs_official.py [--presets da3-small,da3-base,da3-large] [--views 1,4]
                                            [--device cpu|cuda] [--dtype fp32|bf16] [--repeats 3]

The official package (depth-anything-3==0.1.1) is installed by this script into its own
virtualenv (``~/.cache/da3-reconstruct/official-venv``, see ../shared/golden/README.md for why
each step is needed on a CPU-only machine). Weights are random but well-conditioned, generated
by our own code in the official hub layout; both sides load the same file. Every measurement
runs in a fresh process, so "peak" is the whole process's peak resident memory (weights
included) and, on CUDA, ``torch.cuda.max_memory_allocated``.

Two modes are timed for each side, both without autocast on CPU (the official forward
autocasts to float16 on a CPU, 3–5× slower; that would flatter us):
* network — the normalised (1, N, 3, H, W) tensor through the network;
* api — uint8 images in, final prediction out (our ``predict``; the official ``inference`` with
  its forward replaced by a direct call of the network, as the golden maker does).

``--precision`` prints the precision table instead (issue 13): per preset, view count and mode, our
engine in fp32 and at its default precision (bf16 on a CPU with native bf16), the official code at its
own default on this device (its forward as it is: fp16 autocast on a CPU) and in fp32, each with its
time (wall and process CPU seconds: the CPU seconds move less when other work shares the machine),
its speed against official fp32, its peak memory and the median relative depth difference to our
fp32 result.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_VENV = Path(
    os.environ.get("DA3_OFFICIAL_VENV", Path.home() / ".cache/da3-reconstruct/official-venv")
)
SHARED_GOLDEN = ROOT.parent / "shared" / "golden"
H, W = 378, 504  # 504×378 input: already multiples of 14, so no resampling differences
OFFICIAL_DEPS = [
    "numpy<2", "huggingface_hub", "pillow", "omegaconf", "addict", "einops", "opencv-python-headless==4.11.0.86",
    "plyfile", "matplotlib", "trimesh", "imageio", "tqdm", "safetensors",
]  # fmt: skip


def ensure_official_venv() -> Path:
    python = OFFICIAL_VENV / "bin" / "python"
    marker = OFFICIAL_VENV / ".complete"
    if marker.exists():
        return python
    print(f"installing the official package into {OFFICIAL_VENV} (once) …", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(OFFICIAL_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    cpu_only = shutil.which("nvidia-smi") is None
    subprocess.run(
        [*pip, "torch==2.13.0+cpu" if cpu_only else "torch==2.13.0"], check=True
    )  # +cpu: no CUDA libs
    subprocess.run([*pip, "--no-deps", "depth-anything-3==0.1.1"], check=True)
    subprocess.run([*pip, *OFFICIAL_DEPS], check=True)
    subprocess.run([*pip, "--no-deps", "torchvision==0.28.0"], check=True)
    marker.write_text("ok")
    return python


def make_checkpoint(preset: str, folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from engine.model.random_weights import write_random_checkpoint

    if not (folder / "model.safetensors").exists():
        write_random_checkpoint(folder, preset, seed=1)
    return folder


# --------------------------------------------------------------------------- one measurement (child)


def _images(n: int):
    import numpy as np

    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (H // 6 + 1, W // 6 + 1, 3), dtype=np.uint8)
    return [np.roll(np.kron(base, np.ones((6, 6, 1), np.uint8))[:H, :W], 9 * i, axis=1) for i in range(n)]


def _peak_mb(torch, device) -> dict:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


CPU_TIMES: list[float] = []  # the process CPU seconds of each timed run (less sensitive to other work)


def _time(fn, repeats: int, torch, device) -> float:
    fn()  # warm-up
    times = []
    CPU_TIMES.clear()
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        CPU_TIMES.append(time.process_time() - c)
    return sorted(times)[len(times) // 2]


def _cpu_seconds() -> float:
    return sorted(CPU_TIMES)[len(CPU_TIMES) // 2]


def run_ours(args) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from engine.pipeline import predict
    from engine.preprocess import normalize
    from engine.weights import load_model

    torch.set_num_threads(args.threads)
    model = load_model(
        args.checkpoint, device=args.device, dtype=None if args.dtype == "default" else args.dtype
    )
    images = _images(args.views)
    depth = []
    if args.mode == "network":
        x = torch.from_numpy(normalize(np.stack(images)))[None].to(args.device)

        def step():
            with torch.inference_mode():
                depth[:] = [model(x)["head_depth"][0].float().cpu().numpy()]
    else:

        def step():
            depth[:] = [predict(model, images, process_res=W).depth]

    seconds = _time(step, args.repeats, torch, args.device)
    _save_depth(args, depth[0])
    dtype = str(model.run_dtype).removeprefix("torch.")
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds(), "dtype": dtype, **_peak_mb(torch, args.device)}


def _save_depth(args, depth) -> None:
    if args.save:
        import numpy as np

        np.save(args.save, np.asarray(depth, np.float32))


def run_official(args) -> dict:
    sys.path.insert(0, str(SHARED_GOLDEN))
    import official_cpu_shims

    official_cpu_shims.install()
    import numpy as np
    import torch
    from depth_anything_3.api import DepthAnything3
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    api = DepthAnything3(
        model_name=json.loads((Path(args.checkpoint) / "config.json").read_text())["model_name"]
    )
    state = load_file(str(Path(args.checkpoint) / "model.safetensors"))
    for key in api.state_dict():  # the tied ray-head LayerNorm: stored once, used under four names
        if key not in state:
            state[key] = state[re.sub(r"output_conv2_aux\.\d\.2\.", "output_conv2_aux.0.2.", key)]
    api.load_state_dict(state, strict=True)
    del state
    api = api.to(args.device).eval()
    net = api.model
    if args.dtype == "default":  # the official forward as it is: its own autocast (fp16 on a CPU)
        official_forward = api.forward

        def forward(x, *rest):  # the network mode passes the image alone; the forward wants a layer list
            return official_forward(x, *rest) if rest else official_forward(x, None, None, [])
    else:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]

        def forward(*net_args):  # no CPU fp16 autocast; bf16 autocast on request (as official on CUDA)
            with (
                torch.inference_mode(),
                torch.autocast(args.device, dtype=dtype, enabled=dtype != torch.float32),
            ):
                return net(*net_args)

        api.forward = forward  # same positional arguments as the network's forward
    images = _images(args.views)
    depth = []
    if args.mode == "network":
        mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
        std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
        x = np.stack([(im.transpose(2, 0, 1) / np.float32(255) - mean) / std for im in images]).astype(
            np.float32
        )
        x = torch.from_numpy(x)[None].to(args.device)

        def step():
            with torch.inference_mode():
                out = forward(x)
            depth[:] = [out["depth"][0].float().cpu().numpy() if isinstance(out, dict) else None]
    else:

        def step():
            depth[:] = [api.inference(images, process_res=W).depth]

    seconds = _time(step, args.repeats, torch, args.device)
    if depth and depth[0] is not None:
        _save_depth(args, depth[0])
    return {"seconds": seconds, "cpu_seconds": _cpu_seconds(), **_peak_mb(torch, args.device)}


# --------------------------------------------------------------------------- driver (parent)


def measure(
    side: str, python: Path, checkpoint: Path, views: int, mode: str, args, dtype=None, save=None
) -> dict:
    cmd = [str(python), __file__, "--child", side, "--checkpoint", str(checkpoint), "--views", str(views),
           "--mode", mode, "--device", args.device, "--dtype", dtype or args.dtype, "--repeats", str(args.repeats),
           "--threads", str(args.threads)]  # fmt: skip
    if save:
        cmd += ["--save", str(save)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="da3-small,da3-base,da3-large")
    ap.add_argument("--views", default="1,4")
    ap.add_argument("--modes", default="network,api")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="fp32 (default on CPU) or bf16 (default on CUDA)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--checkpoints", default=str(Path(tempfile.gettempdir()) / "da3-bench-checkpoints"))
    ap.add_argument("--child", choices=["ours", "official"], help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    ap.add_argument(
        "--precision",
        action="store_true",
        help="the precision table instead: ours in fp32 and at its default precision, the official code at "
        "its default on this device and in fp32 (time, peak memory, ratios, depth difference to our fp32)",
    )
    args = ap.parse_args()
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    if args.child:
        args.views = int(args.views)
        print(json.dumps((run_ours if args.child == "ours" else run_official)(args)))
        return

    official = ensure_official_venv()
    if args.precision:
        precision_table(official, args)
        return
    print(
        f"device {args.device}, {args.dtype}, {args.threads} threads, input {W}×{H}, median of {args.repeats}"
    )
    header = f"{'preset':10} {'views':>5} {'mode':8} | {'ours s':>7} {'official s':>10} {'speed-up':>8} | "
    header += f"{'ours MB':>8} {'official MB':>11} {'mem ratio':>9}"
    print(header)
    print("-" * len(header))
    mem_key = "peak_cuda_mb" if args.device == "cuda" else "peak_rss_mb"
    for preset in args.presets.split(","):
        ckpt = make_checkpoint(preset, Path(args.checkpoints) / preset)
        for views in (int(v) for v in args.views.split(",")):
            for mode in args.modes.split(","):
                ours = measure("ours", Path(sys.executable), ckpt, views, mode, args)
                theirs = measure("official", official, ckpt, views, mode, args)
                print(
                    f"{preset:10} {views:>5} {mode:8} | {ours['seconds']:7.3f} {theirs['seconds']:10.3f} "
                    f"{theirs['seconds'] / ours['seconds']:7.2f}× | {ours[mem_key]:8.0f} {theirs[mem_key]:11.0f} "
                    f"{ours[mem_key] / theirs[mem_key]:8.2f}×",
                    flush=True,
                )


def _depth_difference(depth_path: Path, reference_path: Path) -> float | None:
    """Median relative depth difference to our fp32 result (None when the run saved no depth)."""
    import numpy as np

    if not depth_path.exists():
        return None
    depth, ref = np.load(depth_path), np.load(reference_path)
    return float(np.median(np.abs(depth - ref) / np.maximum(np.abs(ref), 1e-6)))


PRECISION_ROWS = (  # (label, side, --dtype of the child)
    ("ours, fp32", "ours", "fp32"),
    ("ours, default", "ours", "default"),
    ("official, default", "official", "default"),
    ("official, fp32", "official", "fp32"),
)


def precision_table(official: Path, args) -> None:
    """Per preset and view count: the four rows of PRECISION_ROWS, with speed against official fp32."""
    mem_key = "peak_cuda_mb" if args.device == "cuda" else "peak_rss_mb"
    print(
        f"device {args.device}, {args.threads} threads, input {W}×{H}, median of {args.repeats}, load {os.getloadavg()[0]:.1f}"
    )
    header = f"{'preset':10} {'views':>5} {'mode':8} {'run':18} | {'seconds':>8} {'CPU s':>7} {'vs official fp32':>16} | "
    header += f"{'peak MB':>8} {'mem ratio':>9} | {'depth diff':>10}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            ckpt = make_checkpoint(preset, Path(args.checkpoints) / preset)
            for views in (int(v) for v in args.views.split(",")):
                for mode in args.modes.split(","):
                    results = {}
                    for label, side, dtype in PRECISION_ROWS:
                        save = Path(tmp) / f"{preset}_{views}_{mode}_{side}_{dtype}.npy"
                        python = Path(sys.executable) if side == "ours" else official
                        results[label] = (measure(side, python, ckpt, views, mode, args, dtype, save), save)
                    base, _ = results["official, fp32"]
                    ref = results["ours, fp32"][1]
                    for label, (r, save) in results.items():
                        diff = _depth_difference(save, ref)
                        name = label + (f" ({r['dtype']})" if "dtype" in r and "default" in label else "")
                        print(
                            f"{preset:10} {views:>5} {mode:8} {name:18} | {r['seconds']:8.3f} "
                            f"{r['cpu_seconds']:7.2f} {base['seconds'] / r['seconds']:6.2f}× "
                            f"(CPU {base['cpu_seconds'] / r['cpu_seconds']:.2f}×) | {r[mem_key]:8.0f} "
                            f"{r[mem_key] / base[mem_key]:8.2f}× | "
                            + ("         –" if diff is None else f"{100 * diff:9.3f}%"),
                            flush=True,
                        )
                    print(f"{'':10} load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
