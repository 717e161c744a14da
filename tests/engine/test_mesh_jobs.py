"""The ``mesh`` export end to end: a still job and a shot job write mesh.ply (read back by plyfile and
trimesh), the glb carries the mesh, the fuse stage reports progress, and a cancel while fusing keeps
the earlier result. The tiny random checkpoint gives arbitrary depth, so these tests check that the
mesh is made from the job's own depth and cameras, not its beauty (``test_fusion`` measures that)."""

from __future__ import annotations

import numpy as np
import plyfile
import pytest
import trimesh

from engine import jobs
from engine.errors import JobCancelled
from engine.formats.bundle import is_complete, read_bundle
from engine.formats.mesh_ply import read_mesh_ply
from engine.geometry.fusion import auto_voxel_size
from tests.engine.media import make_test_images, write_test_video
from tests.engine.test_jobs import RecordingContext, request, save_images


def _distance_to_depth(b, vertices: np.ndarray) -> np.ndarray:
    """For each vertex, the smallest |depth map − z| over the views it projects into, relative to z."""
    best = np.full(len(vertices), np.inf)
    v = vertices.astype(np.float64)
    for i in range(b.num_views):
        cam = v @ b.extrinsics[i, :, :3].T + b.extrinsics[i, :, 3]
        uvw = cam @ b.intrinsics[i].T
        z = cam[:, 2]
        front = z > 1e-9
        u = np.floor(uvw[:, 0] / np.where(front, z, 1)).astype(int)
        r = np.floor(uvw[:, 1] / np.where(front, z, 1)).astype(int)
        h, w = b.depth.shape[1:]
        inside = front & (u >= 0) & (u < w) & (r >= 0) & (r < h)
        d = np.full(len(v), np.inf)
        d[inside] = np.abs(b.depth[i, r[inside], u[inside]] - z[inside]) / z[inside]
        best = np.minimum(best, d)
    return best


def test_a_still_job_writes_a_mesh_fused_from_its_own_depth(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 3)
    context = RecordingContext()
    out = tmp_path / "out"
    jobs.run_job(request([tmp_path / "in"], out, small_checkpoint, exports=("mesh", "glb")), context)
    b = read_bundle(out)
    assert "fuse" in context.stages() and context.stages().index("fuse") < context.stages().index("export")
    fuse_events = [e for e in context.events if e[0] == "progress" and e[1] == "fuse"]
    assert fuse_events[-1][2] == fuse_events[-1][3] == b.num_views + 1

    ply = plyfile.PlyData.read(str(out / "mesh.ply"))
    assert [p.name for p in ply["vertex"].properties] == ["x", "y", "z", "red", "green", "blue"]
    mesh = read_mesh_ply(out / "mesh.ply")
    assert mesh.num_faces > 100 and ply["face"].count == mesh.num_faces
    loaded = trimesh.load(out / "mesh.ply", process=False)
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)

    # every vertex lies on some view's depth map: within the truncation band, most within a voxel
    voxel = auto_voxel_size(b.depth, b.intrinsics)
    gap = _distance_to_depth(b, mesh.vertices)
    assert np.median(gap) < 0.02 and (gap < 4 * voxel / np.median(b.depth)).mean() > 0.95

    scene = trimesh.load(out / "scene.glb")
    surfaces = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh)]
    assert len(surfaces) == 1 and len(surfaces[0].faces) == mesh.num_faces
    np.testing.assert_allclose(surfaces[0].vertices, mesh.vertices * [1, -1, -1], atol=1e-4)


def test_the_face_budget_and_voxel_size_options_are_honoured(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 2)
    free = tmp_path / "free"
    jobs.run_job(request([tmp_path / "in"], free, small_checkpoint, exports=("mesh",)), RecordingContext())
    full = read_mesh_ply(free / "mesh.ply")
    budget = max(100, full.num_faces // 4)
    out = tmp_path / "budget"
    jobs.run_job(
        request([tmp_path / "in"], out, small_checkpoint, exports=("mesh",), mesh_max_faces=budget),
        RecordingContext(),
    )
    assert read_mesh_ply(out / "mesh.ply").num_faces <= budget
    coarse = tmp_path / "coarse"
    voxel = 4 * auto_voxel_size(read_bundle(free).depth, read_bundle(free).intrinsics)
    jobs.run_job(
        request([tmp_path / "in"], coarse, small_checkpoint, exports=("mesh",), mesh_voxel_size=voxel),
        RecordingContext(),
    )
    assert read_mesh_ply(coarse / "mesh.ply").num_faces < full.num_faces / 4


def test_cancel_while_fusing_keeps_the_old_bundle(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 3)
    jobs.run_job(request([tmp_path / "in"], tmp_path / "out", small_checkpoint), RecordingContext())
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    context = RecordingContext(cancel_at=("fuse", 1))
    with pytest.raises(JobCancelled):
        jobs.run_job(
            request([tmp_path / "in"], tmp_path / "out", small_checkpoint, exports=("mesh",)), context
        )
    assert is_complete(tmp_path / "out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_a_shot_fuses_its_joined_frames_into_a_mesh_in_its_world(small_checkpoint, tmp_path):
    video = write_test_video(tmp_path / "shot.mkv", make_test_images(16, 96, 128), fps=24)
    out = tmp_path / "out"
    context = RecordingContext()
    jobs.run_job(
        request([video], out, small_checkpoint, chunk_size=8, chunk_overlap=3, exports=("mesh", "points")),
        context,
    )
    b = read_bundle(out)
    assert b.depth is None and b.num_views == 16  # a shot keeps no depth: the mesh came from its parts
    fuse_events = [e for e in context.events if e[0] == "progress" and e[1] == "fuse"]
    assert fuse_events[-1][2:] == (17, 17)
    mesh = read_mesh_ply(out / "mesh.ply")
    assert mesh.num_faces > 100
    # the mesh lies where the shot's points are (same world, same units)
    points = read_mesh_ply(out / "points.ply").vertices
    from scipy.spatial import cKDTree

    extent = np.linalg.norm(np.subtract(*np.percentile(points, [95, 5], axis=0)))
    gap = cKDTree(points).query(mesh.vertices)[0] / extent
    print(f"mesh to shot points: median {np.median(gap):.4f}, 90th percentile {np.percentile(gap, 90):.4f}")
    assert np.median(gap) < 0.02 and np.percentile(gap, 90) < 0.1
