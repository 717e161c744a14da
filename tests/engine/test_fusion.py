"""Fusion against surfaces we know: analytic scenes ray cast from known cameras (``fusion_scenes``),
clean, with 1 % depth noise, and with 1 % outliers on top.

Accuracy is measured the way MVS benchmarks do: Chamfer distance (mean of the two mean nearest-point
distances) and F-score at 1 % of the scene's size, between 60k points spread over the fused mesh by
area and the exact surface points the cameras see. Thresholds, and why:

- F-score ≥ 0.99 in every case: at 1 % of the scene size (about 5 voxels at the automatic voxel size)
  a correct mesh has essentially every sample within reach; a wrong frame, a lost wall, floaters or
  a thin pole missed would each cost several percent.
- Chamfer ≤ 0.6 voxel (the automatic voxel is 0.4–0.6 % of these scenes): marching cubes places
  vertices within a fraction of a voxel of the averaged surface, and 1 % noise averaged over the
  views that see a surface stays below half a voxel; a shifted frame or a doubled wall would not.
- With noise or outliers the mesh must beat the raw per-view point cloud (the same depth unprojected,
  what a user gets without fusion) on both measures; on clean depth the cloud is exact by
  construction, so there the mesh only has to stay within the thresholds above.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.geometry.fusion import (
    BLOCK,
    FusionTooLarge,
    TSDFVolume,
    auto_voxel_size,
    decimate,
    fuse,
    fusion_weights,
)
from engine.geometry.unproject import depth_to_world_points
from tests.engine.fusion_scenes import (
    Scene,
    chamfer_fscore,
    corrupt,
    intrinsics,
    look_at,
    orbit_cameras,
    render_depth,
    room,
    room_cameras,
    sphere_on_plane,
    surface_samples,
    thin_structures,
)

H, W = 150, 200
SAMPLES = 60_000
CORRUPTIONS = {"clean": (0.0, 0.0), "noise 1%": (0.01, 0.0), "noise and outliers": (0.01, 0.01)}


SCENES = {
    "sphere on a plane": (sphere_on_plane, lambda n: orbit_cameras(n, 3.0, 1.8, (0, 0, 0.4))),
    "thin structures": (thin_structures, lambda n: orbit_cameras(n, 3.0, 2.2, (0, 0, 0.7))),
    "room": (room, room_cameras),
}


def _views(scene, cameras, h=H, w=W):
    k = intrinsics(w, h)
    depth, rgb = zip(*[render_depth(scene, e, k, h, w) for e in cameras], strict=True)
    return np.stack(depth), np.stack(rgb), np.repeat(k[None], len(cameras), 0)


@pytest.fixture(scope="module")
def rendered():
    out = {}
    for name, (make, cams) in SCENES.items():
        scene, cameras = make(), cams(20)
        depth, rgb, k = _views(scene, cameras)
        truth = depth_to_world_points(depth, k, cameras)[depth > 0]
        truth = truth[np.random.default_rng(1).choice(len(truth), SAMPLES, replace=False)]
        out[name] = (scene, cameras, depth, rgb, k, truth)
    return out


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
@pytest.mark.parametrize("scene_name", list(SCENES))
def test_the_fused_mesh_matches_the_true_surface_and_beats_the_raw_cloud(rendered, scene_name, corruption):
    scene, cameras, depth, rgb, k, truth = rendered[scene_name]
    noise, outliers = CORRUPTIONS[corruption]
    noisy = corrupt(depth, noise=noise, outliers=outliers, seed=3) if noise else depth
    mesh = fuse(noisy, cameras, k, colors=rgb)
    tau = 0.01 * scene.size
    mesh_cd, mesh_f = chamfer_fscore(surface_samples(mesh.vertices, mesh.faces, SAMPLES), truth, tau)
    cloud = depth_to_world_points(noisy, k, cameras)[noisy > 0]
    cloud = cloud[np.random.default_rng(2).choice(len(cloud), SAMPLES, replace=False)]
    cloud_cd, cloud_f = chamfer_fscore(cloud, truth, tau)
    print(
        f"\n{scene_name}, {corruption}: mesh Chamfer {100 * mesh_cd / scene.size:.3f} % F {mesh_f:.4f} "
        f"({mesh.num_faces} faces) | cloud Chamfer {100 * cloud_cd / scene.size:.3f} % F {cloud_f:.4f}"
    )
    assert mesh_f >= 0.99 and mesh_cd <= 0.6 * auto_voxel_size(noisy, k)
    if noise:
        assert mesh_cd < cloud_cd and mesh_f > cloud_f


def test_vertex_colours_come_from_the_surfaces_the_views_saw(rendered):
    scene, cameras, depth, rgb, k, _ = rendered["sphere on a plane"]
    mesh = fuse(depth, cameras, k, colors=rgb)
    v = mesh.vertices.astype(np.float64)
    upper = v[:, 2] > 0.7  # away from the contact ring, where sphere and plane voxels share colours
    on_sphere = (np.abs(np.linalg.norm(v - [0, 0, 0.6], axis=1) - 0.6) < 0.01) & upper
    on_plane = (np.abs(v[:, 2]) < 0.01) & (np.linalg.norm(v[:, :2], axis=1) > 0.8)
    assert on_sphere.sum() > 1000 and on_plane.sum() > 1000
    assert np.abs(np.median(mesh.colors[on_sphere], 0) - [200, 60, 40]).max() <= 3
    assert np.abs(np.median(mesh.colors[on_plane], 0) - [180, 170, 150]).max() <= 3


def test_triangles_face_the_cameras(rendered):
    scene, cameras, depth, rgb, k, _ = rendered["sphere on a plane"]
    mesh = fuse(depth, cameras, k)
    v = mesh.vertices.astype(np.float64)
    a, b, c = (v[mesh.faces[:, i]] for i in range(3))
    normals = np.cross(b - a, c - a)
    centres = (a + b + c) / 3
    top = centres[:, 2] > 1.1  # the top of the sphere: its normals point up
    assert (normals[top, 2] > 0).mean() > 0.99


def test_the_same_scene_in_other_units_gives_the_same_mesh_scaled(rendered):
    scene, cameras, depth, rgb, k, _ = rendered["thin structures"]
    base = fuse(depth, cameras, k)
    for scale in (0.01, 100.0):
        scaled = cameras.copy()
        scaled[:, :, 3] *= scale
        mesh = fuse(depth * np.float32(scale), scaled, k)
        assert abs(mesh.num_faces - base.num_faces) <= 0.01 * base.num_faces
        lo, hi = np.percentile(mesh.vertices, [1, 99], axis=0) / scale
        np.testing.assert_allclose([lo, hi], np.percentile(base.vertices, [1, 99], axis=0), atol=1e-3)


def test_memory_follows_the_surface_not_the_bounding_box():
    """Two identical objects 2 units apart and 2000 units apart allocate the same number of blocks."""
    k = intrinsics(W, H)

    def blocks(gap: float) -> int:
        spheres = (((0.0, 0.0, 0.0), 0.5, (200, 0, 0)), ((gap, 0.0, 0.0), 0.5, (0, 200, 0)))
        scene = Scene("two spheres", spheres=spheres)
        cams = []
        for centre in (0.0, gap):
            cams += [look_at((centre + 2 * np.cos(a), 2 * np.sin(a), 0.5), (centre, 0, 0)) for a in (0, 2, 4)]
        depth = np.stack([render_depth(scene, e, k, H, W)[0] for e in cams])
        volume = TSDFVolume(0.01)
        volume.integrate(depth, np.stack(cams), np.repeat(k[None], len(cams), 0), fusion_weights(depth))
        return volume.num_blocks

    near, far = blocks(2.0), blocks(2000.0)
    # Not exactly equal: when the spheres are 2 apart some views see both, and the pixel stride used
    # to find touched blocks follows each view's depth range, so a few band corners differ (~3 %).
    assert near == pytest.approx(far, rel=0.05)
    assert (
        near * BLOCK**3 < 0.05 * (2000 / 0.01) ** 2
    )  # a dense grid over the far pair would be astronomically larger


def test_views_added_in_batches_give_the_same_mesh_as_all_at_once(rendered):
    scene, cameras, depth, rgb, k, _ = rendered["room"]
    voxel = auto_voxel_size(depth, k)
    whole = TSDFVolume(voxel)
    whole.integrate(depth, cameras, k, fusion_weights(depth), rgb)
    parts = TSDFVolume(voxel)
    for s in range(0, len(depth), 7):
        sl = slice(s, s + 7)
        parts.integrate(depth[sl], cameras[sl], k[sl], fusion_weights(depth[sl]), rgb[sl])
    a, b = whole.extract(), parts.extract()
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-6)


def test_sky_low_confidence_and_isolated_pixels_are_left_out():
    rng = np.random.default_rng(0)
    depth = np.full((1, 20, 30), 2.0, np.float32)
    conf = rng.uniform(1, 10, depth.shape).astype(np.float32)
    sky = np.zeros(depth.shape, bool)
    sky[:, :5] = True
    depth[0, 10, 10] = 7.0  # an isolated outlier
    w = fusion_weights(depth, conf, sky)
    assert (w[sky] == 0).all() and w[0, 10, 10] == 0
    kept = ~sky
    kept[0, 10, 10] = False
    assert np.mean(w[kept] == 0) == pytest.approx(0.1, abs=0.02)  # the least confident 10 %
    assert np.corrcoef(w[w > 0], conf[w > 0])[0, 1] > 0.99  # weight grows with confidence


def test_decimation_keeps_the_shape_and_colours_within_the_face_budget(rendered):
    scene, cameras, depth, rgb, k, truth = rendered["sphere on a plane"]
    mesh = fuse(depth, cameras, k, colors=rgb)
    small = decimate(mesh, 5000)
    assert 4000 <= small.num_faces <= 5000 < mesh.num_faces
    _, f = chamfer_fscore(surface_samples(small.vertices, small.faces, SAMPLES), truth, 0.01 * scene.size)
    assert f > 0.97
    red = (np.linalg.norm(small.vertices - [0, 0, 0.6], axis=1) < 0.61) & (small.vertices[:, 2] > 0.7)
    assert np.abs(np.median(small.colors[red], 0) - [200, 60, 40]).max() <= 5


def test_a_voxel_too_small_for_the_scene_fails_with_advice(rendered):
    scene, cameras, depth, rgb, k, _ = rendered["room"]
    volume = TSDFVolume(auto_voxel_size(depth, k) / 8, max_blocks=1000)
    with pytest.raises(FusionTooLarge, match="lower the detail or give a larger voxel size"):
        volume.integrate(depth[:1], cameras[:1], k[:1], fusion_weights(depth[:1]))


def test_nothing_to_fuse_gives_an_empty_mesh():
    mesh = fuse(
        np.zeros((2, 10, 10), np.float32), orbit_cameras(2, 2, 1), np.repeat(intrinsics(10, 10)[None], 2, 0)
    )
    assert mesh.num_faces == 0 and mesh.num_vertices == 0


_PEAK_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tests.engine.fusion_scenes import intrinsics, orbit_cameras, render_depth, sphere_on_plane
    from engine.geometry.fusion import TSDFVolume, fusion_weights
    frames, chunk = int(sys.argv[1]), 25
    scene, k = sphere_on_plane(), intrinsics(160, 120)
    cams = orbit_cameras(frames, 3.0, 1.8, (0, 0, 0.4), turns=frames / 100)  # one turn per 100 frames
    volume = TSDFVolume(0.02)
    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(key))
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) to the current size: only the fusion's peak counts
    before = status("VmRSS:")
    for s in range(0, frames, chunk):  # a shot's parts, one at a time
        depth, rgb = map(np.stack, zip(*[render_depth(scene, e, k, 120, 160) for e in cams[s : s + chunk]]))
        volume.integrate(depth, cams[s : s + chunk], np.repeat(k[None], len(depth), 0), fusion_weights(depth), rgb)
    mesh = volume.extract()
    peak = status("VmHWM:")
    print(peak - before, peak, mesh.num_faces)
    """
)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peaks")
def test_a_400_frame_shot_fuses_in_the_memory_of_a_100_frame_shot(tmp_path):
    script = tmp_path / "peak.py"
    script.write_text(_PEAK_SCRIPT)
    root = Path(__file__).resolve().parents[2]

    def peak(frames: int) -> tuple[int, int, int]:
        out = subprocess.run(
            [sys.executable, str(script), str(frames)],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={"PYTHONPATH": str(root), "PATH": ""},
        )
        return tuple(int(x) for x in out.stdout.split())

    short_delta, short_peak, short_faces = peak(100)
    long_delta, long_peak, long_faces = peak(400)
    print(
        f"\npeak RSS: 100 frames {short_peak / 1024:.0f} MiB (+{short_delta / 1024:.0f} fusing), "
        f"400 frames {long_peak / 1024:.0f} MiB (+{long_delta / 1024:.0f})"
    )
    assert long_peak <= 1.10 * short_peak
    assert long_delta <= 1.10 * short_delta + 8 * 1024  # the fusion's own growth too (8 MiB of slack)
    assert long_faces == pytest.approx(short_faces, rel=0.05)
