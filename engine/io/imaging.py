"""Still-image decoding and an OpenCV-compatible uint8 resampler (numpy; PIL imported lazily).

Why our own resampler: the official DA3 preprocessing resizes with OpenCV (``INTER_AREA`` to shrink,
``INTER_CUBIC`` to enlarge). The network saw images made that way, and parity with the official
outputs needs the same pixels. OpenCV is a heavy binary dependency, so this module reproduces its
uint8 results in numpy: the same source-coordinate mapping, the same area tables with float32
accumulation and the same rounding (see ``_resize_cubic`` for the cubic arithmetic). Each axis is
resampled with a precomputed table of (source index, weight) taps, applied with fancy indexing,
one tap at a time.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["ImageReadError", "load_image", "to_rgb_uint8", "resize_uint8"]

_EXR_HINT = "EXR needs a decoder in the engine environment, e.g. `pip install OpenEXR`"


class ImageReadError(ValueError):
    """An image file could not be read; the message names the file and says what to do."""


# --------------------------------------------------------------------------------------------------
# Array conversion
# --------------------------------------------------------------------------------------------------


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Any common image array -> (H, W, 3) uint8 RGB.

    Accepts (H, W), (H, W, 1), (H, W, 3) and (H, W, 4) arrays of uint8, uint16 (0..65535, rounded
    to 0..255), bool (False/True -> 0/255) or float (0..1, clipped; NaN -> 0). Grey is repeated into
    three channels; a fourth (alpha) channel is dropped, the way PIL's ``convert("RGB")`` does.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(
            f"expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}"
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"the image array is empty (shape {a.shape})")
    a = a[:, :, :3]
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == np.bool_:
        out = a.astype(np.uint8) * np.uint8(255)
    elif a.dtype == np.uint16:
        # v / 257 rounded to nearest; 65535 is odd, so exact ties cannot happen
        out = ((a.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        out = np.rint(np.clip(f, 0.0, 1.0) * np.float32(255)).astype(np.uint8)
    else:
        raise ValueError(
            f"unsupported image dtype {a.dtype}: pass uint8 (0..255), uint16 (0..65535), bool or float (0..1)"
        )
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear light (scene-referred, e.g. EXR) -> sRGB-encoded values in [0, 1]."""
    x = np.clip(np.nan_to_num(linear.astype(np.float32), nan=0.0), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# File decoding
# --------------------------------------------------------------------------------------------------


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 RGB, upright as a photo viewer shows it.

    - EXIF orientation is applied (phone photos come out upright).
    - Grey, palette, LA, RGBA and CMYK become RGB the way PIL ``convert("RGB")`` does (alpha dropped).
    - 16-bit PNG/TIFF are scaled 0..65535 -> 0..255 with rounding (16-bit *colour* PNGs are reduced
      by PIL itself, which keeps the high byte: at most one grey level from rounding).
    - Float TIFF is read as 0..1 (clipped). Colour float TIFFs need ``tifffile`` if PIL cannot read them.
    - EXR (linear light) is sRGB-encoded after clipping to 0..1; it needs OpenEXR or imageio.
    Any failure raises ImageReadError naming the file and what to do.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a folder, not an image file" if p.is_dir() else "does not exist"
        raise ImageReadError(f"Cannot read image '{p}': the path {what}. Check the file name.")
    if p.suffix.lower() == ".exr":
        return _load_exr(p)
    try:
        return _load_with_pil(p)
    except ImageReadError:
        raise
    except Exception as exc:
        hint = ""
        if p.suffix.lower() in (".tif", ".tiff"):
            arr = _try_tifffile(p)
            if arr is not None:
                return arr
            hint = " Colour float TIFFs need `pip install tifffile` in the engine environment."
        raise ImageReadError(
            f"Cannot read image '{p.name}' ({p}): {_describe(exc)}. The file may be truncated, "
            "damaged or in an unsupported format; re-export it as PNG or JPEG, or remove it from the inputs."
            + hint
        ) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


BYTES_PER_DECODED_PIXEL = 12  # RGB in PIL, its numpy copy, the resize's float work: what a pixel costs


def pixel_limit() -> int:
    """The most pixels one image may have: what half the available memory decodes, never less than
    Pillow's own guard (89 MP); larger files are refused as decompression bombs."""
    from ..sysinfo import system_memory_available

    return max(89_478_485, int(0.5 * system_memory_available() / BYTES_PER_DECODED_PIXEL))


def _load_with_pil(p: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    limit = pixel_limit()
    Image.MAX_IMAGE_PIXELS = limit // 2  # Pillow refuses above twice this (and only warns below)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(
            f"'{p.name}' is too large to decode here ({exc}): this machine's memory allows images up to "
            f"{limit / 1e6:.0f} megapixels. Downscale it, or free memory; a file that claims a huge size "
            "but is small on disk may be a decompression bomb."
        ) from None
    with im:
        im.load()  # decode now, so a truncated file fails here and not later
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # broken EXIF block: keep the pixels as stored
            pass
        mode = im.mode
        if mode.startswith("I;16") or mode == "I":
            grey = np.asarray(im).astype(np.int64)
            if grey.max(initial=0) > 65535 or grey.min(initial=0) < 0:  # 32-bit int image
                grey = grey - grey.min()
                grey = grey * 65535 // max(int(grey.max()), 1)
            return to_rgb_uint8(grey.astype(np.uint16))
        if mode == "F":
            return to_rgb_uint8(np.asarray(im, dtype=np.float32))
        if p.suffix.lower() in (".tif", ".tiff") and mode == "RGB" and _tiff_bits(im) == 16:
            arr = _try_tifffile(p)  # PIL keeps only the high byte of 16-bit colour TIFFs
            if arr is not None:
                return arr
        return np.array(im.convert("RGB"), dtype=np.uint8)


def _tiff_bits(im) -> int:
    try:
        bits = im.tag_v2.get(258)
        return int(bits[0] if isinstance(bits, tuple) else bits)
    except Exception:
        return 8


def _try_tifffile(p: Path) -> np.ndarray | None:
    """Colour float or 16-bit TIFFs that PIL cannot represent, when ``tifffile`` is installed."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        arr = np.asarray(tifffile.imread(str(p)))
    except Exception:
        return None
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar storage
    try:
        return to_rgb_uint8(arr)
    except ValueError:
        return None


def _load_exr(p: Path) -> np.ndarray:
    """EXR through whichever optional decoder is installed (OpenEXR, then imageio)."""
    errors = []
    for reader in (_exr_openexr, _exr_imageio):
        try:
            rgb = reader(p)
        except ImportError:
            continue
        except Exception as exc:
            errors.append(_describe(exc))
            continue
        return to_rgb_uint8(_srgb_encode(rgb))
    if errors:
        raise ImageReadError(f"Cannot read EXR image '{p.name}' ({p}): {errors[0]}. The file may be damaged.")
    raise ImageReadError(
        f"Cannot read EXR image '{p.name}' ({p}): no EXR decoder is installed. {_EXR_HINT}, "
        "or convert the frames to 16-bit PNG or TIFF."
    )


def _exr_openexr(p: Path) -> np.ndarray:
    import OpenEXR  # optional

    if hasattr(OpenEXR, "File"):  # OpenEXR >= 3.3
        with OpenEXR.File(str(p)) as f:
            channels = f.channels()
            if "RGB" in channels:
                return np.asarray(channels["RGB"].pixels, dtype=np.float32)
            if "RGBA" in channels:
                return np.asarray(channels["RGBA"].pixels, dtype=np.float32)[..., :3]
            names = [n for n in ("R", "G", "B") if n in channels] or [next(iter(channels))]
            planes = [np.asarray(channels[n].pixels, dtype=np.float32) for n in names]
            return np.stack(planes, axis=-1) if len(planes) == 3 else planes[0]
    import Imath

    f = OpenEXR.InputFile(str(p))
    dw = f.header()["dataWindow"]
    w, h = dw.max.x - dw.min.x + 1, dw.max.y - dw.min.y + 1
    names = [n for n in ("R", "G", "B") if n in f.header()["channels"]] or list(f.header()["channels"])[:1]
    pt = Imath.PixelType(Imath.PixelType.FLOAT)
    planes = [np.frombuffer(f.channel(n, pt), dtype=np.float32).reshape(h, w) for n in names]
    return np.stack(planes, axis=-1) if len(planes) == 3 else planes[0]


def _exr_imageio(p: Path) -> np.ndarray:
    import imageio.v3 as iio

    return np.asarray(iio.imread(str(p)), dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# OpenCV-compatible resampling
# --------------------------------------------------------------------------------------------------


def resize_uint8(img: np.ndarray, width: int, height: int, *, interpolation: str = "auto") -> np.ndarray:
    """Resize a uint8 image (H, W) or (H, W, C) to (height, width[, C]) like ``cv2.resize``.

    interpolation:
      - ``"auto"``: the DA3 rule: ``"cubic"`` if either side grows, else ``"area"``.
      - ``"area"``: ``cv2.INTER_AREA`` (box average over the covered source area); shrinking only.
      - ``"cubic"``: ``cv2.INTER_CUBIC`` (Keys cubic, a = -0.75, replicated border, no antialiasing).
    """
    a = np.asarray(img)
    if a.dtype != np.uint8 or a.ndim not in (2, 3):
        raise ValueError(f"resize_uint8 needs a uint8 (H, W) or (H, W, C) array, got {a.dtype} {a.shape}")
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"target size must be at least 1x1 pixels, got {width}x{height}")
    src_h, src_w = a.shape[:2]
    if interpolation == "auto":
        interpolation = "cubic" if (width > src_w or height > src_h) else "area"
    if interpolation not in ("area", "cubic"):
        raise ValueError(f"unknown interpolation {interpolation!r}: use 'auto', 'area' or 'cubic'")
    if interpolation == "area" and (width > src_w or height > src_h):
        raise ValueError(
            f"area resampling only shrinks ({src_w}x{src_h} -> {width}x{height}); use 'cubic' to enlarge"
        )
    if (src_h, src_w) == (height, width):
        return a.copy()
    x = a[:, :, None] if a.ndim == 2 else a
    out = _resize_cubic(x, width, height) if interpolation == "cubic" else _resize_area(x, width, height)
    return out[:, :, 0] if a.ndim == 2 else out


def _inverse_scale(src: int, dst: int) -> float:
    """Source pixels per destination pixel, computed exactly as OpenCV does (1 / (dst / src))."""
    return 1.0 / (dst / src)


def _cubic_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Tap table for one axis: source indices (dst, 4) int64 and float64 weights (dst, 4).

    Destination pixel d samples source coordinate (d + 0.5) * src / dst - 0.5 with the Keys cubic
    (a = -0.75); indices beyond the image repeat the edge pixel.
    """
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * _inverse_scale(src, dst) - 0.5
    left = np.floor(pos)
    t = pos - left  # fraction in [0, 1)
    a = -0.75
    weights = np.stack(
        [
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
        ],
        axis=1,
    )
    weights = np.concatenate([weights, 1 - weights.sum(axis=1, keepdims=True)], axis=1)
    index = np.clip(left.astype(np.int64)[:, None] + np.arange(-1, 3), 0, src - 1)  # replicate border
    return index, weights


def _resize_cubic(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """INTER_CUBIC on uint8, rounded once at the end.

    OpenCV's x86 builds (the pip wheels the official code runs on) hand uint8 cubic resizes to
    Intel IPP, which works in floating point; plain OpenCV uses 11-bit fixed-point weights instead
    and differs by one grey level on a few percent of pixels. We follow the floating-point result.
    """
    ix, wx = _cubic_taps(x.shape[1], width)
    iy, wy = _cubic_taps(x.shape[0], height)
    rows = np.zeros((x.shape[0], width, x.shape[2]), dtype=np.float64)  # horizontal pass
    for k in range(4):
        rows += np.take(x, ix[:, k], axis=1) * wx[None, :, k, None]
    acc = np.zeros((height, width, x.shape[2]), dtype=np.float64)  # vertical pass
    for k in range(4):
        acc += np.take(rows, iy[:, k], axis=0) * wy[:, k, None, None]
    return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def _area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """INTER_AREA table for one axis (dst <= src): source indices and float32 weights, (dst, T).

    Destination pixel d covers source interval [d*s, (d+1)*s), s = src/dst. Whole source pixels inside
    get weight 1/cell, the partly covered pixels at both ends get their covered fraction / cell
    (fractions under 1e-3 are ignored, as in OpenCV). Taps are consecutive source indices; unused
    slots have weight 0.
    """
    scale = _inverse_scale(src, dst)
    d = np.arange(dst, dtype=np.float64)
    f1 = d * scale
    f2 = f1 + scale
    cell = np.minimum(scale, src - f1)
    s2 = np.minimum(np.floor(f2).astype(np.int64), src - 1)
    s1 = np.minimum(np.ceil(f1).astype(np.int64), s2)
    has_left = (s1 - f1) > 1e-3
    has_right = (f2 - s2) > 1e-3
    first = s1 - has_left
    count = (s2 - s1) + has_left + has_right
    taps = int(count.max())
    slot = np.arange(taps)[None, :]
    index = first[:, None] + slot
    weight = np.broadcast_to((1.0 / cell)[:, None], (dst, taps)).copy()
    left_w = (s1 - f1) / cell
    right_w = np.minimum(np.minimum(f2 - s2, 1.0), cell) / cell
    weight[:, 0] = np.where(has_left, left_w, weight[:, 0])
    last = count - 1
    is_right = has_right[:, None] & (slot == last[:, None])
    weight = np.where(is_right, right_w[:, None], weight)
    used = slot < count[:, None]
    weight = np.where(used, weight, 0.0).astype(np.float32)
    index = np.where(used, index, first[:, None])
    return index, weight


def _resize_area(x: np.ndarray, width: int, height: int) -> np.ndarray:
    src_h, src_w = x.shape[:2]
    sx, sy = _inverse_scale(src_w, width), _inverse_scale(src_h, height)
    eps = np.finfo(np.float64).eps
    if abs(sx - round(sx)) < eps and abs(sy - round(sy)) < eps:
        return _resize_area_integer(x, int(round(sx)), int(round(sy)), width, height)
    ix, wx = _area_taps(src_w, width)
    iy, wy = _area_taps(src_h, height)
    rows = np.zeros((src_h, width, x.shape[2]), dtype=np.float32)
    for k in range(ix.shape[1]):  # float32 accumulation in OpenCV's order: taps left to right
        rows += np.take(x, ix[:, k], axis=1).astype(np.float32) * wx[None, :, k, None]
    acc = np.take(rows, iy[:, 0], axis=0) * wy[:, 0, None, None]
    for k in range(1, iy.shape[1]):
        acc += np.take(rows, iy[:, k], axis=0) * wy[:, k, None, None]
    return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def _resize_area_integer(x: np.ndarray, kx: int, ky: int, width: int, height: int) -> np.ndarray:
    """Integer shrink factors: plain block means (OpenCV's fast area path)."""
    x = x[: height * ky, : width * kx]
    rows = np.zeros((height * ky, width, x.shape[2]), dtype=np.uint32)
    for j in range(kx):  # strided slices: much faster than a reduction over a short middle axis
        rows += x[:, j::kx]
    total = np.zeros((height, width, x.shape[2]), dtype=np.uint32)
    for i in range(ky):
        total += rows[i::ky]
    if kx == 2 and ky == 2:  # OpenCV's vectorised 2x2 path rounds halves up
        return ((total + 2) >> 2).astype(np.uint8)
    mean = total.astype(np.float32) * (np.float32(1) / np.float32(kx * ky))
    return np.clip(np.rint(mean), 0, 255).astype(np.uint8)
