"""Sim(3): exact recovery, weights, noise, outliers, and the never-failing camera-centre fallback."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.cameras import project_points, quaternion_wxyz_to_matrix
from engine.geometry.sim3 import DegenerateAlignment, Sim3, align_centers, robust_sim3, umeyama


def random_sim3(rng) -> Sim3:
    return Sim3(
        float(np.exp(rng.uniform(-2, 2))),
        quaternion_wxyz_to_matrix(rng.normal(size=4)),
        rng.normal(size=3) * 5,
    )


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1)))


def assert_same(a: Sim3, b: Sim3, tol: float = 1e-9) -> None:
    assert a.s == pytest.approx(b.s, rel=tol)
    np.testing.assert_allclose(a.R, b.R, atol=tol)
    np.testing.assert_allclose(a.t, b.t, atol=tol * max(1.0, np.abs(b.t).max()))


@pytest.mark.parametrize("seed", range(6))
def test_umeyama_recovers_a_random_similarity_exactly(seed):
    rng = np.random.default_rng(seed)
    truth = random_sim3(rng)
    src = rng.normal(size=(20, 3)) * rng.uniform(0.1, 10)
    est = umeyama(src, truth.apply(src))
    assert_same(est, truth, 1e-8)
    assert np.linalg.det(est.R) == pytest.approx(1.0)


def test_planar_points_and_three_points_give_a_rotation_not_a_reflection():
    rng = np.random.default_rng(1)
    truth = random_sim3(rng)
    src = np.c_[rng.normal(size=(10, 2)), np.zeros(10)]  # on a plane: the SVD's 3rd axis is ambiguous
    assert_same(umeyama(src, truth.apply(src)), truth, 1e-8)
    tri = np.array([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]])
    assert_same(umeyama(tri, truth.apply(tri)), truth, 1e-8)


def test_without_scale_fits_a_rigid_transform():
    rng = np.random.default_rng(2)
    truth = Sim3(1.0, quaternion_wxyz_to_matrix(rng.normal(size=4)), rng.normal(size=3))
    src = rng.normal(size=(15, 3))
    est = umeyama(src, truth.apply(src), with_scale=False)
    assert est.s == 1.0
    assert_same(est, truth, 1e-9)


def test_weights_ignore_zero_weight_pairs_and_act_like_repeats():
    rng = np.random.default_rng(3)
    truth = random_sim3(rng)
    src = rng.normal(size=(30, 3))
    dst = truth.apply(src)
    dst[:5] += 100.0  # garbage, but weight 0
    w = np.ones(30)
    w[:5] = 0
    assert_same(umeyama(src, dst, w), truth, 1e-8)
    # integer weights are the same as repeating the pairs
    noisy = truth.apply(src) + rng.normal(size=src.shape) * 0.05
    counts = rng.integers(1, 4, 30)
    a = umeyama(src, noisy, counts.astype(float))
    b = umeyama(np.repeat(src, counts, 0), np.repeat(noisy, counts, 0))
    assert_same(a, b, 1e-9)


def test_noise_gives_a_close_estimate():
    rng = np.random.default_rng(4)
    truth = Sim3(2.0, quaternion_wxyz_to_matrix(rng.normal(size=4)), [1.0, 2.0, 3.0])
    src = rng.normal(size=(500, 3)) * 3
    dst = truth.apply(src) + rng.normal(size=src.shape) * 0.01
    est = umeyama(src, dst)
    assert est.s == pytest.approx(2.0, rel=1e-3)
    assert rotation_angle(est.R, truth.R) < 1e-3


@pytest.mark.parametrize("seed", range(3))
def test_robust_beats_plain_with_outliers(seed):
    rng = np.random.default_rng(seed)
    truth = random_sim3(rng)
    src = rng.normal(size=(400, 3)) * 2
    dst = truth.apply(src) + rng.normal(size=src.shape) * 0.01 * truth.s
    bad = rng.choice(400, 60, replace=False)  # 15 % gross outliers
    dst[bad] += rng.normal(size=(60, 3)) * 5 * truth.s
    plain = umeyama(src, dst)
    robust, residuals = robust_sim3(src, dst, delta=0.1 * truth.s)
    assert residuals.shape == (400,)
    assert abs(np.log(robust.s / truth.s)) < 0.5 * abs(np.log(plain.s / truth.s))
    assert rotation_angle(robust.R, truth.R) < 0.5 * rotation_angle(plain.R, truth.R)
    inliers = np.setdiff1d(np.arange(400), bad)
    assert np.median(residuals[inliers]) < np.median(residuals[bad])
    np.testing.assert_allclose(residuals, np.linalg.norm(dst - robust.apply(src), axis=1))


def test_robust_on_clean_data_recovers_the_truth_and_skips_nan_pairs():
    rng = np.random.default_rng(9)
    truth = random_sim3(rng)
    src = rng.normal(size=(50, 3))
    dst = truth.apply(src)
    src[0] = np.nan
    est, res = robust_sim3(src, dst, weights=rng.uniform(0.5, 2.0, 50))
    assert_same(est, truth, 1e-7)
    assert np.isnan(res[0]) and np.all(res[1:] < 1e-6 * truth.s)


@pytest.mark.parametrize(
    "src",
    [
        np.zeros((0, 3)),
        np.array([[0.0, 0, 0], [1, 1, 1]]),
        np.array([[1.0, 2, 3]] * 5),
        np.outer(np.arange(6.0), [1, 2, -1]),  # collinear
    ],
)
def test_degenerate_input_raises_a_clear_error(src):
    dst = src * 2 + 1
    with pytest.raises(DegenerateAlignment):
        umeyama(src, dst)
    assert issubclass(DegenerateAlignment, ValueError)


def test_align_centers_never_fails_zero_and_one_point():
    assert_same(align_centers(np.zeros((0, 3)), np.zeros((0, 3))), Sim3())
    one = align_centers([[1.0, 2.0, 3.0]], [[4.0, 4.0, 4.0]])
    assert one.s == 1.0
    np.testing.assert_array_equal(one.R, np.eye(3))
    np.testing.assert_allclose(one.apply([1.0, 2.0, 3.0]), [4.0, 4.0, 4.0])
    # every source centre in one spot: a translation onto the target mean
    same = align_centers(np.ones((3, 3)), np.random.default_rng(0).normal(size=(3, 3)))
    assert same.s == 1.0 and np.allclose(same.R, np.eye(3))


def test_align_centers_two_points_maps_both_with_the_smallest_rotation():
    src = np.array([[0.0, 0, 0], [1, 0, 0]])
    dst = np.array([[5.0, 5, 5], [5, 8, 5]])  # x-axis of length 1 → y-axis of length 3
    sim = align_centers(src, dst)
    np.testing.assert_allclose(sim.apply(src), dst, atol=1e-12)
    assert sim.s == pytest.approx(3.0)
    assert rotation_angle(sim.R, np.eye(3)) == pytest.approx(np.pi / 2)  # no roll about the line added
    np.testing.assert_allclose(sim.R @ [0, 0, 1], [0, 0, 1], atol=1e-12)  # the common normal is kept


def test_align_centers_antiparallel_and_collinear_dolly():
    src = np.outer(np.linspace(0, 4, 5), [1.0, 0, 0])  # a dolly move along x
    dst = np.outer(np.linspace(0, -8, 5), [1.0, 0, 0]) + [0, 1, 0]  # reversed, doubled
    sim = align_centers(src, dst)
    np.testing.assert_allclose(sim.apply(src), dst, atol=1e-9)
    assert sim.s == pytest.approx(2.0)
    assert np.linalg.det(sim.R) == pytest.approx(1.0)


def test_align_centers_uses_umeyama_when_well_defined():
    rng = np.random.default_rng(5)
    truth = random_sim3(rng)
    src = rng.normal(size=(8, 3))
    assert_same(align_centers(src, truth.apply(src)), truth, 1e-8)
    # targets all in one spot: no zero scale, just a translation
    flat = align_centers(src, np.zeros((8, 3)))
    assert flat.s == 1.0 and np.all(np.isfinite(flat.t))


def test_sim3_algebra():
    rng = np.random.default_rng(6)
    a, b = random_sim3(rng), random_sim3(rng)
    x = rng.normal(size=(10, 3))
    np.testing.assert_allclose(a.compose(b).apply(x), a.apply(b.apply(x)), atol=1e-9)
    np.testing.assert_allclose(a.inverse().apply(a.apply(x)), x, atol=1e-9)
    m = a.matrix()
    np.testing.assert_allclose((np.c_[x, np.ones(10)] @ m.T)[:, :3], a.apply(x), atol=1e-9)
    assert_same(Sim3.from_matrix(m), a, 1e-9)
    with pytest.raises(ValueError):
        a.R[0, 0] = 2.0  # frozen, also the arrays


def test_transform_extrinsics_keeps_what_every_camera_sees():
    """After a world change the new cameras see the moved points at the same pixels, depth × s."""
    rng = np.random.default_rng(7)
    sim = random_sim3(rng)
    K = np.array([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]])
    w2c = np.concatenate([quaternion_wxyz_to_matrix(rng.normal(size=(4, 4))), rng.normal(size=(4, 3, 1))], 2)
    new = sim.transform_extrinsics(w2c)
    assert new.shape == w2c.shape
    pts = rng.normal(size=(20, 3)) * 3
    for i in range(4):
        uv, z = project_points(K, w2c[i], pts)
        uv2, z2 = project_points(K, new[i], sim.apply(pts))
        np.testing.assert_allclose(uv2, uv, atol=1e-7)
        np.testing.assert_allclose(z2, sim.scale_depth(z), rtol=1e-10)
        np.testing.assert_allclose(new[i, :, :3] @ new[i, :, :3].T, np.eye(3), atol=1e-12)  # still rigid
    centres = -np.einsum("nji,nj->ni", w2c[:, :, :3], w2c[:, :, 3])
    new_centres = -np.einsum("nji,nj->ni", new[:, :, :3], new[:, :, 3])
    np.testing.assert_allclose(new_centres, sim.apply(centres), atol=1e-9)


def test_rms_scale_option_reproduces_da3_streaming_on_clean_data():
    rng = np.random.default_rng(8)
    truth = random_sim3(rng)
    src = rng.normal(size=(40, 3))
    est, _ = robust_sim3(src, truth.apply(src), scale_method="rms")
    assert_same(est, truth, 1e-7)
    with pytest.raises(ValueError, match="scale_method"):
        robust_sim3(src, truth.apply(src), scale_method="median")
