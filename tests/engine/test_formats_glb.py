"""GLB quick-look scene: trimesh reads back the points, their colours and the camera frustums."""

from __future__ import annotations

import numpy as np
import trimesh

from engine.formats.glb import OPENCV_TO_GLTF, frustum_segments, write_scene_glb
from engine.geometry.cameras import camera_centers, project_points, quaternion_wxyz_to_matrix


def test_points_colours_and_frustums_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    xyz = (rng.normal(size=(1234, 3)) + [0, 0, 6]).astype(np.float32)
    rgb = rng.integers(0, 256, (1234, 3), dtype=np.uint8)
    ext = np.repeat(np.eye(4)[None, :3], 3, 0)
    ext[:, 0, 3] = [0.0, -1.0, -2.0]
    K = np.repeat(np.array([[50.0, 0, 32], [0, 50, 24], [0, 0, 1]])[None], 3, 0)
    path = write_scene_glb(tmp_path / "scene.glb", xyz, rgb, ext, K, (48, 64))
    scene = trimesh.load(path)
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    paths = [g for g in scene.geometry.values() if isinstance(g, trimesh.path.Path3D)]
    assert len(clouds) == 1 and len(paths) == 1
    cloud = clouds[0]
    assert len(cloud.vertices) == 1234
    np.testing.assert_array_equal(cloud.colors[:, :3], rgb)
    # glTF is y-up: OpenCV (x, y, z) becomes (x, -y, -z); the points in front of the camera get z < 0
    np.testing.assert_allclose(cloud.vertices, xyz * [1, -1, -1], atol=1e-5)
    assert np.all(cloud.vertices[:, 2] < 0)
    assert len(paths[0].vertices) == 3 * 8 * 2  # 8 segments per camera
    # frustums at 5 % of the cloud's 5-95 % extent, in the same flipped axes
    lo, hi = np.percentile(xyz.astype(np.float64), [5, 95], axis=0)
    expected = (
        frustum_segments(ext, K, (48, 64), 0.05 * np.linalg.norm(hi - lo)).reshape(-1, 3) @ OPENCV_TO_GLTF
    )
    got = paths[0].vertices
    np.testing.assert_allclose(got[np.lexsort(got.T)], expected[np.lexsort(expected.T)], atol=1e-5)
    np.testing.assert_allclose(got[:, 0].min(), -32 / 50 * 0.05 * np.linalg.norm(hi - lo), rtol=1e-4)


def test_frustum_corners_project_onto_the_image_corners():
    rng = np.random.default_rng(1)
    ext = np.concatenate([quaternion_wxyz_to_matrix(rng.normal(size=(2, 4))), rng.normal(size=(2, 3, 1))], 2)
    K = np.repeat(np.array([[40.0, 0, 30], [0, 45, 20], [0, 0, 1]])[None], 2, 0)
    segs = frustum_segments(ext, K, (40, 60), depth=0.5)
    assert segs.shape == (2, 8, 2, 3)
    for i in range(2):
        np.testing.assert_allclose(segs[i, :4, 0], np.repeat(camera_centers(ext)[i][None], 4, 0), atol=1e-12)
        uv, z = project_points(K[i], ext[i], segs[i, :4, 1])
        np.testing.assert_allclose(uv, [[0, 0], [60, 0], [60, 40], [0, 40]], atol=1e-9)
        np.testing.assert_allclose(z, 0.5)
    assert np.allclose(OPENCV_TO_GLTF, np.diag([1, -1, -1]))


def test_cameras_only(tmp_path):
    ext = np.eye(4)[None, :3]
    K = np.array([[[10.0, 0, 5], [0, 10, 5], [0, 0, 1]]])
    scene = trimesh.load(write_scene_glb(tmp_path / "c.glb", np.zeros((0, 3)), None, ext, K, (10, 10)))
    assert [type(g) for g in scene.geometry.values()] == [trimesh.path.Path3D]
