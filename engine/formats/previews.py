"""Colour-mapped PNG previews of depth and confidence maps (numpy; PIL imported lazily).

Depth is shown as inverse depth (near is what the eye cares about), normalised between its 2nd and
98th percentile over the valid pixels so a few outliers do not wash the picture out, and mapped
through a small built-in perceptual colour table (dark violet → orange → pale yellow, like
"inferno"): near pixels are bright and warm, far ones dark. Confidence uses the same table with
high confidence bright. Invalid pixels (non-finite, depth ≤ 0, outside ``valid``) are black.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "colorize",
    "depth_preview_rgb",
    "write_confidence_preview",
    "write_depth_preview",
    "write_rgb_preview",
]

# Anchor colours of an inferno-like map at evenly spaced positions 0..1; luminance rises monotonically.
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [31, 12, 72],
        [85, 15, 109],
        [136, 34, 106],
        [186, 54, 85],
        [227, 89, 51],
        [249, 140, 10],
        [249, 201, 50],
        [252, 255, 164],
    ],
    np.float64,
)
_LUT = (
    np.stack(
        [
            np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c])
            for c in range(3)
        ],
        -1,
    )
    .round()
    .astype(np.uint8)
)  # (256, 3)


def colorize(
    values: np.ndarray, valid: np.ndarray | None = None, lo_pct: float = 2.0, hi_pct: float = 98.0
) -> np.ndarray:
    """Map a (H, W) array to (H, W, 3) uint8: percentile-normalised, larger values brighter.

    Pixels that are not finite or not in ``valid`` come out black.
    """
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    out = np.zeros(v.shape + (3,), np.uint8)
    if not ok.any():
        return out
    lo, hi = np.percentile(v[ok], [lo_pct, hi_pct])
    scale = hi - lo if hi > lo else 1.0
    t = np.clip((v[ok] - lo) / scale, 0.0, 1.0)
    out[ok] = _LUT[np.round(t * 255).astype(np.intp)]
    return out


def depth_preview_rgb(depth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(H, W) z-depth → (H, W, 3) uint8 colour-mapped inverse depth (near bright)."""
    d = np.asarray(depth, np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth preview takes one (H, W) depth map, got {d.shape}")
    ok = np.isfinite(d) & (d > 0)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(ok, 1.0 / d, np.nan)
    return colorize(inv, ok)


def _save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    from PIL import Image  # lazy: only needed when previews are written

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    Image.fromarray(rgb).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def write_depth_preview(path: str | os.PathLike, depth: np.ndarray, valid: np.ndarray | None = None) -> Path:
    """Write a PNG of the colour-mapped inverse depth of one (H, W) depth map; returns its path."""
    return _save_png(path, depth_preview_rgb(depth, valid))


def write_confidence_preview(path: str | os.PathLike, conf: np.ndarray) -> Path:
    """Write a PNG of one (H, W) confidence map, high confidence bright; returns its path."""
    c = np.asarray(conf)
    if c.ndim != 2:
        raise ValueError(f"confidence preview takes one (H, W) map, got {c.shape}")
    return _save_png(path, colorize(c))


def write_rgb_preview(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write a PNG of one (H, W, 3) float image in 0..1 (display values, e.g. a splat render)."""
    image = np.asarray(rgb, np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"an RGB preview takes one (H, W, 3) image, got {image.shape}")
    return _save_png(path, (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
