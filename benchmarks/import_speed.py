"""Import speed into Blender: point clouds, 3D Gaussians, meshes, a long camera, beside its own importers.

    .venv-blender5/bin/python benchmarks/import_speed.py             # every case, 5 runs each (any Blender venv)
    .venv-blender5/bin/python benchmarks/import_speed.py --only points --runs 9   # the cases named "points …"
    .venv-blender5/bin/python benchmarks/import_speed.py --readme    # and rewrite README.md's table and summary
    .venv-blender5/bin/python benchmarks/import_speed.py --case points --n 1000000   # one run of one case

Cases: 3D Gaussians of 1M and 5M splats with SH degree 3 from a 3DGS PLY (read + object + attributes +
modifier; into a new file and into one that has the node group and materials), beside Blender's own PLY
importer (``wm.ply_import``) on the same file, which only reads the raw attributes; the splats' first evaluation for the viewport (points) and for a render (instances), and
a Cycles render of 1M splats; a fused mesh of 1M and 5M coloured triangles from a PLY (ours: triangles,
byte colours, material) beside ``wm.ply_import`` of the same file; a point cloud of 1M and 5M points
(mesh + colour, confidence, confidence rank and view attributes + the Geometry Nodes modifier and
material), the same clouds evaluated once (what the viewport does on the first redraw), one camera keyed
on 1000 frames (location, quaternion, lens, shift), and a whole bundle (8 views at 504×378) through
``import_bundle``, with its points or with per-view meshes. Each case runs in its own process so
its peak memory (``ru_maxrss``) is its own; "added" is the peak minus the memory before the import
(bpy loaded, input arrays made). The runs go in rounds (every case once per round, so ours and Blender's
importers take turns and a busy moment on this shared machine hits both); the table gives the median and
the range of the runs. Targets: 5M points under 0.3 s; under 1 s for 1M splats, 1M faces, 1M points and the
1000-frame camera.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _load_extension():
    """Import the repo as the package ``da3_reconstruct`` (its root __init__ imports nothing)."""
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="da3_bench_"))
    sys.modules["torch"] = None  # the Blender side never needs it
    import bpy  # noqa: F401

    sys.path.insert(0, str(ROOT / "tools"))
    from extension_package import load_extension

    return load_extension()


def case_points(n: int, evaluate: bool) -> dict:
    import bpy
    import numpy as np

    _load_extension()
    from da3_reconstruct.scene import points

    bpy.ops.wm.read_homefile(use_empty=True)
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    conf = (1.0 + 9.0 * rng.random(n)).astype(np.float32)
    view = rng.integers(0, 100, n).astype(np.int32)
    collection = bpy.context.scene.collection
    before = _rss_mb()
    start = time.perf_counter()
    obj = points.create_point_cloud("Bench", xyz, rgb, conf, view, collection)
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "points": len(obj.data.vertices)}
    if evaluate:
        start = time.perf_counter()
        depsgraph = bpy.context.evaluated_depsgraph_get()
        geometry = bpy.types.GeometrySet.from_evaluated_object(obj.evaluated_get(depsgraph))
        out["evaluate_seconds"] = time.perf_counter() - start
        out["evaluated_points"] = len(geometry.pointcloud.points)
    out.update(peak_mb=_rss_mb(), added_mb=_rss_mb() - before)
    return out


def _splat_file(n: int) -> Path:
    """A 3DGS PLY of ``n`` random splats with SH degree 3 (written once per size, not timed)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from engine.formats.gaussians_ply import SplatTable, write_splat_table

    path = Path(tempfile.gettempdir()) / f"da3_bench_splats_{n}.ply"
    if not path.exists():
        rng = np.random.default_rng(0)
        table = SplatTable(
            means=rng.normal(size=(n, 3)).astype(np.float32),
            log_scales=rng.uniform(-6.0, -3.0, (n, 3)).astype(np.float32),
            quaternions=rng.normal(size=(n, 4)).astype(np.float32),
            sh=(0.3 * rng.normal(size=(n, 3, 16))).astype(np.float32),
            opacity_logits=rng.normal(size=n).astype(np.float32),
        )
        write_splat_table(path, table)
    return path


