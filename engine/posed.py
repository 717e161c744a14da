"""Known cameras in, predictions out (numpy): the pose-conditioned path around the network.

1. ``normalize_extrinsics``: the camera encoder sees poses relative to view 0, with translations
   divided by the median camera distance (floored at 0.1), as the official pipeline does.
2. ``input_pose_scale``: after the network, the scale between the given and the predicted
   camera centres (Umeyama; a RANSAC variant from 10 views on) brings depth into the units of
   the given cameras. Unlike the official code this never fails: 1–2 views and collinear rigs
   (a dolly shot) fall back to ``align_centers``, and a single camera keeps the network's scale.
"""

from __future__ import annotations

import numpy as np

from .geometry.sim3 import DegenerateAlignment, Sim3, align_centers, umeyama

RANSAC_MIN_VIEWS = 10
RANSAC_ITERS = 10
RANSAC_SEED = 42


def as_w2c_4x4(extrinsics: np.ndarray) -> np.ndarray:
    """(N,3,4) or (N,4,4) world-to-camera → (N,4,4) float64."""
    e = np.asarray(extrinsics, dtype=np.float64)
    if e.ndim != 3 or e.shape[1:] not in ((3, 4), (4, 4)):
        raise ValueError(f"extrinsics must be (N, 3, 4) or (N, 4, 4) world-to-camera matrices, got {e.shape}")
    out = np.tile(np.eye(4), (len(e), 1, 1))
    out[:, :3, :] = e[:, :3, :]
    return out


def camera_centres(w2c: np.ndarray) -> np.ndarray:
    """(N,3|4,4) → (N,3) centres ``−Rᵀt``."""
    r, t = w2c[:, :3, :3], w2c[:, :3, 3]
    return -np.einsum("nji,nj->ni", r, t)


def normalize_extrinsics(w2c: np.ndarray) -> np.ndarray:
    """(N,4,4) → (N,4,4): ``E_i · E_0⁻¹``, translations divided by max(lower median distance, 0.1).

    The distances include view 0's own zero, as upstream. For two views that median is always 0,
    so upstream divides by the 0.1 floor and the network sees the rig in the user's units; we use
    the other camera's distance instead, so a two-view rig is normalised like every other one.
    """
    rel = w2c @ np.linalg.inv(w2c[0])
    dist = np.linalg.norm(camera_centres(rel), axis=1)
    median = np.sort(dist)[(len(dist) - 1) // 2]  # torch.median: the lower middle element
    if median <= 1e-9 and np.any(dist > 1e-9):
        moved = np.sort(dist[dist > 1e-9])
        median = moved[(len(moved) - 1) // 2]
    rel[:, :3, 3] /= max(median, 0.1)
    return rel


def _ransac(src: np.ndarray, dst: np.ndarray) -> Sim3:
    """Official-style RANSAC over camera centres: subsets of ⌈n/2⌉ (≥ 3), inlier threshold = median
    nearest-neighbour distance after a first full fit, best inlier set refitted."""
    rng = np.random.default_rng(RANSAC_SEED)
    n = len(src)
    first = umeyama(src, dst)
    aligned = first.apply(src)
    thresh = float(np.median(np.min(np.linalg.norm(aligned[:, None] - dst[None], axis=-1), axis=1)))
    best, best_key, best_inliers = first, (-1, np.inf), None
    for _ in range(RANSAC_ITERS):
        sample = rng.choice(n, size=max(3, (n + 1) // 2), replace=False)
        try:
            sim = umeyama(src[sample], dst[sample])
        except DegenerateAlignment:
            continue
        err = np.linalg.norm(sim.apply(src) - dst, axis=1)
        inliers = err <= thresh
        k = int(inliers.sum())
        key = (k, float(err[inliers].mean()) if k else np.inf)
        if key[0] > best_key[0] or (key[0] == best_key[0] and key[1] < best_key[1]):
            best, best_key, best_inliers = sim, key, inliers
    if best_inliers is not None and best_inliers.sum() >= 3:
        try:
            return umeyama(src[best_inliers], dst[best_inliers])
        except DegenerateAlignment:
            pass
    return best


def input_pose_scale(predicted_w2c: np.ndarray, given_w2c: np.ndarray) -> float:
    """s with ``predicted centres ≈ s·R·given centres + t``; depth / s is in the given cameras' units."""
    src, dst = camera_centres(as_w2c_4x4(given_w2c)), camera_centres(as_w2c_4x4(predicted_w2c))
    try:
        sim = _ransac(src, dst) if len(src) >= RANSAC_MIN_VIEWS else umeyama(src, dst)
    except DegenerateAlignment:
        sim = align_centers(src, dst)
    return float(sim.s) if np.isfinite(sim.s) and sim.s > 0 else 1.0
