"""``python -m engine reconstruct|info``: the batch command line over the engine's job runner.

``reconstruct`` runs one job in this process (``jobs.run_job``, the code the engine process
runs for Blender) and writes the same bundle, so a render farm or a GPU box can produce results that
Blender imports later. Progress goes to stderr as a bar (one line per stage when stderr is not a
terminal); the summary line goes to stdout. Ctrl-C cancels at the next frame or stage boundary (a
second Ctrl-C stops at once). Exit codes: 0 done, 1 failed, 2 bad command line, 130 cancelled.

``info`` prints the engine version, Python, torch, CUDA, the default device and the DA3 models in the
Hugging Face cache with their sizes.

``render-splats`` renders a 3DGS PLY from cameras given as JSON (a list of ``{"name", "viewmat"`` (4×4
world → camera, OpenCV axes), ``"K"`` (3×3 pixels), ``"width", "height"}``) the way gsplat renders it
(``render.splats``), writing ``<name>.npy`` (float32 H×W×3, the sRGB-space colours 3DGS composites) and
``<name>.png`` per camera: a preview of splats, and the reference the Blender tests compare against.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import traceback
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from .errors import JobCancelled, UserError, explain
from .jobs.context import ModelCache, ModelContext, probe_device
from .process.protocol import (
    DTYPES,
    EXPORTS,
    PATCH_SIZE,
    PROCESS_RES_METHODS,
    PROCESS_RES_RANGE,
    REF_VIEW_STRATEGIES,
    JobOptions,
    ProtocolError,
    ReconstructRequest,
    new_job_id,
)
from .version import ENGINE_VERSION, PROTOCOL_VERSION

# Command-line export names → job export names (None: the bundle itself, always written).
CLI_EXPORTS = {
    "npz": None,
    "ply": "points",
    "gs": "gaussians",
    "glb": "glb",
    "mesh": "mesh",
    "colmap": "colmap",
    "3dgs": "3dgs",
    "nerfstudio": "nerfstudio",
    "depth": "depth",
    "splats": "splat_previews",
}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def main(argv: list[str]) -> int:
    """Entry from ``engine.__main__``: ``argv`` starts with the sub-command (``reconstruct`` or ``info``)."""
    command, rest = argv[0], list(argv[1:])
    if command == "info":
        return info(rest)
    if command == "render-splats":
        return render_splats(rest)
    return reconstruct(rest)


# --- reconstruct --------------------------------------------------------------------------------------


def _frame_range(text: str) -> tuple[int, int | None, int]:
    """``START:END:STEP`` (END exclusive; each part optional: ``10:``, ``:200``, ``::2``) → a tuple."""
    parts = text.split(":")
    if len(parts) > 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:END:STEP")
    parts += [""] * (3 - len(parts))
    try:
        start, end, step = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:END:STEP with whole numbers") from None
    return (start or 0, end, 1 if step is None else step)


def _job_exports(text: str) -> tuple[str, ...]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    out = []
    for name in names:
        if name not in CLI_EXPORTS and name not in EXPORTS:
            known = ", ".join(CLI_EXPORTS)
            raise argparse.ArgumentTypeError(f"unknown export {name!r}; choose from {known}")
        job_name = CLI_EXPORTS.get(name, name)
        if job_name is not None and job_name not in out:
            out.append(job_name)
    return tuple(out)


_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def _dtype(text: str) -> str:
    """--dtype: one of the protocol's DTYPES, or its short name (fp32, bf16, fp16)."""
    name = _DTYPE_ALIASES.get(text.lower(), text.lower())
    if name not in DTYPES:
        raise argparse.ArgumentTypeError(f"must be auto, fp32, bf16 or fp16 (or {', '.join(DTYPES[1:])})")
    return name