def case_splat_file(n: int) -> dict:
    """Write the benchmark's splat file in a process of its own (its memory stays out of the cases)."""
    path = _splat_file(n)
    return {"seconds": 0.0, "file_mb": path.stat().st_size / 1e6, "peak_mb": _rss_mb(), "added_mb": 0.0}


def case_splats(n: int, tool: str, evaluate: bool, render: bool, warm_groups: bool = False) -> dict:
    import bpy

    path = _splat_file(n)
    _load_extension()
    from da3_reconstruct.scene import splat_material, splat_nodes
    from da3_reconstruct.scene.gaussians import import_splat_file, prepare_scene

    bpy.ops.wm.read_homefile(use_empty=True)
    if warm_groups:  # as for every import after the first in a file: the node group and materials exist
        splat_nodes.gaussians_group(3)
        splat_material.splat_material(3)
        splat_material.splat_point_material()
    with open(path, "rb") as fh:  # the file in the page cache for both importers (no disk in the timing)
        while fh.read(1 << 24):
            pass
    before = _rss_mb()
    start = time.perf_counter()
    if tool == "blender":
        bpy.ops.wm.ply_import(filepath=str(path))
        obj = bpy.context.view_layer.objects.active
    else:
        obj = import_splat_file(str(path), bpy.context.scene.collection)  # what File > Import runs
    seconds = time.perf_counter() - start
    elements = obj.data.points if obj.type == "POINTCLOUD" else obj.data.vertices  # wm.ply_import on 5.x
    out = {"seconds": seconds, "splats": len(elements)}
    out["file_mb"] = path.stat().st_size / 1e6
    if evaluate:
        for mode in ("viewport", "render"):
            if mode == "render":
                obj.modifiers[0].show_viewport = True
                from da3_reconstruct.scene.compat import set_modifier_input

                set_modifier_input(obj.modifiers[0], "Viewport Splats", True)
            start = time.perf_counter()
            depsgraph = bpy.context.evaluated_depsgraph_get()
            depsgraph.update()
            bpy.types.GeometrySet.from_evaluated_object(obj.evaluated_get(depsgraph))
            out[f"evaluate_{mode}_seconds"] = time.perf_counter() - start
    if render:
        scene = bpy.context.scene
        prepare_scene(scene)
        cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
        scene.collection.objects.link(cam)
        cam.location = (0.0, -6.0, 0.0)
        cam.rotation_euler = (1.5708, 0.0, 0.0)
        scene.camera = cam
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = 1
        scene.cycles.use_denoising = False
        scene.render.resolution_x, scene.render.resolution_y = 640, 360
        scene.render.resolution_percentage = 100
        scene.render.filepath = str(Path(tempfile.gettempdir()) / "da3_bench_splats.png")
        start = time.perf_counter()
        bpy.ops.render.render(write_still=True)
        out["render_640x360_1spp_seconds"] = time.perf_counter() - start
    out.update(peak_mb=_rss_mb(), added_mb=_rss_mb() - before)
    return out


def _mesh_file(faces: int) -> Path:
    """A binary triangle PLY of about ``faces`` triangles with colours: a wavy grid, as a fused mesh's
    connectivity is (every inner vertex in six triangles); written once per size, not timed."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from engine.formats.mesh_ply import write_mesh_ply
    from engine.geometry.mesh import Mesh

    side = int(np.sqrt(faces / 2)) + 1
    path = Path(tempfile.gettempdir()) / f"da3_bench_mesh_{faces}.ply"
    if not path.exists():
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
        z = 0.05 * np.sin(20 * x) * np.cos(15 * y)
        idx = np.arange(side * side, dtype=np.int32).reshape(side, side)
        a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
        c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
        mesh = Mesh(
            np.stack([x, y, z], -1).reshape(-1, 3),
            np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]),
            rng.integers(0, 256, (side * side, 3), dtype=np.uint8),
        )
        write_mesh_ply(path, mesh)
    return path


def case_mesh_file(faces: int) -> dict:
    """Write the benchmark's mesh file in a process of its own (its memory stays out of the cases)."""
    path = _mesh_file(faces)
    return {"seconds": 0.0, "file_mb": path.stat().st_size / 1e6, "peak_mb": _rss_mb(), "added_mb": 0.0}


