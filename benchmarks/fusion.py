"""Fusion benchmark: our sparse TSDF (``engine.geometry.fusion``) beside Open3D's ScalableTSDFVolume
(the fusion DA3's own benchmark uses), on the same depth maps, cameras and voxel size.

    .venv/bin/python benchmarks/fusion.py                      # 10, 100 and 500 views at 504×378
    .venv/bin/python benchmarks/fusion.py --views 10 100 --scene sphere

The views are ray cast from an analytic scene (``tests/engine/fusion_scenes``: the room seen from its
middle, or a sphere on a plane from an orbit) with 1 % relative depth noise and 1 % outliers, the
kind of error a network's depth has; the truth is the exact surface the cameras see. Each tool runs
in a fresh process (so its peak memory is its own) and is given the same voxel (our automatic one)
and the same truncation (4 voxels). Reported per tool: seconds (integration + mesh extraction, the
depth already in memory), peak memory added over the loaded inputs, faces, and Chamfer distance and
F-score at 1 % of the scene size against the true surface.

Open3D is installed into its own virtualenv (``.venv-open3d``, Python 3.11, ``pip install open3d``)
(pinned: ``OPEN3D_PINS``) the first time, since its numpy pin differs from ours; ``--open3d-python`` points at another one.
Its Linux wheel needs the system's libusb (Debian/Ubuntu: ``apt install libusb-1.0-0``).
Open3D projects a voxel to the pixel whose centre is nearest (pixel centres at integers), ours to the
pixel that contains it (centres at +0.5), so Open3D is given the principal point shifted by half a
pixel: both see exactly the same pixel for each voxel.
"""

from __future__ import annotations

import argparse
import json
import os
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

from tests.engine.fusion_scenes import (  # noqa: E402
    chamfer_fscore,
    corrupt,
    intrinsics,
    orbit_cameras,
    render_depth,
    room,
    room_cameras,
    sphere_on_plane,
    surface_samples,
)

WIDTH, HEIGHT = 504, 378
SAMPLES = 200_000  # points on each mesh and on the true surface for Chamfer / F-score
OPEN3D_VENV = ROOT / ".venv-open3d"
# 0.18 with numpy 1.x: 0.20's wheel beside numpy 2.4 integrates nothing here (an empty mesh), and
# 0.18 beside numpy 2 crashes.
OPEN3D_PINS = ("open3d==0.18.0", "numpy==1.26.4")


def peak_rss_mb() -> float:
    """Peak resident memory since the last ``reset_peak`` (Linux), else since the process began."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e3
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def reset_peak() -> float:
    """Start the peak over from the memory in use now (Linux: clear_refs 5); returns that memory."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return peak_rss_mb()


SCENES = {
    "room": (room, room_cameras),
    "sphere": (sphere_on_plane, lambda n: orbit_cameras(n, 3.0, 1.8, (0, 0, 0.4), turns=2.0)),
}


def make_views(scene_name: str, n: int, folder: Path) -> tuple[Path, np.ndarray, float]:
    """Render ``n`` views, corrupt them, save the inputs; returns (inputs file, true surface samples,
    scene size)."""
    from engine.geometry.unproject import depth_to_world_points

    make, cams = SCENES[scene_name]
    scene, cameras = make(), cams(n)
    k = intrinsics(WIDTH, HEIGHT)
    depth = np.empty((n, HEIGHT, WIDTH), np.float32)
    rgb = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    truth = []
    per_view = max(1, SAMPLES // n + 1)
    rng = np.random.default_rng(1)
    for i, w2c in enumerate(cameras):
        depth[i], rgb[i] = render_depth(scene, w2c, k, HEIGHT, WIDTH)
        pts = depth_to_world_points(depth[i : i + 1], k[None], w2c[None])[depth[i : i + 1] > 0]
        truth.append(pts[rng.choice(len(pts), min(per_view, len(pts)), replace=False)])
    noisy = corrupt(depth, noise=0.01, outliers=0.01, seed=3)
    path = folder / f"{scene_name}_{n}.npz"
    np.savez(path, depth=noisy, rgb=rgb, w2c=cameras, k=k)
    truth = np.concatenate(truth)
    return path, truth[rng.choice(len(truth), min(SAMPLES, len(truth)), replace=False)], scene.size


def run_ours(inputs: str, voxel: float, out: str) -> dict:
    import torch

    from engine.geometry.fusion import TSDFVolume, fusion_weights

    torch.set_num_threads(os.cpu_count() or 1)
    data = np.load(inputs)
    depth, rgb, w2c, k = data["depth"], data["rgb"], data["w2c"], data["k"]
    ks = np.repeat(k[None], len(depth), 0)
    base = reset_peak()  # the loaded inputs are not counted
    start = time.perf_counter()
    volume = TSDFVolume(voxel, colors=True)
    for s in range(0, len(depth), 10):  # as a job does: a batch of views at a time
        sl = slice(s, s + 10)
        volume.integrate(depth[sl], w2c[sl], ks[sl], fusion_weights(depth[sl]), rgb[sl])
    integrate = time.perf_counter() - start
    mesh = volume.extract()
    seconds = time.perf_counter() - start
    np.savez(out, vertices=mesh.vertices, faces=mesh.faces)
    return {
        "seconds": seconds,
        "integrate_s": integrate,
        "added_mb": peak_rss_mb() - base,
        "faces": mesh.num_faces,
    }


def run_open3d(inputs: str, voxel: float, out: str) -> dict:
    import open3d as o3d

    data = np.load(inputs)
    depth, rgb, w2c, k = data["depth"], data["rgb"], data["w2c"], data["k"]
    h, w = depth.shape[1:]
    # Open3D's pixel centres are at integers: the same voxel→pixel mapping as ours with cx, cy - 0.5.
    intr = o3d.camera.PinholeCameraIntrinsic(w, h, k[0, 0], k[1, 1], k[0, 2] - 0.5, k[1, 2] - 0.5)
    base = reset_peak()  # the loaded inputs are not counted
    start = time.perf_counter()
    volume = o3d.pipelines.integration.ScalableTSDFVolume(
        voxel_length=voxel, sdf_trunc=4 * voxel, color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8
    )
    for i in range(len(depth)):
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(rgb[i])),
            o3d.geometry.Image(np.ascontiguousarray(depth[i])),
            depth_scale=1.0,
            depth_trunc=1e6,
            convert_rgb_to_intensity=False,
        )
        extrinsic = np.eye(4)
        extrinsic[:3] = w2c[i][:3]
        volume.integrate(rgbd, intr, extrinsic)
    integrate = time.perf_counter() - start
    mesh = volume.extract_triangle_mesh()
    seconds = time.perf_counter() - start
    faces = np.asarray(mesh.triangles)
    np.savez(out, vertices=np.asarray(mesh.vertices), faces=faces)
    return {
        "seconds": seconds,
        "integrate_s": integrate,
        "added_mb": peak_rss_mb() - base,
        "faces": len(faces),
    }


