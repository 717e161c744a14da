"""Depth and confidence previews: PNGs of the right size, near/confident pixels brighter."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.formats.previews import colorize, write_confidence_preview, write_depth_preview


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(float) @ [0.299, 0.587, 0.114]


def test_depth_preview_near_is_brighter_and_invalid_is_black(tmp_path):
    h, w = 30, 40
    depth = np.tile(np.linspace(1.0, 20.0, w), (h, 1)).astype(np.float32)  # near on the left
    depth[0, 0] = np.nan
    depth[0, 1] = 0.0
    valid = np.ones((h, w), bool)
    valid[-1, -1] = False
    path = write_depth_preview(tmp_path / "depth.png", depth, valid)
    img = np.asarray(Image.open(path))
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    lum = luminance(img)
    assert lum[10, 2] > lum[10, w // 2] > lum[10, -2]
    assert np.all(np.diff(lum[10, 2:-2]) <= 1e-9)  # monotonic: nearer never darker
    np.testing.assert_array_equal(img[0, 0], 0)
    np.testing.assert_array_equal(img[0, 1], 0)
    np.testing.assert_array_equal(img[-1, -1], 0)


def test_outliers_do_not_wash_out_the_preview(tmp_path):
    depth = np.tile(np.linspace(2.0, 4.0, 100), (10, 1))
    depth[0, :3] = 1e-6  # three absurdly near pixels
    img = np.asarray(Image.open(write_depth_preview(tmp_path / "d.png", depth)))
    lum = luminance(img[5])
    assert lum.max() - lum.min() > 150  # the real range still spans most of the colour map


def test_confidence_preview_high_is_brighter(tmp_path):
    conf = np.tile(np.linspace(1, 50, 64)[:, None], (1, 48))  # confident at the bottom
    img = np.asarray(Image.open(write_confidence_preview(tmp_path / "c.png", conf)))
    assert img.shape == (64, 48, 3)
    lum = luminance(img)
    assert lum[-2].mean() > lum[32].mean() > lum[1].mean()


def test_constant_or_empty_maps_do_not_crash():
    assert colorize(np.ones((4, 4))).shape == (4, 4, 3)
    np.testing.assert_array_equal(colorize(np.full((2, 2), np.nan)), 0)
