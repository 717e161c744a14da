"""Camera animation helpers: quaternion signs, Euler unwrapping, one focal length, ATE."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.cameras import quaternion_wxyz_to_matrix
from engine.geometry.sim3 import Sim3
from engine.geometry.trajectory import (
    absolute_trajectory_error,
    euler_filter,
    euler_xyz_to_matrix,
    matrix_to_euler_xyz,
    path_length,
    quaternions_with_continuity,
    robust_focal,
    weighted_median,
)
from tests.engine import synthetic_shot as shot


def spinning_path(n: int = 200, turns: float = 2.5) -> np.ndarray:
    """A camera panning ``turns`` full turns about world Z while tilting a little, (n, 3, 3)."""
    t = np.linspace(0, 1, n)
    pan = 2 * np.pi * turns * t
    tilt = np.radians(80 + 10 * np.sin(2 * np.pi * t))
    return euler_xyz_to_matrix(np.stack([tilt, 0.2 * np.sin(6 * t), pan], -1))


def test_quaternions_never_flip_sign_between_frames():
    rots = spinning_path()
    q = quaternions_with_continuity(rots)
    assert np.all(np.einsum("ij,ij->i", q[1:], q[:-1]) > 0)
    np.testing.assert_allclose(quaternion_wxyz_to_matrix(q), rots, atol=1e-12)
    # the plain conversion (w ≥ 0) does flip on this path: the fix is needed
    from engine.geometry.cameras import matrix_to_quaternion_wxyz

    plain = matrix_to_quaternion_wxyz(rots)
    assert np.any(np.einsum("ij,ij->i", plain[1:], plain[:-1]) < 0)


def test_quaternions_of_one_frame_and_bad_shapes():
    assert quaternions_with_continuity(np.eye(3)[None]).shape == (1, 4)
    with pytest.raises(ValueError):
        quaternions_with_continuity(np.eye(4)[None])


def test_euler_angles_round_trip_in_blenders_xyz_order():
    rng = np.random.default_rng(0)
    rots = quaternion_wxyz_to_matrix(rng.normal(size=(50, 4)))
    np.testing.assert_allclose(euler_xyz_to_matrix(matrix_to_euler_xyz(rots)), rots, atol=1e-12)
    # XYZ means X first: a pure X turn followed by a pure Z turn
    e = np.array([0.3, 0.0, 1.1])
    rz = euler_xyz_to_matrix([0, 0, 1.1])
    rx = euler_xyz_to_matrix([0.3, 0, 0])
    np.testing.assert_allclose(euler_xyz_to_matrix(e), rz @ rx, atol=1e-15)


def test_euler_filter_removes_the_360_degree_jumps_of_a_long_pan():
    rots = spinning_path()
    raw = matrix_to_euler_xyz(rots)
    assert np.abs(np.diff(raw, axis=0)).max() > np.pi  # the pan wraps at ±180°
    smooth = euler_filter(raw)
    assert np.abs(np.diff(smooth, axis=0)).max() < 0.2
    assert smooth[-1, 2] - smooth[0, 2] == pytest.approx(2 * np.pi * 2.5, abs=1e-6)  # 2.5 turns, unrolled
    np.testing.assert_allclose(euler_xyz_to_matrix(smooth), rots, atol=1e-12)  # same rotations
    np.testing.assert_array_equal(smooth[0], raw[0])


def test_robust_focal_ignores_outlier_frames_and_reports_the_jitter():
    rng = np.random.default_rng(1)
    f = 1500 + rng.normal(scale=4.0, size=400)
    wild = rng.choice(400, 40, replace=False)
    f[wild] = rng.uniform(1600, 3000, 40)  # 10 % wild frames, all too long
    value, spread = robust_focal(f)
    assert value == pytest.approx(1500, abs=2.0)
    assert spread == pytest.approx(4.0, rel=0.3)
    assert np.mean(f) > 1560  # what a plain average would have given
    # weights (e.g. the frames' confidence) can silence frames entirely
    w = np.ones(400)
    w[wild] = 0
    value_w, spread_w = robust_focal(f, w)
    assert value_w == pytest.approx(1500, abs=1.0) and spread_w == pytest.approx(4.0, rel=0.2)
    assert spread_w < spread  # the wild frames widened the spread a little


def test_robust_focal_rejects_empty_input():
    with pytest.raises(ValueError, match="no valid per-frame focal"):
        robust_focal([np.nan, -1.0])
    assert np.isnan(weighted_median([]))


def test_ate_is_zero_for_a_similar_path_and_measures_noise():
    centers = shot.render(80).centers
    sim = Sim3(2.5, quaternion_wxyz_to_matrix([0.3, 0.1, -0.7, 0.2]), [4.0, -1.0, 3.0])
    est = sim.inverse().apply(centers)
    ate, aligned = absolute_trajectory_error(est, centers)
    assert ate < 1e-12
    np.testing.assert_allclose(aligned, centers, atol=1e-12)
    rng = np.random.default_rng(2)
    noisy = est + rng.normal(scale=0.01 / sim.s, size=est.shape)  # 1 cm noise in true units
    ate, _ = absolute_trajectory_error(noisy, centers)
    assert ate == pytest.approx(0.01 * np.sqrt(3), rel=0.2)
    assert path_length(centers) > 6.0  # the synthetic dolly is about 6.5 m


def test_ate_needs_matching_inputs():
    with pytest.raises(ValueError, match="same non-zero number"):
        absolute_trajectory_error(np.zeros((3, 3)), np.zeros((4, 3)))
