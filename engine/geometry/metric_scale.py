"""Metric scale for an any-view reconstruction from a metric depth model's view of the same frames (numpy).

An any-view model (DA3-SMALL … GIANT) predicts depth and camera translations up to one unknown global
scale. A metric model (DA3METRIC-LARGE) run on the same frames, with the any-view cameras' focal
lengths, predicts depth in metres but no cameras. One number ``s`` brings the first into metres:

    s = argmin Σ wᵢ (s·dᵢ − mᵢ)²  =  Σ wᵢ dᵢ mᵢ / Σ wᵢ dᵢ²

over the pixels where both depths are finite and positive and the metric model sees no sky, with
``wᵢ`` the any-view confidence (pixels the any-view model trusts count more). Depth, the camera
translations and the Gaussians (centres and sizes) are then multiplied by ``s``; rotations, focal
lengths and everything in pixels stay as they are.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["MetricScaleError", "fit_scale", "scale_prediction"]


class MetricScaleError(ValueError):
    """No scale can be fitted (no pixel where both models give a usable depth)."""


def fit_scale(
    depth: np.ndarray,
    metric_depth: np.ndarray,
    conf: np.ndarray | None = None,
    sky: np.ndarray | None = None,
) -> float:
    """The confidence-weighted least-squares ``s`` with ``s · depth ≈ metric_depth``.

    depth, metric_depth: (N, H, W) float (the same pixels); conf: (N, H, W) weights ≥ 0 or None (all
    equal); sky: (N, H, W) bool, True where pixels are left out, or None. Raises MetricScaleError when
    no pixel qualifies or the fit is not positive.
    """
    d = np.asarray(depth, np.float64)
    m = np.asarray(metric_depth, np.float64)
    if d.shape != m.shape:
        raise ValueError(f"depth {d.shape} and metric depth {m.shape} must cover the same pixels")
    keep = np.isfinite(d) & np.isfinite(m) & (d > 0) & (m > 0)
    w = np.ones_like(d) if conf is None else np.asarray(conf, np.float64)
    if w.shape != d.shape:
        raise ValueError(f"confidence {w.shape} does not match depth {d.shape}")
    keep &= np.isfinite(w) & (w > 0)
    if sky is not None:
        keep &= ~np.asarray(sky, bool)
    if not keep.any():
        raise MetricScaleError(
            "the metric model and the reconstruction share no pixel with a valid depth (all sky or "
            "invalid), so no metric scale can be fitted"
        )
    d, m, w = d[keep], m[keep], w[keep]
    s = float(np.sum(w * d * m) / np.sum(w * d * d))
    if not np.isfinite(s) or s <= 0:
        raise MetricScaleError(f"the metric scale fit gave {s}, which is not a usable scale")
    return s


def scale_prediction(prediction, scale: float, sky: np.ndarray | None = None):
    """A copy of a ``pipeline.Prediction`` in metres: depth, translations and Gaussians times ``scale``.

    ``sky`` (N, H, W) bool, e.g. the metric model's, replaces the prediction's sky mask when given.
    """
    s = np.float32(scale)
    ext = np.array(prediction.extrinsics, np.float32)  # (N, 3, 4) world-to-camera
    ext[:, :3, 3] *= s  # camera centres −Rᵀt scale with t: the world is scaled about its origin
    gaussians = prediction.gaussians
    if gaussians is not None:
        gaussians = dataclasses.replace(gaussians, means=gaussians.means * s, scales=gaussians.scales * s)
    return dataclasses.replace(
        prediction,
        depth=prediction.depth * s,
        extrinsics=ext,
        gaussians=gaussians,
        sky=prediction.sky if sky is None else np.asarray(sky, bool),
        is_metric=True,
        units="metre",
        scale_factor=float(scale),
    )