def ensure_open3d(python: Path) -> Path:
    """An interpreter that imports open3d: the given one, or ``.venv-open3d`` made on first use."""
    if (
        python.exists()
        and subprocess.run([python, "-c", "import open3d"], capture_output=True).returncode == 0
    ):
        return python
    if python != OPEN3D_VENV / "bin" / "python":
        raise SystemExit(f"{python} cannot import open3d")
    print("installing open3d into .venv-open3d (once) ...", flush=True)
    base = next(
        (p for p in ("python3.11", str(Path.home() / ".pyenv/versions/3.11.7/bin/python3.11")) if _runs(p)),
        None,
    )
    if base is None:
        raise SystemExit("Open3D needs Python 3.11 or older here; pass --open3d-python")
    subprocess.run([base, "-m", "venv", OPEN3D_VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *OPEN3D_PINS], check=True)
    return python


def _runs(exe: str) -> bool:
    try:
        return subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0
    except OSError:
        return False


def child(tool: str, python: str, inputs: Path, voxel: float, out: Path) -> dict:
    code = (
        f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.fusion import run_{tool}; "
        f"print('RESULT', json.dumps(run_{tool}({str(inputs)!r}, {voxel!r}, {str(out)!r})))"
    )
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--scene", choices=sorted(SCENES), default="room")
    parser.add_argument("--open3d-python", type=Path, default=OPEN3D_VENV / "bin" / "python")
    args = parser.parse_args()
    from engine.geometry.fusion import auto_voxel_size, fusion_weights

    o3d_python = ensure_open3d(args.open3d_python)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"scene {args.scene}, {WIDTH}x{HEIGHT}, 1 % depth noise + 1 % outliers"
    )
    header = f"{'views':>5} {'tool':<8} {'seconds':>8} {'s/view':>7} {'added MB':>9} {'faces':>9} {'Chamfer %':>10} {'F@1%':>7}"
    print(header + f" {'integrate s':>12}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="da3_fusion_bench_") as tmp:
        folder = Path(tmp)
        for n in args.views:
            inputs, truth, size = make_views(args.scene, n, folder)
            data = np.load(inputs)
            first = data["depth"][: min(n, 20)]
            ks = np.repeat(data["k"][None], len(first), 0)
            voxel = auto_voxel_size(first, ks, fusion_weights(first))
            for tool, python in (("ours", sys.executable), ("open3d", str(o3d_python))):
                out = folder / f"{tool}_{n}.npz"
                result = child(tool, python, inputs, voxel, out)
                mesh = np.load(out)
                if len(mesh["faces"]):
                    samples = surface_samples(mesh["vertices"], mesh["faces"], SAMPLES)
                    cd, f = chamfer_fscore(samples, truth, 0.01 * size)
                else:
                    cd, f = float("nan"), 0.0
                row = dict(result, views=n, tool=tool, voxel=voxel, chamfer_pct=100 * cd / size, fscore=f)
                rows.append(row)
                print(
                    f"{n:>5} {tool:<8} {result['seconds']:>8.2f} {result['seconds'] / n:>7.3f} "
                    f"{result['added_mb']:>9.0f} {result['faces']:>9} {row['chamfer_pct']:>10.3f} {f:>7.4f} "
                    f"{result['integrate_s']:>12.2f}",
                    flush=True,
                )
    print(
        f"voxel {rows[0]['voxel']:.4f} (auto; {100 * rows[0]['voxel'] / size:.2f} % of the scene); load now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