def case_mesh(faces: int, tool: str) -> dict:
    """A fused mesh from a PLY: ours (``scene.mesh.import_mesh_file``: mapped read, triangles, byte colours,
    material) or Blender's ``wm.ply_import`` of the same file."""
    import bpy

    path = _mesh_file(faces)
    _load_extension()
    from da3_reconstruct.scene.mesh import import_mesh_file

    bpy.ops.wm.read_homefile(use_empty=True)
    with open(path, "rb") as fh:  # the file in the page cache for both importers (no disk in the timing)
        while fh.read(1 << 24):
            pass
    before = _rss_mb()
    start = time.perf_counter()
    if tool == "blender":
        bpy.ops.wm.ply_import(filepath=str(path))
        obj = bpy.context.view_layer.objects.active
    else:
        obj = import_mesh_file(path, "Bench Mesh", bpy.context.scene.collection)
    out = {"seconds": time.perf_counter() - start, "faces": len(obj.data.polygons)}
    out.update(
        vertices=len(obj.data.vertices),
        file_mb=path.stat().st_size / 1e6,
        peak_mb=_rss_mb(),
        added_mb=_rss_mb() - before,
    )
    return out


def case_camera(frames: int) -> dict:
    import bpy
    import numpy as np

    _load_extension()
    from da3_reconstruct.engine.geometry.cameras import quaternion_wxyz_to_matrix
    from da3_reconstruct.scene import cameras

    bpy.ops.wm.read_homefile(use_empty=True)
    t = np.linspace(0, 4 * np.pi, frames)
    q = np.column_stack([np.cos(t / 4), 0.1 * np.sin(t), np.sin(t / 4), 0.05 * np.cos(t)])
    w2c = np.concatenate(
        [quaternion_wxyz_to_matrix(q), np.column_stack([np.sin(t), np.cos(t), t])[:, :, None]], 2
    )
    K = np.tile(np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]), (frames, 1, 1))
    K[:, 0, 0] += np.sin(t)  # a focal length that wobbles, so lens keys differ
    sizes = np.tile([480, 640], (frames, 1))
    before = _rss_mb()
    start = time.perf_counter()
    obj = cameras.create_animated_camera(
        "Bench Camera",
        w2c,
        K,
        sizes,
        np.arange(1, frames + 1),
        bpy.context.scene.collection,
        None,
        per_frame_lens=True,
    )
    seconds = time.perf_counter() - start
    keys = sum(len(fc.keyframe_points) for fc in _fcurves(obj) + _fcurves(obj.data))
    return {
        "seconds": seconds,
        "frames": frames,
        "keys": keys,
        "peak_mb": _rss_mb(),
        "added_mb": _rss_mb() - before,
    }


def _fcurves(id_block) -> list:
    action = id_block.animation_data.action
    if hasattr(action, "layers"):
        bag = action.layers[0].strips[0].channelbag(id_block.animation_data.action_slot)
        return list(bag.fcurves)
    return list(action.fcurves)


