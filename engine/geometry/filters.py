"""Which predicted pixels become points: validity and confidence masks, a point budget (numpy only).

The network predicts one depth per pixel of every view (100 views at 504×378 is 19 M pixels), far
more than a viewport or a 3DGS trainer wants. ``gather_points`` keeps the pixels that are finite,
in front of the camera, not sky and at least as confident as a percentile of all valid pixels, then
draws a deterministic random subset of at most ``budget`` pixels and unprojects only those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .unproject import unproject_pixels

__all__ = [
    "DEFAULT_CONF_PERCENTILE",
    "PointSet",
    "confidence_threshold",
    "gather_points",
    "point_mask",
    "subsample",
    "valid_depth_mask",
]

DEFAULT_CONF_PERCENTILE = 40.0  # the official DA3 exports also drop the least confident 40 %
_NO_IMAGE_GREY = 160


@dataclass(frozen=True)
class PointSet:
    """Points gathered from depth maps, one per kept pixel (world frame of the job)."""

    xyz: np.ndarray  # (M, 3) float32 world coordinates
    rgb: np.ndarray  # (M, 3) uint8 colour of the source pixel
    conf: np.ndarray  # (M,) float32 confidence (1.0 everywhere when the model has none)
    view: np.ndarray  # (M,) int32 index of the source view
    pixel: np.ndarray  # (M, 2) int32 source pixel (column u, row v) in the processed image

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


def _check_percentile(percentile: float) -> float:
    p = float(percentile)
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"confidence percentile must be between 0 and 100, got {percentile}")
    return p


def confidence_threshold(conf: np.ndarray, percentile: float, valid: np.ndarray | None = None) -> float:
    """The ``percentile`` (0–100) of the finite confidences (over ``valid`` pixels when given).

    Returns ``-inf`` for percentile 0 (keep everything) and ``inf`` when no value qualifies.
    """
    p = _check_percentile(percentile)
    if p == 0.0:
        return float("-inf")
    values = np.asarray(conf)
    values = values[valid] if valid is not None else values.ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("inf")
    return float(np.percentile(values, p))


def valid_depth_mask(depth: np.ndarray, sky: np.ndarray | None = None) -> np.ndarray:
    """Pixels with a finite, positive depth that are not sky: bool, same shape as ``depth``."""
    depth = np.asarray(depth)
    mask = np.isfinite(depth) & (depth > 0)
    if sky is not None:
        sky = np.asarray(sky, bool)
        if sky.shape != depth.shape:
            raise ValueError(f"sky mask shape {sky.shape} does not match depth shape {depth.shape}")
        mask &= ~sky
    return mask


def point_mask(
    depth: np.ndarray,
    conf: np.ndarray | None,
    *,
    conf_percentile: float = DEFAULT_CONF_PERCENTILE,
    sky: np.ndarray | None = None,
) -> np.ndarray:
    """Pixels worth a point: finite, depth > 0, not sky and ``conf >= percentile threshold``.

    depth/conf/sky: (N, H, W) (any equal shapes) → bool mask of that shape. The threshold is taken over
    the valid (finite, positive, non-sky) pixels of all views together. ``conf=None`` skips the test.
    """
    mask = valid_depth_mask(depth, sky)
    if conf is None:
        return mask
    conf = np.asarray(conf)
    if conf.shape != mask.shape:
        raise ValueError(f"confidence shape {conf.shape} does not match depth shape {mask.shape}")
    threshold = confidence_threshold(conf, conf_percentile, valid=mask)
    if threshold > -np.inf:
        mask &= conf >= threshold
    return mask


def subsample(n: int, budget: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``budget`` of ``n`` items, sorted, the same for the same (n, budget, seed).

    ``budget=None`` (or ≥ n) keeps everything.
    """
    n = int(n)
    if budget is None or budget >= n:
        return np.arange(n, dtype=np.int64)
    if budget < 0:
        raise ValueError(f"point budget must be positive, got {budget}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, size=int(budget), replace=False, shuffle=False)
    idx.sort()
    return idx.astype(np.int64, copy=False)


def gather_points(
    depth: np.ndarray,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    images: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    sky: np.ndarray | None = None,
    *,
    budget: int | None = 2_000_000,
    conf_percentile: float = DEFAULT_CONF_PERCENTILE,
    seed: int = 0,
    mask: np.ndarray | None = None,
) -> PointSet:
    """World points from a prediction, filtered by ``point_mask`` and cut to ``budget`` points.

    depth (N, H, W) z-depth; intrinsics (N, 3, 3); extrinsics (N, 3, 4) w2c; images (N, H, W, 3) uint8
    or None (grey points); conf (N, H, W) or None; sky (N, H, W) bool or None; mask: an extra
    (N, H, W) bool keep-mask (e.g. a user selection). Points come out ordered by view, then row.
    """
    depth = np.asarray(depth)
    if depth.ndim != 3:
        raise ValueError(f"depth must have shape (N, H, W), got {depth.shape}")
    n, h, w = depth.shape
    intrinsics = np.asarray(intrinsics, np.float64)
    extrinsics = np.asarray(extrinsics, np.float64)
    if (
        intrinsics.shape != (n, 3, 3)
        or extrinsics.shape[0] != n
        or extrinsics.shape[1:] not in ((3, 4), (4, 4))
    ):
        raise ValueError(
            f"intrinsics (N, 3, 3) and extrinsics (N, 3, 4) must match depth {depth.shape}: "
            f"got {intrinsics.shape} and {extrinsics.shape}"
        )
    if images is not None and np.shape(images) != (n, h, w, 3):
        raise ValueError(f"images must have shape {(n, h, w, 3)}, got {np.shape(images)}")

    keep = point_mask(depth, conf, conf_percentile=conf_percentile, sky=sky)
    if mask is not None:
        keep &= np.asarray(mask, bool)
    flat = np.flatnonzero(keep)  # indices into N*H*W
    flat = flat[subsample(flat.size, budget, seed)]

    view, rem = np.divmod(flat, h * w)
    row, col = np.divmod(rem, w)
    pixel = np.stack([col, row], -1).astype(np.int32)  # (M, 2) (u, v)
    d = depth.reshape(-1)[flat]
    xyz = np.empty((flat.size, 3), np.float32)
    bounds = np.searchsorted(view, np.arange(n + 1))  # flat is sorted, so each view is one slice
    for i in np.flatnonzero(np.diff(bounds)):
        sl = slice(bounds[i], bounds[i + 1])
        xyz[sl] = unproject_pixels(pixel[sl], d[sl], intrinsics[i], extrinsics[i, :3, :])
    if images is not None:
        rgb = np.asarray(images).reshape(-1, 3)[flat].astype(np.uint8, copy=False)
    else:
        rgb = np.full((flat.size, 3), _NO_IMAGE_GREY, np.uint8)
    if conf is not None:
        c = np.asarray(conf).reshape(-1)[flat].astype(np.float32)
    else:
        c = np.ones(flat.size, np.float32)
    return PointSet(xyz=xyz, rgb=rgb, conf=c, view=view.astype(np.int32), pixel=pixel)