def _parser() -> argparse.ArgumentParser:
    d = JobOptions()
    p = argparse.ArgumentParser(
        prog="python -m engine reconstruct",
        description="Reconstruct images or a video into a DA3 result bundle (the folder Blender imports).",
    )
    add = p.add_argument
    add("inputs", nargs="+", metavar="INPUT", help="image files, folders of images, or video files")
    add("--out", required=True, metavar="DIR", help="folder the bundle is written into (created if missing)")
    add(
        "--model",
        required=True,
        metavar="ID_OR_FOLDER",
        help="hub id (depth-anything/DA3-LARGE-1.1) or folder",
    )
    low, high = PROCESS_RES_RANGE
    add(
        "--process-res",
        type=int,
        default=d.process_res,
        metavar="N",
        help=f"network resolution in pixels ({low}-{high}; sides are rounded to multiples of {PATCH_SIZE})",
    )
    add("--process-res-method", choices=PROCESS_RES_METHODS, default=d.process_res_method)
    add(
        "--export",
        type=_job_exports,
        default=(),
        metavar="LIST",
        help="comma-separated extras beside reconstruction.npz: ply (points), glb, gs (3D Gaussians, "
        "giant models), splats (the Gaussians rendered from each view; needs gsplat), mesh (one fused mesh), "
        "colmap, 3dgs (a dataset for 3DGS/SuGaR/gsplat), nerfstudio (a dataset for splatfacto/DN-Splatter), "
        "depth (PNG previews); npz is always written",
    )
    add("--frames", type=_frame_range, metavar="START:END:STEP", help="frame range (END exclusive)")
    add("--fps", type=float, metavar="F", help="take video frames at this rate instead of every frame")
    add(
        "--chunk-size",
        type=int,
        metavar="N",
        help="frames per network pass for a shot (a video, or any input with this set); default: the fastest "
        "chunking for this device within its memory (measured once; the log says which and how long)",
    )
    add(
        "--overlap",
        "--chunk-overlap",
        type=int,
        metavar="N",
        help="frames shared by consecutive chunks (default: at least 8 with automatic chunks, else half a chunk)",
    )
    add("--device", default=d.device, help="auto, cpu, cuda, cuda:N or mps")
    add(
        "--dtype",
        type=_dtype,
        default=d.dtype,
        metavar="{auto,fp32,bf16,fp16}",
        help="precision (default auto: bf16 on CPUs and GPUs that compute it natively, else fp32 or fp16; "
        "the log says which and why); fp32 forces full precision",
    )
    add("--ref-view", choices=REF_VIEW_STRATEGIES, default=d.ref_view_strategy, help="world-frame view")
    add("--ray-pose", action="store_true", help="cameras from the ray head (slower, more precise)")
    add("--cameras", metavar="FILE", help=".npz/.json with known 'extrinsics' (w2c) and 'intrinsics'")
    add("--metric", action="store_true", help="scale a relative model's result to metres")
    add("--metric-model", default=d.metric_model, metavar="ID_OR_FOLDER", help="model used by --metric")
    add("--seed", type=int, default=d.seed, metavar="N")
    add("--max-points", type=int, metavar="N", help="point budget of the exported point cloud")
    add(
        "--conf-percentile",
        type=float,
        default=d.conf_percentile,
        metavar="P",
        help="drop the least sure P%%",
    )
    add(
        "--skip-unreadable",
        action=argparse.BooleanOptionalAction,
        default=d.skip_unreadable,
        help="skip images that cannot be read, with a warning (default), or fail",
    )
    add(
        "--mesh-voxel-size",
        type=float,
        metavar="S",
        help="voxel edge of the fused mesh in scene units (default: from the scene's depth and resolution)",
    )
    add(
        "--mesh-detail",
        type=float,
        default=d.mesh_detail,
        metavar="X",
        help="with the automatic voxel size: 2 halves the voxel edge (finer, slower), 0.5 doubles it",
    )
    add("--mesh-max-faces", type=int, metavar="N", help="decimate the fused mesh to about N faces")
    add(
        "--dataset-points",
        type=int,
        default=d.dataset_max_points,
        metavar="N",
        help=f"seed points of the 3dgs and nerfstudio datasets (default {d.dataset_max_points:,})",
    )
    add("--offline", action="store_true", help="never download: use the cache or a local folder only")
    return p


def _request(args: argparse.Namespace) -> ReconstructRequest:
    options = JobOptions(
        process_res=args.process_res,
        process_res_method=args.process_res_method,
        ref_view_strategy=args.ref_view,
        use_ray_pose=args.ray_pose,
        infer_gs=bool({"gaussians", "splat_previews"} & set(args.export)),
        metric=args.metric,
        metric_model=args.metric_model,
        frames=args.frames,
        target_fps=args.fps,
        device=args.device,
        dtype=args.dtype,
        exports=args.export,
        skip_unreadable=args.skip_unreadable,
        max_points=args.max_points,
        conf_percentile=args.conf_percentile,
        cameras=args.cameras,
        seed=args.seed,
        chunk_size=args.chunk_size,
        chunk_overlap=args.overlap,
        mesh_voxel_size=args.mesh_voxel_size,
        mesh_detail=args.mesh_detail,
        mesh_max_faces=args.mesh_max_faces,
        dataset_max_points=args.dataset_points,
    )
    inputs = tuple(os.path.abspath(path) for path in args.inputs)
    return ReconstructRequest(
        job=new_job_id(), inputs=inputs, output=os.path.abspath(args.out), model=args.model, options=options
    )


