"""Unprojection: pixel centres, z-depth, world frame — checked against analytic ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.cameras import invert_extrinsics, project_points, quaternion_wxyz_to_matrix
from engine.geometry.unproject import (
    depth_to_camera_points,
    depth_to_world_points,
    pixel_rays,
    unproject_pixels,
)

H, W = 12, 16


def intrinsics(n: int = 1) -> np.ndarray:
    K = np.array([[20.0, 0.0, W / 2], [0.0, 22.0, H / 2], [0.0, 0.0, 1.0]])  # cx at W/2 like DA3
    return np.repeat(K[None], n, 0)


def look_at_w2c(center: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV camera at ``center`` looking at ``target`` with world −y roughly up in the image."""
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross([0.0, -1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])  # rows: camera axes in world
    return np.concatenate([rot, (-rot @ center)[:, None]], 1)


def test_centre_ray_goes_through_the_principal_point():
    rays = pixel_rays(intrinsics()[0], H, W)
    assert rays.shape == (H, W, 3)
    # cx = W/2 lies between pixels W/2-1 and W/2: their rays are symmetric about the axis
    np.testing.assert_allclose(rays[H // 2, W // 2 - 1, 0], -rays[H // 2, W // 2, 0])
    np.testing.assert_allclose(rays[H // 2 - 1, 0, 1], -rays[H // 2, 0, 1])
    np.testing.assert_allclose(rays[..., 2], 1.0)
    np.testing.assert_allclose(rays[0, 0, :2], [(0.5 - W / 2) / 20.0, (0.5 - H / 2) / 22.0])


def test_batched_rays_equal_single():
    K = intrinsics(3)
    K[1, 0, 0] = 30.0
    K[2, 0, 1] = 0.7  # skew is honoured too
    rays = pixel_rays(K, H, W)
    for i in range(3):
        np.testing.assert_allclose(rays[i], pixel_rays(K[i], H, W))


def test_camera_points_project_back_onto_pixel_centres():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (2, H, W)).astype(np.float32)
    K = intrinsics(2)
    pts = depth_to_camera_points(depth, K)
    assert pts.shape == (2, H, W, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts[..., 2], depth, rtol=1e-6)  # z-depth, not range
    uv, _ = project_points(K[1], np.eye(4)[:3], pts[1].astype(np.float64))
    v, u = np.mgrid[0:H, 0:W]
    np.testing.assert_allclose(uv[..., 0], u + 0.5, atol=1e-4)
    np.testing.assert_allclose(uv[..., 1], v + 0.5, atol=1e-4)


def test_world_points_of_a_known_plane_lie_on_it():
    """A camera looks at the ground plane y = 2 (OpenCV world, y down); depth from ray-plane intersection."""
    centers = np.array([[0.0, 0.0, 0.0], [1.0, -0.5, -1.0]])
    targets = np.array([[0.0, 2.0, 4.0], [0.5, 2.0, 3.0]])
    w2c = np.stack([look_at_w2c(c, t) for c, t in zip(centers, targets, strict=True)])
    K = intrinsics(2)
    depth = np.empty((2, H, W))
    for i in range(2):
        c2w = invert_extrinsics(w2c[i])
        rays_world = pixel_rays(K[i], H, W) @ c2w[:, :3].T  # direction with camera-z = 1
        depth[i] = (2.0 - centers[i, 1]) / rays_world[..., 1]
    assert np.all(depth > 0)
    pts = depth_to_world_points(depth, K, w2c, dtype=np.float64)
    np.testing.assert_allclose(pts[..., 1], 2.0, atol=1e-9)
    for i in range(2):  # and they reproject onto their own pixel centres with the same z-depth
        uv, z = project_points(K[i], w2c[i], pts[i])
        np.testing.assert_allclose(z, depth[i], rtol=1e-12)
        np.testing.assert_allclose(uv[0, 0], [0.5, 0.5], atol=1e-9)
        np.testing.assert_allclose(uv[-1, -1], [W - 0.5, H - 0.5], atol=1e-9)


def test_single_view_and_unproject_pixels_agree_with_the_dense_version():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 3, (H, W))
    K = intrinsics()[0]
    w2c = np.concatenate([quaternion_wxyz_to_matrix(rng.normal(size=4)), rng.normal(size=(3, 1))], 1)
    dense = depth_to_world_points(depth, K, w2c, dtype=np.float64)
    assert dense.shape == (H, W, 3)
    pix = np.array([[0, 0], [W - 1, 3], [5, H - 1]])  # (u, v)
    sparse = unproject_pixels(pix, depth[pix[:, 1], pix[:, 0]], K, w2c)
    np.testing.assert_allclose(sparse, dense[pix[:, 1], pix[:, 0]], atol=1e-12)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="do not match"):
        depth_to_world_points(np.ones((2, H, W)), intrinsics(3), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="intrinsics"):
        pixel_rays(np.eye(4), H, W)
