"""DA3 preprocessing: sizes from the spec, parity with the official InputProcessor (golden fixtures),
intrinsics bookkeeping and input validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    METHODS,
    ImageTransform,
    check_process_res,
    normalize,
    preprocess_images,
    process_res_note,
)
from tests.conftest import GOLDEN, require_golden
from tests.engine.media import real_looking_image


def _blank(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


@pytest.mark.parametrize(
    ("hw", "method", "final_hw"),
    [
        ((1080, 1920), "upper_bound_resize", (280, 504)),  # 504x284 -> 504x280
        ((3024, 4032), "upper_bound_resize", (378, 504)),
        ((480, 640), "upper_bound_resize", (378, 504)),
        ((1000, 1000), "upper_bound_resize", (504, 504)),
        ((1080, 1920), "lower_bound_resize", (504, 896)),
        ((1080, 1920), "upper_bound_crop", (280, 504)),
        ((4032, 3024), "upper_bound_resize", (504, 378)),  # portrait
    ],
)
def test_processed_sizes_from_the_spec(hw, method, final_hw):
    out, (t,) = preprocess_images([_blank(*hw)], 504, method)
    assert out.shape == (1, *final_hw, 3)
    assert t.original_hw == hw and t.final_hw == final_hw
    assert final_hw[0] % 14 == 0 and final_hw[1] % 14 == 0


def test_crop_method_keeps_the_centre_of_the_resized_image():
    img = real_looking_image(1080, 1920, seed=2)
    cropped, (tc,) = preprocess_images([img], 504, "upper_bound_crop")
    resized, (tr,) = preprocess_images([img], 504, "upper_bound_resize")
    assert tc.resized_hw == tr.resized_hw == (284, 504)
    assert tc.crop_offset_yx == (2, 0) and tr.crop_offset_yx == (0, 0)
    # the crop is a window of the boundary-resized image: same pixels as resizing to 284 rows alone
    from engine.io.imaging import resize_uint8

    boundary = resize_uint8(img, 504, 284)
    np.testing.assert_array_equal(cropped[0], boundary[2:282])


def test_mixed_sizes_are_centre_cropped_to_the_smallest():
    a, b = real_looking_image(200, 300, seed=1), real_looking_image(240, 200, seed=2)
    out, (ta, tb) = preprocess_images([a, b], 140)
    alone_a, _ = preprocess_images([a], 140)
    alone_b, _ = preprocess_images([b], 140)
    assert alone_a.shape[1:3] == (98, 140) and alone_b.shape[1:3] == (140, 112)
    assert out.shape == (2, 98, 112, 3)
    assert ta.batch_crop_offset_yx == (0, 14) and tb.batch_crop_offset_yx == (21, 0)
    np.testing.assert_array_equal(out[0], alone_a[0, :, 14:126])
    np.testing.assert_array_equal(out[1], alone_b[0, 21:119, :])


def test_intrinsics_follow_resize_and_crops_and_invert_exactly():
    K = np.array([[1500.0, 0.0, 960.0], [0.0, 1500.0, 540.0], [0.0, 0.0, 1.0]])
    _, (t,) = preprocess_images([_blank(1080, 1920)], 504, "upper_bound_resize")
    Kp = t.apply_to_intrinsics(K)
    # 1920x1080 -> 504x284 -> 504x280: x scaled by 504/1920, y by 284/1080 then 280/284
    np.testing.assert_allclose(Kp[0], K[0] * 504 / 1920, rtol=1e-12)
    np.testing.assert_allclose(Kp[1], K[1] * 280 / 1080, rtol=1e-12)
    np.testing.assert_array_equal(Kp[2], [0, 0, 1])
    np.testing.assert_allclose(t.processed_to_original_intrinsics(Kp), K, rtol=1e-12)

    _, (tc,) = preprocess_images([_blank(1080, 1920)], 504, "upper_bound_crop")
    Kc = tc.apply_to_intrinsics(K)
    assert Kc[1, 1] == pytest.approx(1500 * 284 / 1080)  # crops leave the focal length alone
    assert Kc[1, 2] == pytest.approx(540 * 284 / 1080 - 2)  # and shift the principal point
    np.testing.assert_allclose(tc.processed_to_original_intrinsics(Kc), K, rtol=1e-12)

    batch = np.stack([K, 2 * K])
    np.testing.assert_allclose(t.apply_to_intrinsics(batch)[1], t.apply_to_intrinsics(2 * K))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        t.apply_to_intrinsics(np.eye(4))


def test_mixed_batch_crop_moves_the_principal_point():
    K = np.array([[300.0, 0.0, 150.0], [0.0, 300.0, 100.0], [0.0, 0.0, 1.0]])
    _, (ta, _) = preprocess_images([_blank(200, 300), _blank(240, 200)], 140)
    Ka = ta.apply_to_intrinsics(K)
    assert Ka[0, 2] == pytest.approx(150 * 140 / 300 - 14)
    np.testing.assert_allclose(ta.processed_to_original_intrinsics(Ka), K, rtol=1e-12)


def test_normalize_is_imagenet_in_float32():
    px = np.array([[[[0, 128, 255]]]], np.uint8)
    x = normalize(px)
    assert x.shape == (1, 3, 1, 1) and x.dtype == np.float32
    expected = (np.float32([0, 128, 255]) / np.float32(255) - np.float32(IMAGENET_MEAN)) / np.float32(
        IMAGENET_STD
    )
    np.testing.assert_array_equal(x[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\) uint8"):
        normalize(np.zeros((2, 2, 3), np.uint8))


@pytest.mark.parametrize(
    ("res", "method", "message"),
    [
        (0, "upper_bound_resize", "at least 14"),
        (-504, "upper_bound_resize", "at least 14"),
        (10, "upper_bound_resize", "multiples of 14"),
        (504.0, "upper_bound_resize", "whole number"),
        (504, "bilinear", "upper_bound_resize, upper_bound_crop"),
    ],
)
def test_bad_settings_are_explained(res, method, message):
    with pytest.raises(ValueError, match=message):
        check_process_res(res, method)
    with pytest.raises(ValueError, match=message):
        preprocess_images([_blank(20, 20)], res, method)


def test_resolution_note_says_what_size_comes_out():
    assert process_res_note(504) is None
    assert "becomes 504 px" in process_res_note(500, "upper_bound_resize")
    assert "becomes 490 px" in process_res_note(500, "lower_bound_crop")
    for method in METHODS:
        check_process_res(518, method)


def test_bad_images_and_thin_crops():
    with pytest.raises(ValueError, match="image 1 must be an \\(H, W, 3\\) uint8"):
        preprocess_images([_blank(20, 20), np.zeros((20, 20), np.uint8)], 28)
    with pytest.raises(ValueError, match="no images"):
        preprocess_images([], 504)
    with pytest.raises(ValueError, match="too thin"):
        preprocess_images([_blank(10, 2000)], 504, "upper_bound_crop")
    out, _ = preprocess_images([_blank(10, 2000)], 504, "upper_bound_resize")  # never below one patch
    assert out.shape == (1, 14, 504, 3)


# --------------------------------------------------------------------------------------------------
# Parity with the official InputProcessor (golden fixtures made by depth-anything-3 0.1.1)
# --------------------------------------------------------------------------------------------------


def _golden_cases() -> list[str]:
    cases = GOLDEN / "public" / "cases.json"
    return sorted(json.loads(cases.read_text())) if cases.is_file() else ["(no golden fixtures)"]


@pytest.mark.parametrize("case", _golden_cases())
def test_matches_the_official_preprocessing(case):
    golden = require_golden()
    z = np.load(golden / "public" / f"{case}.npz")
    n = int(z["in_num_views"])
    images = [z[f"in_image_{i}"] for i in range(n)]
    processed, transforms = preprocess_images(
        images, int(z["in_process_res"]), str(z["in_process_res_method"])
    )
    net = z["net_input"]
    assert processed.shape[1:3] == net.shape[-2:]
    assert all(t.final_hw == net.shape[-2:] for t in transforms)

    mean = np.asarray(IMAGENET_MEAN, np.float32)[None, :, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[None, :, None, None]
    golden_pixels = np.rint((net * std + mean) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    diff = np.abs(processed.astype(np.int16) - golden_pixels)
    # the resampler: measured 0 on every public case (bit-identical pixels)
    assert diff.mean() <= 0.01 and diff.max() <= 1
    # the normalisation arithmetic on the official pixels: measured bit-identical
    np.testing.assert_allclose(normalize(golden_pixels), net, rtol=0, atol=1e-6)

    if "in_intrinsics" in z:
        K = np.stack([t.apply_to_intrinsics(k) for t, k in zip(transforms, z["in_intrinsics"], strict=True)])
        np.testing.assert_allclose(K, z["net_intrinsics"], rtol=1e-6)


def test_transform_is_a_frozen_record():
    t = ImageTransform((10, 20), (7, 14), (14, 14), (0, 0), (0, 0), (14, 14))
    with pytest.raises(AttributeError):
        t.final_hw = (1, 1)