class ProgressBar:
    """Progress on a text stream: a redrawn bar on a terminal, else one line per stage and at its end."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._stage: str | None = None
        self._drawn = False

    def update(self, stage: str, current: int, total: int, message: str = "") -> None:
        if self.tty:
            filled = self.WIDTH * min(current, total) // total if total else 0
            bar = "#" * filled + "." * (self.WIDTH - filled)
            count = f"{current}/{total}" if total else ""
            self.stream.write(f"\r{stage:<11} [{bar}] {count} {message}"[:120] + "\x1b[K")
            self._drawn = True
        elif stage != self._stage or (total and current >= total):
            self.stream.write(f"{stage}: {current}/{total} {message}".rstrip() + "\n")
        self._stage = stage
        self.stream.flush()

    def print(self, text: str) -> None:
        """A line of its own, above the bar."""
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False


class CliContext(ModelContext):
    """The job context of the command line: models loaded in this process, progress on stderr."""

    def __init__(self, job: str, *, offline: bool = False, stream: TextIO | None = None) -> None:
        from .weights import load_model

        super().__init__(job, ModelCache(partial(load_model, allow_download=not offline)))
        self.bar = ProgressBar(stream or sys.stderr)
        self.files: dict[str, str] = {}

    def default_device(self) -> str:
        return probe_device("auto").device

    def progress(self, stage: str, current: int, total: int, message: str = "") -> None:
        self.bar.update(stage, current, total, message)

    def log(self, level: str, message: str) -> None:
        if level != "debug":
            self.bar.print(message if level == "info" else f"{level}: {message}")

    def result(self, files: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> None:
        self.files = {name: os.fspath(path) for name, path in files.items()}


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line: views, processed size, units, time and the output folder."""
    scale = summary.get("scale_factor")
    units = summary["units"] + (f" (scale {scale:.4g})" if summary.get("is_metric") and scale else "")
    return (
        f"Done: {summary['views']} views at {summary['width']}x{summary['height']} px, units {units}, "
        f"{summary['seconds']:.1f} s -> {summary['output']}"
    )


def reconstruct(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        request = _request(args)
    except ProtocolError as exc:
        parser.error(str(exc))  # exits 2
    from .jobs import run_job  # numpy, formats, geometry: only when a job runs

    context = CliContext(request.job, offline=args.offline)

    def on_interrupt(signum: int, frame: Any) -> None:
        if context.cancelled():
            raise KeyboardInterrupt
        context.cancel()
        context.bar.print("Cancelling after the current step... (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        summary = run_job(request, context)
    except (JobCancelled, KeyboardInterrupt):
        context.bar.print(f"Cancelled: {_what_is_left(request.output)}")
        return EXIT_CANCELLED
    except UserError as exc:
        context.bar.print(f"error: {exc}")
        return EXIT_FAILED
    except Exception as exc:
        log = _write_traceback(request.job)
        context.bar.print(f"error: {explain(exc)}" + (f" (details: {log})" if log else ""))
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, previous)
    context.bar.clear()
    print(summary_line(summary), flush=True)
    return EXIT_OK


def _what_is_left(output: str) -> str:
    """What a cancelled job leaves: the earlier result, untouched, or nothing."""
    from .formats.bundle import is_complete

    if is_complete(output):
        return f"the earlier result in {output} is intact."
    return f"nothing was written to {output}."


def _write_traceback(job: str) -> str | None:
    """The traceback of the exception being handled, into a log file (its path), not onto the screen."""
    path = Path(tempfile.gettempdir()) / f"da3-engine-error-{job}.log"
    try:
        path.write_text(traceback.format_exc(), encoding="utf-8")
    except OSError:
        return None
    return str(path)


# --- info ---------------------------------------------------------------------------------------------


def hub_cache_folder() -> Path:
    """The Hugging Face hub cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        home = os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface")
        return Path(os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")).expanduser()


def cached_models(cache: Path) -> list[tuple[str, int]]:
    """(repo id, bytes on disk) of the DA3 model repos in a hub cache folder, sorted by id."""
    found = []
    if cache.is_dir():
        for entry in sorted(cache.iterdir()):
            if not entry.name.startswith("models--") or not entry.is_dir():
                continue
            repo = entry.name[len("models--") :].replace("--", "/")
            if "depth-anything" in repo.lower() or "da3" in repo.lower():
                # blobs are the files; snapshots only link to them
                size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
                found.append((repo, size))
    return found


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def info(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine info", description="Show engine, device and models."
    )
    parser.add_argument("--cache-dir", metavar="DIR", help="hub cache to list (default: the usual one)")
    args = parser.parse_args(argv)
    device = probe_device()
    lines = [
        f"DA3 Reconstruct engine {ENGINE_VERSION} (protocol {PROTOCOL_VERSION})",
        f"Python:  {platform.python_version()} ({sys.executable})",
        f"PyTorch: {device.torch or f'not usable ({device.problem})'}",
        f"CUDA:    {device.cuda or 'none (this PyTorch has no CUDA)'}",
        f"Device:  {device.device}{_gpu_name(device.device)}",
    ]
    if device.torch is not None:
        from .jobs.context import resolve_precision

        dtype, why = resolve_precision("auto", device.device)
        lines.append(f"Precision (auto): {dtype}, {why}")
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else hub_cache_folder()
    models = cached_models(cache)
    lines.append(f"Models in {cache}:")
    lines += [f"  {repo:<44} {_human(size):>9}" for repo, size in models]
    if not models:
        lines.append("  none (a job downloads its model on first use, or give --model a folder)")
    print("\n".join(lines))
    return EXIT_OK


def _rgb(text: str) -> tuple[float, float, float]:
    """``r,g,b`` (three numbers) → a tuple, for ``--background``."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not r,g,b (three numbers, such as 1,1,1)")
    return values


