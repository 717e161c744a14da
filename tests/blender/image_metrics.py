"""Image agreement for the ground-truth tests: PSNR and SSIM (Wang et al. 2004, 11×11 Gaussian window
with σ = 1.5, K1 = 0.01, K2 = 0.03, per channel then averaged), numpy only."""

from __future__ import annotations

import numpy as np

__all__ = ["psnr", "ssim"]


def psnr(a: np.ndarray, b: np.ndarray, floor: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (inf when equal). ``floor``: only over
    the pixels where either image exceeds it (the subject, not an empty background that agrees)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if floor is not None:
        where = (a.max(axis=-1) > floor) | (b.max(axis=-1) > floor)
        a, b = a[where], b[where]
    mse = float(np.mean((a - b) ** 2)) if a.size else 0.0
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def _blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of (H, W) with a 1-D kernel."""
    k = len(kernel)
    rows = sum(kernel[i] * image[i : image.shape[0] - k + 1 + i, :] for i in range(k))
    return sum(kernel[i] * rows[:, i : rows.shape[1] - k + 1 + i] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity of two (H, W, C) images (1.0 when equal)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x = np.arange(11) - 5.0
    kernel = np.exp(-(x**2) / (2 * 1.5**2))
    kernel /= kernel.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for c in range(a.shape[2]):
        p, q = a[:, :, c], b[:, :, c]
        mp, mq = _blur(p, kernel), _blur(q, kernel)
        vp = _blur(p * p, kernel) - mp * mp
        vq = _blur(q * q, kernel) - mq * mq
        cov = _blur(p * q, kernel) - mp * mq
        s = ((2 * mp * mq + c1) * (2 * cov + c2)) / ((mp * mp + mq * mq + c1) * (vp + vq + c2))
        scores.append(float(s.mean()))
    return float(np.mean(scores))
