"""Point filtering: validity, confidence percentile, deterministic budget, vectorised gathering."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.cameras import project_points, quaternion_wxyz_to_matrix
from engine.geometry.filters import PointSet, confidence_threshold, gather_points, point_mask, subsample
from engine.geometry.unproject import depth_to_world_points

N, H, W = 3, 10, 14


def prediction(seed: int = 0):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1, 5, (N, H, W)).astype(np.float32)
    conf = rng.uniform(1, 10, (N, H, W)).astype(np.float32)
    images = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    K = np.repeat(np.array([[15.0, 0, W / 2], [0, 15.0, H / 2], [0, 0, 1]])[None], N, 0)
    rot = quaternion_wxyz_to_matrix(rng.normal(size=(N, 4)))
    ext = np.concatenate([rot, rng.normal(size=(N, 3, 1))], 2).astype(np.float32)
    return depth, conf, images, K, ext


def test_threshold_is_the_percentile_of_valid_finite_values():
    conf = np.arange(100, dtype=np.float32).reshape(10, 10)
    valid = conf >= 50
    assert confidence_threshold(conf, 40) == pytest.approx(np.percentile(np.arange(100), 40))
    assert confidence_threshold(conf, 40, valid) == pytest.approx(np.percentile(np.arange(50, 100), 40))
    conf[0, 0] = np.nan
    assert np.isfinite(confidence_threshold(conf, 50))
    assert confidence_threshold(conf, 0) == -np.inf
    with pytest.raises(ValueError, match="between 0 and 100"):
        confidence_threshold(conf, 140)


def test_mask_drops_invalid_sky_and_low_confidence():
    depth, conf, *_ = prediction()
    depth[0, 0, 0] = np.nan
    depth[0, 0, 1] = np.inf
    depth[0, 0, 2] = 0.0
    depth[0, 0, 3] = -1.0
    sky = np.zeros(depth.shape, bool)
    sky[1, :2] = True
    conf[2, 5, 5] = 1000.0  # very confident: kept
    conf[2, 5, 6] = 0.0  # hopeless: dropped
    mask = point_mask(depth, conf, conf_percentile=40, sky=sky)
    assert not mask[0, 0, :4].any()
    assert not mask[1, :2].any()
    assert mask[2, 5, 5] and not mask[2, 5, 6]
    valid = np.isfinite(depth) & (depth > 0) & ~sky
    assert mask.sum() == pytest.approx(0.6 * valid.sum(), abs=2)
    # without confidence every valid pixel stays
    np.testing.assert_array_equal(point_mask(depth, None, sky=sky), valid)


def test_subsample_is_deterministic_sorted_and_unique():
    a = subsample(1000, 100, seed=7)
    np.testing.assert_array_equal(a, subsample(1000, 100, seed=7))
    assert len(a) == 100 and len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, subsample(1000, 100, seed=8))
    np.testing.assert_array_equal(subsample(50, 100), np.arange(50))
    np.testing.assert_array_equal(subsample(50, None), np.arange(50))


def test_gathered_points_are_the_unprojected_pixels():
    depth, conf, images, K, ext = prediction()
    pts = gather_points(depth, K, ext, images, conf, budget=None, conf_percentile=0)
    assert isinstance(pts, PointSet) and len(pts) == N * H * W
    assert pts.xyz.dtype == np.float32 and pts.rgb.dtype == np.uint8 and pts.conf.dtype == np.float32
    assert pts.view.dtype == np.int32 and pts.pixel.dtype == np.int32
    dense = depth_to_world_points(depth, K, ext)
    v, u = pts.view, pts.pixel
    np.testing.assert_allclose(pts.xyz, dense[v, u[:, 1], u[:, 0]], atol=1e-5)
    np.testing.assert_array_equal(pts.rgb, images[v, u[:, 1], u[:, 0]])
    np.testing.assert_array_equal(pts.conf, conf[v, u[:, 1], u[:, 0]])
    # each point projects back onto the centre of its own pixel
    sel = v == 2
    uv, z = project_points(K[2], ext[2], pts.xyz[sel])
    np.testing.assert_allclose(uv, pts.pixel[sel] + 0.5, atol=1e-3)


def test_budget_confidence_and_determinism():
    depth, conf, images, K, ext = prediction(1)
    pts = gather_points(depth, K, ext, images, conf, budget=50, conf_percentile=40, seed=3)
    assert len(pts) == 50
    threshold = confidence_threshold(conf, 40)
    assert np.all(pts.conf >= threshold)
    again = gather_points(depth, K, ext, images, conf, budget=50, conf_percentile=40, seed=3)
    np.testing.assert_array_equal(pts.xyz, again.xyz)
    other = gather_points(depth, K, ext, images, conf, budget=50, conf_percentile=40, seed=4)
    assert not np.array_equal(pts.pixel, other.pixel)
    assert np.all(np.diff(pts.view) >= 0)  # ordered by view


def test_no_images_no_confidence():
    depth, _, _, K, ext = prediction(2)
    pts = gather_points(depth, K, ext, budget=10)
    assert len(pts) == 10
    np.testing.assert_array_equal(pts.conf, 1.0)
    assert np.all(pts.rgb == pts.rgb[0])


def test_bad_shapes_are_rejected():
    depth, conf, images, K, ext = prediction()
    with pytest.raises(ValueError, match="must match depth"):
        gather_points(depth, K[:2], ext)
    with pytest.raises(ValueError, match="images"):
        gather_points(depth, K, ext, images[:, :5])
    with pytest.raises(ValueError, match="confidence shape"):
        point_mask(depth, conf[:1])