def _degree(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an SH degree (0, 1, 2 or 3)")
    return int(text)


def read_splat_cameras(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The cameras of ``render-splats``: a JSON list of ``{"name", "viewmat", "K", "width", "height"}``
    (viewmat 4×4 world → camera with OpenCV axes, K 3×3 in pixels), checked; numbers become numpy arrays.
    A camera that is not usable raises ``ValueError`` naming it and what is wrong."""
    import json

    import numpy as np

    cameras = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(cameras, list) or not cameras:
        raise ValueError(f"{path}: expected a non-empty JSON list of cameras")
    checked, names = [], set()
    for i, cam in enumerate(cameras):
        where = f"{path}: camera {i}"
        missing = [
            k
            for k in ("name", "viewmat", "K", "width", "height")
            if not isinstance(cam, dict) or k not in cam
        ]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        name = cam["name"]
        if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\:"):
            raise ValueError(f"{where}: name {name!r} is not usable as a file name")
        if name in names:
            raise ValueError(f"{where}: name {name!r} is used twice (the second would overwrite the first)")
        names.add(name)
        try:
            view = np.asarray(cam["viewmat"], np.float64)
            K = np.asarray(cam["K"], np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where} ({name}): viewmat and K must be arrays of numbers") from None
        if (
            view.shape != (4, 4)
            or K.shape != (3, 3)
            or not (np.isfinite(view).all() and np.isfinite(K).all())
        ):
            raise ValueError(f"{where} ({name}): viewmat must be 4x4 and K 3x3, finite numbers")
        size = [cam["width"], cam["height"]]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in size) or not all(
            float(v).is_integer() and v > 0 for v in size
        ):
            raise ValueError(f"{where} ({name}): width and height must be whole numbers of pixels above 0")
        checked.append({"name": name, "viewmat": view, "K": K, "width": int(size[0]), "height": int(size[1])})
    return checked


def render_splats(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine render-splats",
        description="Render a 3D Gaussian PLY from cameras, as gsplat renders it (needs gsplat).",
    )
    parser.add_argument("ply", help="a 3DGS PLY (Inria layout)")
    parser.add_argument(
        "--cameras",
        required=True,
        metavar="CAMERAS.json",
        help="JSON list of {name, viewmat (4x4 world->camera, OpenCV axes), K (3x3 pixels), width, height}",
    )
    parser.add_argument("--out", required=True, metavar="FOLDER", help="folder for <name>.npy and <name>.png")
    parser.add_argument(
        "--sh-degree", type=_degree, default=None, metavar="N", help="highest SH degree to use (default: all)"
    )
    parser.add_argument(
        "--background",
        type=_rgb,
        default=None,
        metavar="R,G,B",
        help="colour behind the splats (default: black)",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, or cuda (gsplat's CUDA rasterizer where it loads)"
    )
    args = parser.parse_args(argv)
    import numpy as np

    from .formats.gaussians_ply import read_gaussians_ply
    from .formats.ply import PlyError
    from .render.splats import render_gaussians

    try:
        cameras = read_splat_cameras(args.cameras)
        gaussians = read_gaussians_ply(args.ply)
    except (OSError, ValueError, PlyError) as exc:  # JSONDecodeError is a ValueError
        print(f"render-splats: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for cam in cameras:
            image = render_gaussians(
                gaussians,
                cam["viewmat"],
                cam["K"],
                cam["width"],
                cam["height"],
                sh_degree=args.sh_degree,
                background=args.background,
                device=args.device,
            )
            np.save(out / f"{cam['name']}.npy", image)
            _write_png(out / f"{cam['name']}.png", image)
    except UserError as exc:
        print(f"render-splats: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        print(f"render-splats: {explain(exc)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"rendered {len(cameras)} view(s) of {len(gaussians):,} splats into {out}")
    return EXIT_OK


def _write_png(path: Path, image) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)).save(path)


def _gpu_name(device: str) -> str:
    if not device.startswith("cuda"):
        return ""
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    return f" ({torch.cuda.get_device_name(index)})"
