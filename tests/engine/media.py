"""Synthetic test media made by our own code: textured images that carry their frame number, and
videos written with PyAV (constant or variable frame rate, lossless or lossy codecs)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

CODE_BITS = 8  # frame numbers 0..255 are drawn as 8 black/white blocks along the top


def make_test_image(index: int, height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour texture + a frame-number barcode in the top quarter.

    The barcode is 8 blocks of width W/8, black for a 0 bit and white for a 1 bit (most
    significant first), so ``read_frame_number`` recovers ``index`` even after lossy coding.
    """
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    img = np.stack(
        [
            128 + 90 * np.sin(xx / 9.0 + phase[0] + index * 0.3),
            128 + 90 * np.cos(yy / 7.0 + phase[1]),
            128 + 90 * np.sin((xx + yy) / 13.0 + phase[2]),
        ],
        axis=-1,
    )
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    bar_h = max(4, height // 4)
    block_w = width // CODE_BITS
    for bit in range(CODE_BITS):
        on = (index >> (CODE_BITS - 1 - bit)) & 1
        img[:bar_h, bit * block_w : (bit + 1) * block_w] = 255 if on else 0
    return img


def make_test_images(count: int, height: int = 96, width: int = 128, seed: int = 0) -> list[np.ndarray]:
    """``count`` distinct textured frames, frame i carrying the number i."""
    return [make_test_image(i, height, width, seed) for i in range(count)]


def read_frame_number(image: np.ndarray) -> int:
    """The number drawn by ``make_test_image`` (reads the centre of each barcode block)."""
    height, width = image.shape[:2]
    bar_h = max(4, height // 4)
    block_w = width // CODE_BITS
    value = 0
    for bit in range(CODE_BITS):
        x0, x1 = bit * block_w + block_w // 4, (bit + 1) * block_w - block_w // 4
        patch = image[bar_h // 4 : 3 * bar_h // 4, x0:x1]
        value = (value << 1) | int(patch.mean() > 127)
    return value


def real_looking_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like (H, W, 3) uint8 image: gradients, edges, a few flat patches and sensor noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [
            110 + 80 * np.sin(xx / (width / 23.0) + yy / (height / 9.0)),
            120 + 70 * np.cos(xx / (width / 61.0) - yy / (height / 17.0)),
            (xx * 200.0 / width + yy * 55.0 / height),
        ],
        axis=-1,
    )
    for _ in range(6):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        img[y0 : y0 + height // 5, x0 : x0 + width // 6] = rng.integers(0, 256, 3)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


CODECS = {
    # codec: (container suffix it is written into, pixel format, exact pixels?)
    "ffv1": (".mkv", "bgr0", True),
    "png": (".mov", "rgb24", True),
    "libx264": (".mp4", "yuv444p", False),
    "mpeg4": (".avi", "yuv420p", False),
}


def write_test_video(
    path: str | Path,
    frames: list[np.ndarray],
    fps: float = 24,
    vfr_timestamps_s: list[float] | None = None,
    codec: str = "ffv1",
    rotation_deg: int = 0,
) -> Path:
    """Write RGB frames to ``path`` with PyAV and return the path.

    - ``ffv1`` / ``png`` (in .mkv): exact pixels. ``libx264`` is written with qp 0 (near lossless,
      still a YUV round trip); ``mpeg4`` is lossy.
    - ``vfr_timestamps_s``: one presentation time per frame (seconds, increasing) for variable
      frame rate; otherwise frame i is shown at i / fps.
    - ``rotation_deg``: display-matrix rotation (counter-clockwise) stored in the container.
    """
    import av

    path = Path(path)
    _, pix_fmt, _ = CODECS[codec]
    height, width = frames[0].shape[:2]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            stream.options = {"qp": "0", "preset": "ultrafast"}
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000
        time_base = Fraction(1, 90000) if vfr_timestamps_s is not None else 1 / rate
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if rotation_deg:
            stream.set_display_rotation(rotation_deg)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if vfr_timestamps_s is not None:
                frame.pts = int(round(vfr_timestamps_s[i] / time_base))
            else:
                frame.pts = i
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
