"""The demo: build and install the extension in a headless Blender, reconstruct a scene with the real
engine, save a .blend and a rendered PNG.

    .venv-blender5/bin/python tools/demo.py                          # DA3-SMALL from the Hugging Face hub
    .venv-blender5/bin/python tools/demo.py --model /path/to/DA3-SMALL   # a local checkpoint folder
    .venv-blender5/bin/python tools/demo.py --generated-checkpoint   # offline: random weights
    .venv-blender5/bin/python tools/demo.py --images my_photos/      # your own photos

Steps: ``tools/build_extension.py`` builds and validates the zip; Blender (the ``bpy`` module, with
torch blocked in its process) installs it like a user would; the input images are rendered with Cycles
from a procedural scene unless ``--images`` is given; the extension's Reconstruct runs a job in the
engine process (``python -m engine serve``, with ``--engine-python``, default ``$DA3_ENGINE_PYTHON``,
else the project's ``.venv``, else this Python) and imports
the result; the scene is saved to ``<out>/demo.blend`` and rendered to ``<out>/demo.png``.

Offline, a hub model cannot be downloaded: the demo says so and how to point ``--model`` at a local
folder (``config.json`` + ``model.safetensors``) or to use ``--generated-checkpoint`` (a random but
well-conditioned da3-small: every stage runs, the geometry means nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
DEFAULT_MODEL = "depth-anything/DA3-SMALL"
PKG = "bl_ext.user_default.da3_reconstruct"


class DemoError(RuntimeError):
    """A step of the demo failed; the message says what to do."""


def _engine(python: str, code: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def prepare_model(args, out: Path) -> str:
    """A local checkpoint folder for the job (downloaded, generated or given)."""
    if args.generated_checkpoint:
        folder = out / "checkpoint-da3-small"
        if not (folder / "model.safetensors").is_file():
            print(f"generating a random da3-small checkpoint in {folder} ...", flush=True)
            code = (
                "from engine.model.random_weights import write_random_checkpoint\n"
                f"write_random_checkpoint({str(folder)!r}, 'da3-small')"
            )
            proc = _engine(args.engine_python, code)
            if proc.returncode != 0:
                raise DemoError(f"could not generate the checkpoint:\n{proc.stderr[-2000:]}")
        return str(folder)
    model = os.path.expanduser(args.model)
    if os.path.isdir(model):
        missing = [
            n for n in ("config.json", "model.safetensors") if not os.path.isfile(os.path.join(model, n))
        ]
        if missing:
            raise DemoError(f"{model} lacks {' and '.join(missing)}: give the folder downloaded from the hub")
        return model
    print(f"fetching {model} from the Hugging Face hub (cached after the first time) ...", flush=True)
    code = (
        "from huggingface_hub import snapshot_download\n"
        f"print(snapshot_download({model!r}, allow_patterns=['config.json', 'model.safetensors']))"
    )
    proc = _engine(args.engine_python, code)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise DemoError(
            f"cannot download {model} ({reason}).\n"
            "Offline? Either point --model at a local folder holding config.json and model.safetensors\n"
            f"(download it on a connected machine: `hf download {model} --local-dir DA3-SMALL`), or run\n"
            "with --generated-checkpoint to use a generated test checkpoint (random weights: the whole\n"
            "pipeline runs, but the geometry is meaningless)."
        )
    return lines[-1]


def start_blender(out: Path):
    """Import bpy with a fresh user folder under ``out`` and torch blocked in this process."""
    user = out / "blender_user"
    shutil.rmtree(user, ignore_errors=True)
    os.environ["BLENDER_USER_RESOURCES"] = str(user)
    sys.modules["torch"] = None
    import bpy

    return bpy


def install(bpy, zip_path: Path):
    import importlib

    import addon_utils

    bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True
    )
    if not addon_utils.check(PKG)[1]:
        raise DemoError(f"the extension did not enable after installing {zip_path}")
    print(f"installed and enabled {PKG}", flush=True)
    return importlib.import_module(PKG)


def input_images(bpy, args, out: Path) -> list[str]:
    if args.images:
        from_folder = sorted(
            str(p) for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")
        )
        if not from_folder:
            raise DemoError(f"no .png/.jpg images in {args.images}")
        return from_folder
    import synthetic_scene

    print(f"rendering {args.views} views of a procedural scene with Cycles ...", flush=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    views = synthetic_scene.render_views_in(bpy.context.scene, str(out / "images"), args.views)
    return [v.path for v in views]


def reconstruct(bpy, ext, images: list[str], model: str, args) -> None:
    import importlib

    reconstruct_ops = importlib.import_module(f"{ext.__name__}.operators.reconstruct")
    runtime = importlib.import_module(f"{ext.__name__}.operators.runtime")
    bpy.ops.wm.read_homefile(use_empty=True)
    prefs = bpy.context.preferences.addons[ext.__name__].preferences
    prefs.engine_python = args.engine_python
    settings = bpy.context.scene.da3
    for path in images:
        settings.images.add().path = path
    settings.model = "CUSTOM"
    settings.custom_model = model
    settings.process_res = args.process_res
    print(f"reconstructing {len(images)} images at {args.process_res} px with {model} ...", flush=True)
    start = time.monotonic()
    reconstruct_ops.begin(bpy.context)
    last = ""
    while (outcome := reconstruct_ops.tick(bpy.context)) is None:
        text = runtime.service().job.progress_text
        if text != last:
            print(f"  {time.monotonic() - start:6.1f} s  {text}", flush=True)
            last = text
        time.sleep(0.05)
    level, text = runtime.last_report()
    print(f"  {time.monotonic() - start:6.1f} s  {text}", flush=True)
    if outcome != "finished":
        job = runtime.service().job
        raise DemoError(f"the reconstruction {outcome}: {job.error}\n{job.details[-3000:]}")


def render_result(bpy, out: Path) -> Path:
    """Render the imported cloud from a viewpoint above and beside the reference camera."""
    import numpy as np
    from mathutils import Vector

    scene = bpy.context.scene
    root = next(o for o in scene.objects if o.get("da3_job"))
    cloud = next(c for c in root.children if c.type == "MESH")
    co = np.empty(len(cloud.data.vertices) * 3, np.float32)
    cloud.data.attributes["position"].data.foreach_get("vector", co)
    world = np.array(root.matrix_world)
    points = co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
    centre = Vector(np.median(points, axis=0).tolist())
    extent = float(cloud["da3_scene_size"])
    cam = bpy.data.objects.new("Demo View", bpy.data.cameras.new("Demo View"))
    scene.collection.objects.link(cam)
    cam.data.clip_end = 100 * extent
    cam.location = centre + Vector((0.35, -0.9, 0.6)) * extent
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.view_settings.view_transform = "Standard"
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 800, 500, 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    path = out / "demo.png"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return path


def _default_engine_python() -> str:
    """The engine's Python: ``$DA3_ENGINE_PYTHON``, else the project's .venv, else this interpreter."""
    venv = ROOT / ".venv" / "bin" / "python"
    return os.environ.get("DA3_ENGINE_PYTHON") or (str(venv) if venv.is_file() else sys.executable)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"hub id or local folder (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--generated-checkpoint", action="store_true", help="use a generated random da3-small"
    )
    parser.add_argument("--images", help="a folder of your photos (default: render a procedural scene)")
    parser.add_argument("--views", type=int, default=6, help="views of the procedural scene (default 6)")
    parser.add_argument(
        "--process-res", type=int, default=504, help="processing resolution, a multiple of 14"
    )
    parser.add_argument(
        "--engine-python", default=_default_engine_python(), help="Python with torch for the engine"
    )
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder (default out/demo)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        import build_extension

        zip_path = build_extension.build(out / "dist")[build_extension.this_platform()]
        print(f"built {zip_path}", flush=True)
        model = prepare_model(args, out)
        bpy = start_blender(out)
        ext = install(bpy, zip_path)
        images = input_images(bpy, args, out)
        reconstruct(bpy, ext, images, model, args)
        blend = out / "demo.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend))
        render = render_result(bpy, out)
        print(f"saved {blend}\nrendered {render}", flush=True)
        code = 0
    except (DemoError, build_extension.BuildError) as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        code = 2
    if "bpy" in sys.modules and sys.modules["bpy"] is not None:
        import addon_utils

        addon_utils.disable(PKG)  # stops the engine process; bpy 4.5 may hang at exit otherwise
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
