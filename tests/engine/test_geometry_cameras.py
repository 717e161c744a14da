"""Camera matrix helpers: rigid inverse, centres, quaternions for every kind of rotation."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.cameras import (
    camera_centers,
    invert_extrinsics,
    matrix_to_quaternion_wxyz,
    project_points,
    quaternion_wxyz_to_matrix,
    to_homogeneous,
    transform_points,
)


def random_rotations(n: int, seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=(n, 4))
    return quaternion_wxyz_to_matrix(q)


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula, an independent reference."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def random_extrinsics(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([random_rotations(n, seed), rng.normal(size=(n, 3, 1)) * 3], axis=2)


def test_invert_extrinsics_is_the_rigid_inverse():
    w2c = random_extrinsics(7)
    c2w = invert_extrinsics(w2c)
    prod = to_homogeneous(c2w) @ to_homogeneous(w2c)
    np.testing.assert_allclose(prod, np.broadcast_to(np.eye(4), prod.shape), atol=1e-12)
    np.testing.assert_allclose(invert_extrinsics(c2w), w2c, atol=1e-12)


def test_camera_centre_maps_to_the_camera_origin():
    w2c = random_extrinsics(5, seed=3)
    centres = camera_centers(w2c)
    assert centres.shape == (5, 3)
    for i in range(5):
        np.testing.assert_allclose(transform_points(w2c[i], centres[i]), 0.0, atol=1e-12)
    np.testing.assert_allclose(centres, invert_extrinsics(w2c)[:, :, 3], atol=1e-12)


def test_to_homogeneous_adds_the_last_row():
    w2c = random_extrinsics(2)
    h = to_homogeneous(w2c)
    assert h.shape == (2, 4, 4)
    np.testing.assert_array_equal(h[:, 3], [[0, 0, 0, 1]] * 2)
    np.testing.assert_array_equal(h[:, :3], w2c)
    with pytest.raises(ValueError):
        to_homogeneous(np.zeros((3, 3)))


def test_quaternion_round_trip_for_random_rotations():
    rot = random_rotations(500, seed=1)
    q = matrix_to_quaternion_wxyz(rot)
    assert q.shape == (500, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    assert np.all(q[:, 0] >= 0)
    np.testing.assert_allclose(quaternion_wxyz_to_matrix(q), rot, atol=1e-12)


@pytest.mark.parametrize(
    "axis",
    [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -2, 3), (0, -1, 1)],
)
@pytest.mark.parametrize("angle", [0.0, 1e-9, 0.3, np.pi / 2, np.pi - 1e-7, np.pi])
def test_quaternion_matches_axis_angle_including_half_turns(axis, angle):
    rot = axis_angle_matrix(np.array(axis), angle)
    q = matrix_to_quaternion_wxyz(rot)
    k = np.array(axis, float) / np.linalg.norm(axis)
    expected = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * k])
    # q and −q are the same rotation; at exactly 180° w = 0 and either sign is right
    assert min(np.abs(q - expected).max(), np.abs(q + expected).max()) < 1e-9
    if expected[0] > 1e-6:
        np.testing.assert_allclose(q, expected, atol=1e-9)
    np.testing.assert_allclose(quaternion_wxyz_to_matrix(q), rot, atol=1e-12)


def test_quaternion_matches_colmap_convention():
    """COLMAP/Eigen: q = (w, x, y, z) with R = the usual Hamilton matrix; 90° about z turns x into y."""
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    np.testing.assert_allclose(quaternion_wxyz_to_matrix(q) @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_zero_quaternion_is_identity_not_nan():
    np.testing.assert_array_equal(quaternion_wxyz_to_matrix(np.zeros(4)), np.eye(3))


def test_project_points_uses_pixel_centres():
    K = np.array([[100.0, 0, 32], [0, 110, 24], [0, 0, 1]])
    w2c = np.eye(4)[:3]
    uv, z = project_points(K, w2c, np.array([[0.0, 0.0, 5.0], [1.0, -1.0, 2.0]]))
    np.testing.assert_allclose(uv[0], [32, 24])
    np.testing.assert_allclose(uv[1], [32 + 50, 24 - 55])
    np.testing.assert_allclose(z, [5, 2])
