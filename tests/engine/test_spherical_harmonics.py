"""Spherical harmonics in the 3DGS basis (issue 14's export rotates them): a rotated splat seen from the
rotated direction has the colour the original had, for every degree, and the rotation matrices behave
as rotations (orthogonal, composing)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.spherical_harmonics import eval_sh, rotate_sh, sh_basis, sh_rotation


def _rotation(rng: np.random.Generator) -> np.ndarray:
    w, x, y, z = (q := rng.normal(size=4)) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _directions(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_a_rotated_splat_seen_from_the_rotated_direction_looks_the_same(degree):
    rng = np.random.default_rng(degree)
    k = (degree + 1) ** 2
    sh = rng.normal(size=(50, 3, k))
    for _ in range(5):
        r = _rotation(rng)
        d = _directions(rng, 50)
        rotated = rotate_sh(sh, r)
        np.testing.assert_allclose(eval_sh(rotated, d @ r.T), eval_sh(sh, d), atol=1e-12)
        np.testing.assert_array_equal(rotated[..., 0], sh[..., 0])  # the view-independent colour stays
    assert rotate_sh(sh.astype(np.float32), np.eye(3)).dtype == np.float32


def test_the_rotation_blocks_are_rotations_that_compose():
    rng = np.random.default_rng(7)
    a, b = _rotation(rng), _rotation(rng)
    for block_a, block_b, block_ab in zip(sh_rotation(a), sh_rotation(b), sh_rotation(a @ b), strict=True):
        np.testing.assert_allclose(block_a @ block_a.T, np.eye(len(block_a)), atol=1e-12)
        np.testing.assert_allclose(block_a @ block_b, block_ab, atol=1e-12)
    np.testing.assert_allclose(sh_rotation(np.eye(3))[2], np.eye(7), atol=1e-12)


def test_degree_one_turns_like_the_vector_it_is():
    """The degree-1 basis is C1·(−y, z, −x): its coefficients turn with R in that axis order."""
    rng = np.random.default_rng(3)
    r = _rotation(rng)
    p = np.array([[0.0, -1, 0], [0, 0, 1], [-1, 0, 0]])  # (x, y, z) → (−y, z, −x)
    np.testing.assert_allclose(sh_rotation(r, 1)[0], p @ r @ p.T, atol=1e-12)
    np.testing.assert_allclose(sh_basis(np.array([0.0, 0.0, 1.0]), 1)[1:], [0, 0.4886025119029199, 0])


def test_a_set_that_is_no_sh_degree_is_refused():
    with pytest.raises(ValueError, match="not a degree 0-3 set"):
        rotate_sh(np.zeros((2, 3, 5)), np.eye(3))
