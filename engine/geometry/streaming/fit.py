"""The Sim(3) between two chunks, fitted on their overlap frames (robust, then refit on the inliers)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..cameras import camera_centers
from ..sim3 import DegenerateAlignment, Sim3, robust_sim3
from ..unproject import unproject_pixels
from .chunks import (
    CONF_FRACTION,
    CONF_OFFSET,
    HUBER_RELATIVE,
    MAX_FIT_POINTS,
    MIN_FIT_POINTS,
    ChunkJoint,
    ChunkPrediction,
    shifted_conf,
    valid_depth,
)


def _sim3_from_cameras(prev: ChunkPrediction, nxt: ChunkPrediction, frames: np.ndarray) -> Sim3:
    """Sim(3) next → prev from the overlap cameras alone (a fallback when too few pixels are usable).

    A camera seen in both worlds fixes ``R = R_pᵀ R_n`` (chordal mean over the overlap frames) and
    ``C_p = s R C_n + t``; the scale is the median ratio of the two depth maps (1 without depth).
    """
    ip, jn = prev.rows(frames), nxt.rows(frames)
    rp = np.asarray(prev.extrinsics[ip, :, :3], np.float64)
    rn = np.asarray(nxt.extrinsics[jn, :, :3], np.float64)
    u, _, vt = np.linalg.svd(np.einsum("fji,fjk->ik", rp, rn))
    rot = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    dp, dn = prev.depth[ip], nxt.depth[jn]
    ok = valid_depth(dp) & valid_depth(dn)
    s = float(np.median(dp[ok] / dn[ok])) if ok.any() else 1.0
    cp, cn = camera_centers(prev.extrinsics[ip]), camera_centers(nxt.extrinsics[jn])
    t = np.mean(cp - s * cn @ rot.T, axis=0)
    return Sim3(s, rot, t)


def _unproject_flat(idx: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """World points (M, 3) of the sorted flat pixel indices ``idx`` into ``depth (m, H, W)``, frame by frame.

    One camera per frame (no per-point matrices), so memory stays at a few arrays of (M, 3).
    """
    m, h, w = depth.shape
    f, v, u = np.unravel_index(idx, depth.shape)
    out = np.empty((len(idx), 3))
    bounds = np.searchsorted(f, np.arange(m + 1))
    for i in range(m):
        a, b = bounds[i], bounds[i + 1]
        if b > a:
            pix = np.stack([u[a:b], v[a:b]], -1)
            out[a:b] = unproject_pixels(pix, depth[i].reshape(-1)[idx[a:b] - i * h * w], K[i], w2c[i])
    return out


def fit_chunk_transform(
    prev_chunk: ChunkPrediction,
    next_chunk: ChunkPrediction,
    overlap_frames: np.ndarray | None = None,
    *,
    max_points: int = MAX_FIT_POINTS,
    conf_offset: float = CONF_OFFSET,
    huber_relative: float = HUBER_RELATIVE,
    seed: int = 0,
    known: bool = False,
) -> ChunkJoint:
    """Robust Sim(3) mapping ``next_chunk``'s world into ``prev_chunk``'s, from their shared frames.

    overlap_frames: (m,) global frame indices in both chunks (default: every shared frame).
    Pixels are kept where both depths are valid and both confidences (less ``conf_offset``) exceed
    ``0.1 · min(median conf)``; at most ``max_points`` of them (a deterministic random subset,
    ``seed``) are back-projected through each chunk's camera for that frame, weighted by
    ``√(conf_p·conf_n)`` and fitted with ``robust_sim3`` (Huber δ = ``huber_relative`` × scene
    scale, the median depth of the kept pixels in the previous chunk), then refitted on the pairs
    within δ with the spread-ratio scale (``scale_method="rms"``; see the comment in the code).
    With fewer than ``MIN_FIT_POINTS`` usable pixels (or a degenerate set), the joint falls back to
    the overlap cameras (``method="cameras"``).

    ``known``: both chunks are already in one world (each was conditioned on the same known cameras,
    which it keeps exactly), so the joint is the identity, never fitted: a fit would move the later
    chunk's cameras off the known ones by its own noise, and joint after joint that would add up. Its
    residuals are still measured, the same way, as a check on how well the chunks' depth agrees
    (``method="known"``).
    """
    if overlap_frames is None:
        overlap_frames = np.intersect1d(prev_chunk.frames, next_chunk.frames)
    frames = np.asarray(overlap_frames, np.int64).reshape(-1)
    if len(frames) == 0:
        raise ValueError(
            f"chunks ending at frame {prev_chunk.frames[-1]} and starting at frame {next_chunk.frames[0]} "
            "share no frame: give consecutive chunks an overlap of at least one frame"
        )
    if prev_chunk.image_hw != next_chunk.image_hw:
        raise ValueError(
            f"chunks were processed at different sizes ({prev_chunk.image_hw} and {next_chunk.image_hw}); "
            "process every chunk of a shot at the same resolution"
        )
    ip, jn = prev_chunk.rows(frames), next_chunk.rows(frames)
    dp = np.asarray(prev_chunk.depth[ip], np.float32)  # (m, H, W)
    dn = np.asarray(next_chunk.depth[jn], np.float32)
    cp = shifted_conf(None if prev_chunk.conf is None else prev_chunk.conf[ip], dp, conf_offset)
    cn = shifted_conf(None if next_chunk.conf is None else next_chunk.conf[jn], dn, conf_offset)
    valid = valid_depth(dp) & valid_depth(dn)
    if valid.any():
        thr = CONF_FRACTION * min(float(np.median(cp[valid])), float(np.median(cn[valid])))
        valid &= (cp > thr) & (cn > thr)
    idx = np.flatnonzero(valid)
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=int(max_points), replace=False))

    def cameras_fallback() -> ChunkJoint:
        return ChunkJoint(
            _sim3_from_cameras(prev_chunk, next_chunk, frames),
            *(float("nan"),) * 3,
            0.0,
            int(len(idx)),
            float(np.median(dp[valid])) if valid.any() else float("nan"),
            len(frames),
            method="cameras",
        )

    if known and len(idx) == 0:
        return replace(cameras_fallback(), sim3=Sim3(), method="known")
    if len(idx) < MIN_FIT_POINTS and not known:
        return cameras_fallback()
    xp = _unproject_flat(idx, dp, prev_chunk.intrinsics[ip], prev_chunk.extrinsics[ip])
    xn = _unproject_flat(idx, dn, next_chunk.intrinsics[jn], next_chunk.extrinsics[jn])
    weights = np.sqrt(cp.reshape(-1)[idx].astype(np.float64) * cn.reshape(-1)[idx])
    scene_scale = float(np.median(dp.reshape(-1)[idx]))
    delta = huber_relative * scene_scale
    if known:
        sim = Sim3()
        resid = np.linalg.norm(xp - xn, axis=1)
        return _joint(sim, resid, weights, delta, scene_scale, len(frames), "known")
    try:
        sim, resid = robust_sim3(xn, xp, weights, delta=delta)
        inlier = resid < delta
        # Refit on the inliers alone with DA3-Streaming's spread-ratio scale: Huber leaves gross
        # outliers a weight δ/r (a small pull), and Umeyama's scale shrinks with the noise of the
        # source points (regression dilution: σ²_src grows, the covariance does not), which
        # compounds from joint to joint. The spread ratio is unbiased when both chunks are equally
        # noisy, and its own weakness, outliers, is gone once only inliers remain.
        if inlier.sum() >= MIN_FIT_POINTS:
            sim, _ = robust_sim3(xn[inlier], xp[inlier], weights[inlier], delta=delta, scale_method="rms")
            resid = np.linalg.norm(xp - sim.apply(xn), axis=1)
    except DegenerateAlignment:
        return cameras_fallback()
    return _joint(sim, resid, weights, delta, scene_scale, len(frames), "points")


def _joint(
    sim: Sim3,
    resid: np.ndarray,
    weights: np.ndarray,
    delta: float,
    scene_scale: float,
    overlap_frames: int,
    method: str,
) -> ChunkJoint:
    """The joint of ``sim`` with its residuals ``(M,)`` (inliers: within the Huber δ)."""
    inlier = resid < delta
    rms = float(np.sqrt(np.average(resid[inlier] ** 2, weights=weights[inlier]))) if inlier.any() else np.inf
    return ChunkJoint(
        sim3=sim,
        residual_rms=rms,
        residual_median=float(np.median(resid)),
        relative_residual=rms / scene_scale,
        inlier_fraction=float(inlier.mean()),
        n_points=int(len(resid)),
        scene_scale=scene_scale,
        overlap_frames=overlap_frames,
        method=method,
    )