def case_bundle(views: int, view_meshes: bool = False) -> dict:
    import bpy
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from engine.formats.bundle import write_bundle

    _load_extension()
    from da3_reconstruct.scene import importer

    h, w = 378, 504
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="da3_bench_bundle_"))
    ext = np.zeros((views, 3, 4), np.float32)
    ext[:, :, :3] = np.eye(3)
    ext[:, 0, 3] = -0.1 * np.arange(views)
    K = np.tile(np.array([[400.0, 0, w / 2], [0, 400.0, h / 2], [0, 0, 1]], np.float32), (views, 1, 1))
    arrays = {
        "images": rng.integers(0, 256, (views, h, w, 3), dtype=np.uint8),
        "depth": np.broadcast_to(2.0 + 0.3 * np.sin(np.mgrid[0:h, 0:w][1] / 40.0), (views, h, w)).astype(
            np.float32
        ),  # a smooth surface: per-view meshes keep their triangles
        "conf": (1.0 + rng.random((views, h, w))).astype(np.float32),
        "extrinsics": ext,
        "intrinsics": K,
    }
    write_bundle(folder, arrays, {"model_id": "bench"})
    del arrays
    bpy.ops.wm.read_homefile(use_empty=True)
    before = _rss_mb()
    start = time.perf_counter()
    options = importer.ImportOptions(backgrounds=True, points=not view_meshes, view_meshes=view_meshes)
    result = importer.import_bundle(bpy.context, folder, options)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "views": views,
        "points": result.num_points,
        "view_mesh_faces": sum(len(o.data.polygons) for o in result.view_meshes),
        "peak_mb": _rss_mb(),
        "added_mb": _rss_mb() - before,
    }


@dataclass(frozen=True)
class Case:
    """One benchmark case: its command line, its README row and how often it runs."""

    name: str
    args: tuple[str, ...]
    row: str | None = (
        None  # README row; {file} {faces} {points} {cores} come from the result; None: not in it
    )
    fields: tuple[str, ...] = ("seconds",)  # the result's timings shown in the row, joined by " / "
    target: float | None = None  # seconds (the median is held to it)
    repeat: bool = True  # False: one run (the files written for the other cases, the render)


