"""Splats moved by an affine map: the covariances move as A Σ Aᵀ and the colour seen from a moved
viewpoint is the colour the original showed the original viewpoint (SH rotated, not dropped)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.formats.gaussians_ply import SplatTable
from engine.geometry.cameras import quaternion_wxyz_to_matrix
from engine.geometry.spherical_harmonics import eval_sh
from engine.geometry.splat_transform import is_identity, transform_splats


def table(m: int = 200, k: int = 16, seed: int = 0) -> SplatTable:
    rng = np.random.default_rng(seed)
    return SplatTable(
        means=rng.normal(size=(m, 3)).astype(np.float32),
        log_scales=rng.uniform(-4, -1, (m, 3)).astype(np.float32),
        quaternions=(rng.normal(size=(m, 4)) * rng.uniform(0.5, 3.0, (m, 1))).astype(np.float32),  # not unit
        sh=rng.normal(size=(m, 3, k)).astype(np.float32),
        opacity_logits=rng.normal(size=m).astype(np.float32),
    )


def covariances(t: SplatTable) -> np.ndarray:
    rot = quaternion_wxyz_to_matrix(t.quaternions)
    axes = rot * np.exp(t.log_scales.astype(np.float64))[:, None, :]
    return axes @ np.swapaxes(axes, 1, 2)


def rotation(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def affine(linear, shift=(0.3, -1.2, 2.0)) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = linear, shift
    return m


LINEARS = {
    "turn_and_uniform_scale": 2.5 * rotation((1, 2, -0.5), 1.1),
    "non_uniform_scale": rotation((0, 1, 1), 0.7) @ np.diag([2.0, 0.5, 1.3]),
    "mirror": rotation((1, 0, 0), 0.4) @ np.diag([-1.0, 1.0, 1.0]),
}


@pytest.mark.parametrize("name", sorted(LINEARS))
def test_shapes_positions_and_view_dependent_colour_follow_the_map(name):
    linear = LINEARS[name]
    original = table()
    moved = transform_splats(original, affine(linear))
    np.testing.assert_allclose(moved.means, original.means @ linear.T + (0.3, -1.2, 2.0), atol=1e-5)
    expected = linear @ covariances(original) @ linear.T
    np.testing.assert_allclose(covariances(moved), expected, rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(moved.opacity_logits, original.opacity_logits)
    # the colour a viewer sees along d from the original is seen along A d (normalised) after the move
    rng = np.random.default_rng(1)
    dirs = rng.normal(size=(len(original), 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    u, _, vt = np.linalg.svd(linear)
    moved_dirs = dirs @ (u @ vt).T
    np.testing.assert_allclose(eval_sh(moved.sh, moved_dirs), eval_sh(original.sh, dirs), atol=1e-4)


def test_turn_and_scale_keep_the_stored_quaternion_length():
    original = table()
    moved = transform_splats(original, affine(LINEARS["turn_and_uniform_scale"]))
    np.testing.assert_allclose(
        np.linalg.norm(moved.quaternions, axis=1), np.linalg.norm(original.quaternions, axis=1), rtol=1e-5
    )
    np.testing.assert_allclose(moved.log_scales, original.log_scales + np.log(2.5), atol=1e-5)


def test_there_and_back_gives_the_original_splats():
    original = table()
    there = affine(LINEARS["turn_and_uniform_scale"])
    back = transform_splats(transform_splats(original, there), np.linalg.inv(there))
    np.testing.assert_allclose(back.means, original.means, atol=1e-5)
    np.testing.assert_allclose(covariances(back), covariances(original), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(back.sh, original.sh, atol=1e-4)


def test_degree_zero_and_degenerate_maps():
    original = table(k=1)
    moved = transform_splats(original, affine(LINEARS["non_uniform_scale"]))
    np.testing.assert_array_equal(moved.sh, original.sh)
    with pytest.raises(ValueError, match="flattens"):
        transform_splats(original, affine(np.diag([1.0, 0.0, 1.0])))
    assert is_identity(np.eye(4, dtype=np.float32))
    assert not is_identity(affine(np.eye(3)))
