"""Image decoding (PIL as the writer/reference) and the OpenCV-compatible resampler (cv2 as reference)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from engine.io.imaging import ImageReadError, load_image, resize_uint8, to_rgb_uint8
from tests.engine.media import real_looking_image

try:
    import cv2  # tests only: the reference for the resampler and a 16-bit PNG writer
except ImportError:
    cv2 = None
from PIL import Image

needs_cv2 = pytest.mark.skipif(cv2 is None, reason="opencv-python-headless is not installed")


@pytest.fixture
def photo() -> np.ndarray:
    return real_looking_image(30, 40, seed=3)


# --------------------------------------------------------------------------------------------------
# load_image
# --------------------------------------------------------------------------------------------------


def test_png_round_trip_is_exact(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out, photo)


@pytest.mark.parametrize(("orientation", "expected"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_makes_the_photo_upright(tmp_path, photo, orientation, expected):
    exif = Image.Exif()
    exif[0x0112] = orientation  # 3: rotate 180, 6: rotate 90 clockwise, 8: 90 counter-clockwise
    Image.fromarray(photo).save(tmp_path / "phone.png", exif=exif)
    out = load_image(tmp_path / "phone.png")
    np.testing.assert_array_equal(out, np.rot90(photo, k=expected))


def test_grey_palette_la_rgba_become_rgb_like_pil_convert(tmp_path, photo):
    grey = photo[:, :, 1]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = load_image(tmp_path / "grey.png")
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))

    rgba = np.dstack([photo, np.full(photo.shape[:2], 7, np.uint8)])  # almost transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), photo)  # alpha dropped, not blended

    Image.fromarray(np.dstack([grey, grey // 2])).save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png")[:, :, 2], grey)

    pal = Image.fromarray(photo).quantize(colors=16)
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(load_image(tmp_path / "pal.png"), np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_is_scaled_with_rounding(tmp_path, suffix):
    values = np.array([[0, 128, 129, 385, 386], [32767, 32896, 65407, 65408, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"deep{suffix}")
    out = load_image(tmp_path / f"deep{suffix}")
    expected = np.floor(values / 257.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    assert (out == out[:, :, :1]).all()


@needs_cv2
def test_16_bit_colour_png_is_within_one_level_of_rounding(tmp_path):
    deep = np.random.default_rng(5).integers(0, 65536, (6, 9, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep_rgb.png"), deep[:, :, ::-1])  # OpenCV writes BGR
    out = load_image(tmp_path / "deep_rgb.png").astype(np.int16)
    assert np.abs(out - np.floor(deep / 257.0 + 0.5)).max() <= 1


def test_float_tiff_is_read_as_zero_to_one(tmp_path):
    values = np.array([[-0.5, 0.0, 0.25, 0.5], [0.999, 1.0, 2.0, 0.1]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    out = load_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(out[:, :, 0], np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8))


def test_lossless_webp(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "a.webp", lossless=True)
    np.testing.assert_array_equal(load_image(tmp_path / "a.webp"), photo)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_gives_a_clear_error(tmp_path, fmt):
    path = tmp_path / f"broken.{fmt.lower()}"
    Image.fromarray(real_looking_image(200, 200)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"broken\.(png|jpeg).*(truncated|damaged)"):
        load_image(path)


def test_missing_and_non_image_files(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.png.*re-export it as PNG or JPEG"):
        load_image(tmp_path / "notes.png")


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) for m in ("OpenEXR", "imageio")), reason="an EXR decoder is installed"
)
def test_exr_without_decoder_says_what_to_install(tmp_path):
    (tmp_path / "beauty.exr").write_bytes(b"\x76\x2f\x31\x01" + bytes(64))
    with pytest.raises(ImageReadError, match=r"beauty\.exr.*pip install OpenEXR"):
        load_image(tmp_path / "beauty.exr")


# --------------------------------------------------------------------------------------------------
# to_rgb_uint8
# --------------------------------------------------------------------------------------------------


def test_to_rgb_uint8_shapes_and_types():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for arr in (grey, grey[:, :, None]):
        out = to_rgb_uint8(arr)
        assert out.shape == (3, 4, 3) and (out == grey[:, :, None]).all()
    rgba = np.dstack([np.full((3, 4, 3), 9, np.uint8), np.zeros((3, 4), np.uint8)])
    np.testing.assert_array_equal(to_rgb_uint8(rgba), np.full((3, 4, 3), 9, np.uint8))
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[True, False]]))[0, :, 0], [255, 0])
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[0, 257, 65535]], np.uint16))[0, :, 0], [0, 1, 255])
    floats = np.array([[-1.0, 0.0, 0.5, 1.0, 3.0, np.nan]], np.float64)
    np.testing.assert_array_equal(to_rgb_uint8(floats)[0, :, 0], [0, 0, 128, 255, 255, 0])


@pytest.mark.parametrize(
    ("arr", "message"),
    [
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.zeros((4, 4, 3), np.int32), "unsupported image dtype"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_to_rgb_uint8_rejects_what_it_cannot_show(arr, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_uint8(arr)


# --------------------------------------------------------------------------------------------------
# resize_uint8 against OpenCV
# --------------------------------------------------------------------------------------------------

SIZE_PAIRS = [  # (h, w) -> (h', w')
    ((200, 300), (93, 140)),  # non-integer shrink
    ((190, 270), (112, 159)),
    ((1080, 1920), (284, 504)),  # DA3 boundary resize of a full-HD frame
    ((284, 504), (280, 504)),  # the 14-multiple step: one axis shrinks, one unchanged
    ((300, 300), (100, 100)),  # integer factor 3
    ((64, 96), (32, 48)),  # integer factor 2
    ((301, 299), (100, 100)),
    ((17, 13), (7, 5)),
    ((93, 140), (98, 140)),  # the 14-multiple step growing one axis (cubic)
    ((277, 504), (280, 504)),
    ((100, 100), (504, 504)),  # enlarge
    ((33, 47), (280, 504)),
    ((7, 5), (13, 17)),
    ((280, 504), (266, 518)),  # mixed: one axis grows, one shrinks (cubic)
]


def _opencv(img, w, h):
    grows = w > img.shape[1] or h > img.shape[0]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC if grows else cv2.INTER_AREA)


@needs_cv2
@pytest.mark.parametrize(("src", "dst"), SIZE_PAIRS)
@pytest.mark.parametrize("kind", ["random", "photo"])
def test_resize_matches_opencv(src, dst, kind):
    rng = np.random.default_rng(sum(src) + sum(dst))
    img = (
        rng.integers(0, 256, (*src, 3), dtype=np.uint8)
        if kind == "random"
        else real_looking_image(*src, seed=sum(src))
    )
    ours = resize_uint8(img, dst[1], dst[0])
    ref = _opencv(img, dst[1], dst[0])
    assert ours.shape == ref.shape == (*dst, 3)
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    # measured: area bit-exact; cubic 0-9 pixels per image off by one grey level (near-ties of IPP's
    # floating-point cubic); OpenCV builds without IPP use fixed-point cubic (~4 % of pixels off by one)
    assert diff.max() <= 1
    assert diff.mean() < (0.06 if ours.shape[0] > src[0] or ours.shape[1] > src[1] else 1e-3)


@needs_cv2
@pytest.mark.skipif(
    cv2 is None or not cv2.ipp.useIPP(), reason="this OpenCV build does not use IPP for cubic resizes"
)
def test_cubic_enlarge_is_near_bit_exact_with_opencv_ipp():
    img = real_looking_image(93, 140, seed=11)
    diff = resize_uint8(img, 504, 336).astype(np.int16) - _opencv(img, 504, 336)
    assert np.count_nonzero(diff) <= 5e-4 * diff.size  # measured: worst 1.5e-4 over 160 random pairs


def test_resize_2d_constant_and_identity():
    flat = np.full((50, 70), 77, np.uint8)
    assert (resize_uint8(flat, 31, 23) == 77).all()
    assert (resize_uint8(flat, 150, 101) == 77).all()  # cubic overshoot never appears on a flat image
    img = real_looking_image(20, 30)
    same = resize_uint8(img, 30, 20)
    assert same is not img
    np.testing.assert_array_equal(same, img)


def test_resize_rejects_bad_requests():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="only shrinks"):
        resize_uint8(img, 20, 5, interpolation="area")
    with pytest.raises(ValueError, match="unknown interpolation"):
        resize_uint8(img, 5, 5, interpolation="lanczos")
    with pytest.raises(ValueError, match="at least 1x1"):
        resize_uint8(img, 0, 5)
    with pytest.raises(ValueError, match="uint8"):
        resize_uint8(img.astype(np.float32), 5, 5)