CASES = [
    Case("write 1M-splat file (setup)", ("--case", "splat-file", "--n", "1000000"), repeat=False),
    Case("write 5M-splat file (setup)", ("--case", "splat-file", "--n", "5000000"), repeat=False),
    Case(
        "splats 1M SH3 (ours, new file)",
        ("--case", "splats", "--n", "1000000"),
        "3D Gaussians, 1M splats, SH degree 3, {file} PLY (ours, first import in a file)",
        target=1.0,
    ),
    Case(
        "splats 1M SH3 (ours, groups exist)",
        ("--case", "splats", "--n", "1000000", "--warm-groups"),
        "the same, node group and materials already in the file",
        target=1.0,
    ),
    Case(
        "splats 1M SH3 (wm.ply_import)",
        ("--case", "splats", "--n", "1000000", "--tool", "blender"),
        "the same file through Blender's own `wm.ply_import` (raw attributes only)",
    ),
    Case(
        "splats 5M SH3 (ours, new file)",
        ("--case", "splats", "--n", "5000000"),
        "3D Gaussians, 5M splats, SH degree 3, {file} PLY (ours, first import)",
    ),
    Case(
        "splats 5M SH3 (ours, groups exist)",
        ("--case", "splats", "--n", "5000000", "--warm-groups"),
        "the same, node group already in the file",
    ),
    Case(
        "splats 5M SH3 (wm.ply_import)",
        ("--case", "splats", "--n", "5000000", "--tool", "blender"),
        "the same file through `wm.ply_import`",
    ),
    Case(
        "splats 1M + first evaluations",
        ("--case", "splats", "--n", "1000000", "--evaluate"),
        "1M splats: first evaluation, viewport points / render triangles",
        ("evaluate_viewport_seconds", "evaluate_render_seconds"),
    ),
    Case(
        "splats 1M Cycles render",
        ("--case", "splats", "--n", "1000000", "--render"),
        "1M splats: Cycles render, 640×360, 1 sample (CPU, {cores} cores; one run)",
        ("render_640x360_1spp_seconds",),
        repeat=False,
    ),
    Case("write 1M-face mesh file (setup)", ("--case", "mesh-file", "--n", "1000000"), repeat=False),
    Case("write 5M-face mesh file (setup)", ("--case", "mesh-file", "--n", "5000000"), repeat=False),
    Case(
        "mesh 1M faces (ours)",
        ("--case", "mesh", "--n", "1000000"),
        "fused mesh, 1M triangles with colours, {file} PLY (ours: triangles, byte colours, material)",
        target=1.0,
    ),
    Case(
        "mesh 1M faces (wm.ply_import)",
        ("--case", "mesh", "--n", "1000000", "--tool", "blender"),
        "the same file through `wm.ply_import`",
    ),
    Case(
        "mesh 5M faces (ours)",
        ("--case", "mesh", "--n", "5000000"),
        "fused mesh, 5M triangles with colours, {file} PLY (ours)",
    ),
    Case(
        "mesh 5M faces (wm.ply_import)",
        ("--case", "mesh", "--n", "5000000", "--tool", "blender"),
        "the same file through `wm.ply_import`",
    ),
    Case(
        "bundle 8 views, per-view meshes",
        ("--case", "bundle", "--views", "8", "--view-meshes"),
        "per-view meshes, 8 views at 504×378 ({faces} triangles, 8 packed photos)",
    ),
    Case(
        "points 1M",
        ("--case", "points", "--n", "1000000"),
        "point cloud, 1M points (4 attributes, modifier, material)",
        target=1.0,
    ),
    Case("points 5M", ("--case", "points", "--n", "5000000"), "point cloud, 5M points", target=0.3),
    Case("points 1M + first evaluation", ("--case", "points", "--n", "1000000", "--evaluate")),
    Case(
        "points 5M + first evaluation",
        ("--case", "points", "--n", "5000000", "--evaluate"),
        "the same, its first evaluation (the viewport's first redraw)",
        ("evaluate_seconds",),
    ),
    Case(
        "camera 1000 frames",
        ("--case", "camera", "--frames", "1000"),
        "camera keyed on 1000 frames (location, rotation, lens, shift)",
        target=1.0,
    ),
    Case(
        "bundle 8 views 504x378",
        ("--case", "bundle", "--views", "8"),
        "whole bundle, 8 views at 504×378 ({points} points, 8 cameras)",
    ),
]

README = ROOT / "README.md"
TABLE_MARKERS = ("<!-- import_speed table: begin", "<!-- import_speed table: end -->")
SUMMARY_MARKERS = ("<!-- import_speed summary: begin", "<!-- import_speed summary: end -->")
GENERATED = "(generated by benchmarks/import_speed.py --readme; edits are overwritten) -->"


def _run_case(case: Case) -> dict | None:
    """One run of ``case`` in a fresh process: its result (with the load average it started under)."""
    load = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, __file__, *case.args], capture_output=True, text=True, timeout=900, check=False
    )
    line = next((s for s in proc.stdout.splitlines() if s.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        print(f"{case.name:36s} FAILED\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}", flush=True)
        return None
    result = json.loads(line)
    result["load"] = load
    details = ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in result.items()
        if k not in ("seconds", "peak_mb", "added_mb", "blender")
    )
    print(
        f"{case.name:36s} {result['seconds']:8.3f} {result['peak_mb']:8.0f} {result['added_mb']:9.0f}  {details}",
        flush=True,
    )
    return result


def _seconds(x: float) -> str:
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _megabytes(mb: float) -> str:
    return f"{mb:.0f} MB" if mb < 1000 else f"{mb / 1024:.1f} GB"


def _file_size(mb: float) -> str:
    """A file size given in 10⁶ bytes, as a file manager shows it."""
    return f"{mb:.1f} MB" if mb < 100 else f"{mb:.0f} MB" if mb < 1000 else f"{mb / 1000:.2f} GB"


def _timing(runs: list[dict], field: str) -> str:
    values = [r[field] for r in runs]
    median = _seconds(statistics.median(values))
    return median if len(values) == 1 else f"{median} ({_seconds(min(values))}–{_seconds(max(values))})"


def _row(case: Case, runs: list[dict]) -> str:
    first = runs[0]
    label = case.row.format(
        file=_file_size(first.get("file_mb", 0.0)),
        faces=f"{first.get('view_mesh_faces', 0) / 1e6:.1f}M",
        points=f"{first.get('points', 0) / 1e6:.1f}M",
        cores=os.cpu_count(),
    )
    seconds = " / ".join(_timing(runs, f) for f in case.fields)
    peak = _megabytes(statistics.median(r["peak_mb"] for r in runs))
    added = _megabytes(statistics.median(r["added_mb"] for r in runs))
    return f"| {label} | {seconds} | {peak} | {added} |"


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else platform.machine()


def markdown(results: dict[str, list[dict]], runs: int) -> tuple[list[str], str]:
    """The README's table (an introduction and the rows) and the one-line summary, from the runs."""
    blender = next((r["blender"] for rs in results.values() for r in rs if "blender" in r), "?")
    loads = [r["load"] for rs in results.values() for r in rs]
    intro = (
        f"Measured by `benchmarks/import_speed.py --readme` on {time.strftime('%Y-%m-%d')}: {_cpu_name()}, "
        f"{os.cpu_count()} cores, Blender {blender}, Python {platform.python_version()}. Each case runs in a "
        f"fresh process, {runs} times in rounds (ours and Blender's importers take turns; each file is read "
        "into the page cache first); seconds are the median and (range), memory the median peak RSS and "
        "what the import added to it. Other work shares this machine (load average "
        f"{min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} cores during the run), so single runs "
        "vary; the fastest run comes closest to what an idle machine gives."
    )
    lines = ["| case | seconds | peak RSS | added |", "|---|---|---|---|"]
    lines += [_row(c, results[c.name]) for c in CASES if c.row and results.get(c.name)]

    def median(name: str, field: str = "seconds") -> str:
        return _seconds(statistics.median(r[field] for r in results[name]))

    best_5m = _seconds(min(r["seconds"] for r in results["points 5M"]))
    summary = (
        f"`benchmarks/import_speed.py` — Blender {blender} imports 1M points in {median('points 1M')} s, "
        f"5M in {median('points 5M')} s (fastest run {best_5m} s), 1M splats in "
        f"{median('splats 1M SH3 (ours, new file)')} s (Blender's own `wm.ply_import` of the same file: "
        f"{median('splats 1M SH3 (wm.ply_import)')} s), a 1M-triangle coloured mesh in "
        f"{median('mesh 1M faces (ours)')} s (`wm.ply_import`: {median('mesh 1M faces (wm.ply_import)')} s) "
        f"and a 1000-frame camera in {median('camera 1000 frames')} s (medians of {runs} runs; the table "
        "under *For developers*)."
    )
    return [intro, "", *lines], summary


def _replace_block(text: str, markers: tuple[str, str], lines: list[str]) -> str:
    """``text`` with the lines between the marker lines replaced by ``lines``, at the begin marker's indent."""
    begin = text.find(markers[0])
    end = text.find(markers[1], begin)
    if begin < 0 or end < 0:
        raise SystemExit(f"README.md has no {markers[0]!r} … {markers[1]!r} block")
    line_start = text.rfind("\n", 0, begin) + 1
    indent = text[line_start:begin]
    wrap = textwrap.TextWrapper(105 - len(indent), break_long_words=False, break_on_hyphens=False)
    lines = [
        part for line in lines for part in (wrap.wrap(line) if not line.startswith("|") else [line]) or [""]
    ]
    body = "".join(f"{indent}{line}\n" if line else "\n" for line in lines)
    return f"{text[:line_start]}{indent}{markers[0]} {GENERATED}\n{body}{indent}{text[end:]}"


def write_readme(table: list[str], summary: str) -> None:
    text = README.read_text(encoding="utf-8")
    text = _replace_block(text, TABLE_MARKERS, table)
    text = _replace_block(text, SUMMARY_MARKERS, [summary])
    README.write_text(text, encoding="utf-8")


def run_all(runs: int, only: list[str], show_markdown: bool, readme: bool) -> int:
    timed = [c for c in CASES if "(setup)" not in c.name and (not only or any(w in c.name for w in only))]
    kinds = {"splats": "splat-file", "mesh": "mesh-file"}
    files = {(kinds[c.args[1]], c.args[3]) for c in timed if c.args[1] in kinds}
    setup = [c for c in CASES if (c.args[1], c.args[3]) in files]  # the files the chosen cases read
    print(f"import speed on {_cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'case':36s} {'seconds':>8s} {'peak MB':>8s} {'added MB':>9s}  details")
    results: dict[str, list[dict]] = {}
    failed = 0
    for case in setup:
        failed += _run_case(case) is None
    for round_ in range(runs):
        for case in timed:
            if round_ > 0 and not case.repeat:
                continue
            result = _run_case(case)
            if result is None:
                failed += 1
            else:
                results.setdefault(case.name, []).append(result)
    print(f"\n{'case':36s} {'median':>8s} {'fastest':>8s} {'slowest':>8s}  runs")
    for case in timed:
        rs = results.get(case.name)
        if not rs:
            continue
        seconds = [r["seconds"] for r in rs]
        median = statistics.median(seconds)
        verdict = ""
        if case.target is not None:
            verdict = f"  target < {case.target:g} s: " + ("ok" if median < case.target else "over (median)")
        print(f"{case.name:36s} {median:8.3f} {min(seconds):8.3f} {max(seconds):8.3f}  {len(rs)}{verdict}")
    if show_markdown or readme:
        if only or failed:
            print("\n(the README table needs every case, each run without a failure)")
            return 1
        table, summary = markdown(results, runs)
        print("\n" + "\n".join(table) + "\n\n" + summary)
        if readme:
            write_readme(table, summary)
            print(f"\nwrote {README}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case", choices=["points", "camera", "bundle", "splats", "splat-file", "mesh", "mesh-file"]
    )
    parser.add_argument("--view-meshes", action="store_true", help="bundle: per-view meshes, no points")
    parser.add_argument("--tool", choices=["ours", "blender"], default="ours")
    parser.add_argument("--render", action="store_true")
    parser.add_argument(
        "--warm-groups", action="store_true", help="splats: node group and materials built first"
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--evaluate", action="store_true")
    parser.add_argument("--runs", type=int, default=5, help="every case: runs (in rounds)")
    parser.add_argument("--only", action="append", default=[], help="every case: those whose name has this")
    parser.add_argument("--markdown", action="store_true", help="every case: print the README table")
    parser.add_argument("--readme", action="store_true", help="every case: and write it into README.md")
    args = parser.parse_args()
    if args.case is None:
        return run_all(max(1, args.runs), args.only, args.markdown, args.readme)
    if args.case == "points":
        result = case_points(args.n, args.evaluate)
    elif args.case == "splat-file":
        result = case_splat_file(args.n)
    elif args.case == "splats":
        result = case_splats(args.n, args.tool, args.evaluate, args.render, args.warm_groups)
    elif args.case == "mesh-file":
        result = case_mesh_file(args.n)
    elif args.case == "mesh":
        result = case_mesh(args.n, args.tool)
    elif args.case == "camera":
        result = case_camera(args.frames)
    else:
        result = case_bundle(args.views, args.view_meshes)
    if "bpy" in sys.modules:
        result["blender"] = sys.modules["bpy"].app.version_string
    print(json.dumps(result), flush=True)
    os._exit(0)  # bpy 4.5 may hang at interpreter exit


if __name__ == "__main__":
    sys.exit(main())
