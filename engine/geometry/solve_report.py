"""Solve report: how well the solved cameras and depth match the footage, in pixels of the plate.

Blender's camera solver reports the average reprojection error of its tracks (below 0.3 px is
accurate, up to 3 px usable). We have no tracks but dense depth and the frames themselves, so we
measure two things between each frame ``i`` and its neighbours ``j = i ± d`` (``d`` in
``neighbours``), each pair both ways:

**Reprojection error** (the headline, needs the images). Take a textured, confident pixel ``p`` of
frame ``i``; its 3D point ``X`` (frame ``i``'s depth and camera) projects into frame ``j`` at ``q``.
If the cameras and depth are right, frame ``j`` shows at ``q`` what frame ``i`` shows at ``p``. We
find where that content really is in ``j`` — a 7×7 patch of ``i`` around ``p`` matched in ``j`` near
``q`` (an integer normalised-cross-correlation search of ±``search`` pixels, then Lucas–Kanade to
sub-pixel) — and the error is the distance between that place and ``q``, in ``j``'s image. This is
what a 2D track would disagree with: a CG object placed at ``X`` and rendered with camera ``j`` lands
that far from the plate's content. A rotation error of a camera shows up in full (``f·angle``); a
depth error only through the parallax between the two frames, as it would on the plate.

**Depth consistency** (no images needed). ``X`` from frame ``i`` projects to ``q`` in ``j``; ``Y`` is
the point on ``j``'s ray through ``q`` at frame ``j``'s depth there (inverse depth interpolated
bilinearly, exact on planes); ``Y`` projected back into ``i`` lands at ``p'``; the error is
``‖p' − p‖`` in ``i``'s image: the depth disagreement along ``j``'s ray seen as image motion through
the parallax. It is 0 when the depth maps agree, but, like any depth-only check, it cannot see a
camera that slides along a flat surface (the ``i`` depth slides with it), so it is not the headline.

Units: errors are converted from processed to plate pixels per axis with ``fx_plate/fx`` and
``fy_plate/fy`` (intrinsics at the plate size), or ``W_plate/W``, ``H_plate/H``. Aggregation: per
direction the median over the sampled pixels (occlusions, depth edges and failed matches are
outvoted); per frame the median over every direction of every pair it belongs to, so one bad
frame spoils its own number but only a minority of its neighbours' directions. Frames arrive in
blocks with a sliding window of ``max(neighbours)`` frames, so memory does not grow with the shot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .streaming.chunks import CONF_OFFSET  # DA3 confidence is ≥ 1
from .trajectory import robust_focal

__all__ = [
    "SolveReport",
    "build_solve_report",
    "frame_errors",
    "match_offsets",
    "round_trip_errors",
]

DEFAULT_NEIGHBOURS = (1, 2, 4)
DEFAULT_SAMPLES = 200  # pixels per frame and direction
MIN_VALID = 12  # measurements a direction needs before its median counts
PATCH_RADIUS = 3  # 7×7 patches
SEARCH_RADIUS = 4  # integer search ±4 processed pixels before sub-pixel refinement
LK_ITERATIONS = 8
MIN_NCC = 0.8  # a match must correlate at least this well after refinement


# ---------------------------------------------------------------------------------------------- geometry


def _unproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Continuous pixel coordinates ``uv (M, 2)`` at z-depth ``(M,)`` → world points ``(M, 3)``."""
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    x = (uv[:, 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    cam = np.stack([x * depth, y * depth, depth], -1)
    return (cam - w2c[:3, 3]) @ w2c[:3, :3]


def _project(points: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(M, 3)`` → continuous pixel coordinates ``(M, 2)`` and z ``(M,)``."""
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        img = cam @ K.T
        return img[:, :2] / img[:, 2:3], cam[:, 2]


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``img (H, W)`` at continuous coordinates (pixel centres at +0.5); ``(values, inside)``."""
    h, w = img.shape
    gx, gy = x - 0.5, y - 0.5
    inside = np.isfinite(gx) & np.isfinite(gy) & (gx >= 0) & (gy >= 0) & (gx <= w - 1) & (gy <= h - 1)
    gx, gy = np.where(inside, gx, 0.0), np.where(inside, gy, 0.0)
    x0 = np.minimum(np.floor(gx).astype(np.int64), max(w - 2, 0))
    y0 = np.minimum(np.floor(gy).astype(np.int64), max(h - 2, 0))
    fx, fy = gx - x0, gy - y0
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    top = (1 - fx) * img[y0, x0] + fx * img[y0, x1]
    bottom = (1 - fx) * img[y1, x0] + fx * img[y1, x1]
    return (1 - fy) * top + fy * bottom, inside


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic convolution weights (a = −0.5) of the four taps at −1, 0, 1, 2 for fractions ``t``."""
    t2, t3 = t * t, t * t * t
    return np.stack(
        [
            -0.5 * t3 + t2 - 0.5 * t,
            1.5 * t3 - 2.5 * t2 + 1.0,
            -1.5 * t3 + 2.0 * t2 + 0.5 * t,
            0.5 * t3 - 0.5 * t2,
        ],
        -1,
    )


def _patches(img: np.ndarray, pos: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(2r+1)² patches of ``img (H, W)`` centred at continuous ``pos (M, 2)``, Keys-bicubic resampled.

    Returns ``(values (M, P) row-major, inside (M,))``. Every pixel of a patch shares the centre's
    sub-pixel fraction, so one (2r+4)² window per patch and a separable 4-tap filter do it. Bicubic
    rather than bilinear: bilinear resampling pulls sub-pixel matches toward pixel centres.
    """
    h, w = img.shape
    k = 2 * radius + 1
    g = pos - 0.5  # pixel-centre grid coordinates
    inside = np.isfinite(g).all(1)
    inside &= (g[:, 0] >= radius + 1) & (g[:, 1] >= radius + 1)
    inside &= (g[:, 0] <= w - radius - 3) & (g[:, 1] <= h - radius - 3)
    g = np.where(inside[:, None], g, radius + 1.0)
    base = np.floor(g).astype(np.int64)  # (M, 2)
    wx, wy = _cubic_weights(g[:, 0] - base[:, 0]), _cubic_weights(g[:, 1] - base[:, 1])  # (M, 4)
    o = np.arange(-radius - 1, radius + 3)  # window offsets, k + 3 of them
    win = img[(base[:, 1, None] + o)[:, :, None], (base[:, 0, None] + o)[:, None, :]]  # (M, k+3, k+3)
    rows = sum(wx[:, i, None, None] * win[:, :, i : i + k] for i in range(4))  # (M, k+3, k)
    out = sum(wy[:, j, None, None] * rows[:, j : j + k, :] for j in range(4))  # (M, k, k)
    return out.reshape(len(pos), k * k), inside


def _depth_at(depth: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Depth at ``uv (M, 2)`` by bilinear interpolation of 1/depth (exact on planes); NaN near holes."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.asarray(depth, np.float64)
    inv = np.where(np.isfinite(inv) & (inv > 0), inv, np.nan)  # a hole poisons its four neighbours
    value, inside = _bilinear(inv, uv[:, 0], uv[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inside & (value > 0), 1.0 / value, np.nan)


def round_trip_errors(
    pixels: np.ndarray,
    depth_i: np.ndarray,
    K_i: np.ndarray,
    w2c_i: np.ndarray,
    depth_j: np.ndarray,
    K_j: np.ndarray,
    w2c_j: np.ndarray,
) -> np.ndarray:
    """Depth-consistency shifts ``p' − p`` (M, 2) in frame ``i``'s processed pixels (NaN: trip failed).

    pixels: (M, 2) integer (column, row) of frame ``i``; depth_*: (H, W) z-depth; K_*: (3, 3);
    w2c_*: (3, 4). See the module docstring.
    """
    pix = np.asarray(pixels, np.int64).reshape(-1, 2)
    K_i, K_j = np.asarray(K_i, np.float64), np.asarray(K_j, np.float64)
    w2c_i, w2c_j = np.asarray(w2c_i, np.float64), np.asarray(w2c_j, np.float64)
    p = pix + 0.5
    d = np.asarray(depth_i, np.float64)[pix[:, 1], pix[:, 0]]
    q, zq = _project(_unproject(p, d, K_i, w2c_i), K_j, w2c_j)
    dj = _depth_at(depth_j, np.where((zq > 0)[:, None], q, np.nan))
    p2, z2 = _project(_unproject(q, dj, K_j, w2c_j), K_i, w2c_i)
    out = p2 - p
    out[~(np.isfinite(d) & (d > 0) & (z2 > 0) & np.isfinite(out).all(1))] = np.nan
    return out


# ---------------------------------------------------------------------------------------------- matching


def _gray(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) → float32 luma in [0, 1] (Rec. 709 weights)."""
    return (np.asarray(image, np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)) / 255.0


def _texture(gray: np.ndarray, radius: int = PATCH_RADIUS) -> np.ndarray:
    """Smaller eigenvalue of the structure tensor over a (2r+1)² window, (H, W): corners and texture."""
    gy, gx = np.gradient(gray)
    k = 2 * radius + 1

    def box(a: np.ndarray) -> np.ndarray:
        c = np.pad(a, radius, mode="edge").cumsum(0).cumsum(1)
        c = np.pad(c, ((1, 0), (1, 0)))
        return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]

    sxx, syy, sxy = box(gx * gx), box(gy * gy), box(gx * gy)
    return 0.5 * (sxx + syy - np.sqrt((sxx - syy) ** 2 + 4 * sxy**2))


def _zncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Zero-mean normalised cross-correlation of patch rows ``(..., P)``."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / den, -1.0)


def _box_sums(win: np.ndarray, k: int) -> np.ndarray:
    """Sums over every k×k sub-window of ``win (M, n, n)`` → ``(M, n−k+1, n−k+1)`` (summed-area table)."""
    c = np.pad(win.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    return c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]


def match_offsets(
    pixels: np.ndarray,
    gray_i: np.ndarray,
    predicted: np.ndarray,
    gray_j: np.ndarray,
    *,
    radius: int = PATCH_RADIUS,
    search: int = SEARCH_RADIUS,
    iterations: int = LK_ITERATIONS,
    min_ncc: float = MIN_NCC,
) -> np.ndarray:
    """Where frame ``i``'s patches really are in frame ``j``, relative to where they were predicted.

    pixels: (M, 2) integer (column, row) patch centres in ``i``; predicted: (M, 2) continuous
    positions in ``j``; gray_*: (H, W) float images. Returns offsets (M, 2) in ``j``'s processed pixels
    (NaN where a patch leaves an image or no match correlates ≥ ``min_ncc``): an integer ZNCC
    search over ±``search`` pixels, then inverse-compositional Lucas–Kanade (translation, zero-mean
    patches) to sub-pixel.
    """
    pix = np.asarray(pixels, np.int64).reshape(-1, 2)
    pred = np.asarray(predicted, np.float64).reshape(-1, 2)
    hi, wi = gray_i.shape
    h, w = gray_j.shape
    r, s = int(radius), int(search)
    k = 2 * r + 1
    ok = (pix[:, 0] >= r) & (pix[:, 0] < wi - r) & (pix[:, 1] >= r) & (pix[:, 1] < hi - r)
    margin = r + s + 1
    ok &= np.isfinite(pred).all(1)
    with np.errstate(invalid="ignore"):
        ok &= (
            (pred[:, 0] >= margin)
            & (pred[:, 0] <= w - margin)
            & (pred[:, 1] >= margin)
            & (pred[:, 1] <= h - margin)
        )
    pix = np.where(ok[:, None], pix, r)
    base = np.floor(np.where(ok[:, None], pred, margin)).astype(np.int64)  # pixel that holds q
    o = np.arange(-r, r + 1)
    oy, ox = (a.reshape(-1) for a in np.meshgrid(o, o, indexing="ij"))  # (P,) patch offsets
    gi = np.asarray(gray_i, np.float64)
    template = gi[pix[:, 1, None] + oy, pix[:, 0, None] + ox]  # (M, P)
    t0 = template - template.mean(1, keepdims=True)
    t_hat = t0 / np.maximum(np.linalg.norm(t0, axis=1, keepdims=True), 1e-12)

    # Integer ZNCC search: one (2s+2r+1)² window per patch, every candidate a sliding view of it.
    gj = np.asarray(gray_j, np.float64)
    ow = np.arange(-(r + s), r + s + 1)
    wy, wx = (a.reshape(-1) for a in np.meshgrid(ow, ow, indexing="ij"))
    side = len(ow)
    win = gj[base[:, 1, None] + wy, base[:, 0, None] + wx].reshape(-1, side, side)
    views = np.lib.stride_tricks.sliding_window_view(win, (k, k), axis=(1, 2))  # (M, 2s+1, 2s+1, k, k)
    num = np.einsum("mabij,mij->mab", views, t_hat.reshape(-1, k, k))
    sums, sq = _box_sums(win, k), _box_sums(win * win, k)  # (M, 2s+1, 2s+1) per candidate
    spread = np.sqrt(np.maximum(sq - sums * sums / (k * k), 1e-24))
    score = (num / spread).reshape(len(pix), -1)
    best = np.argmax(score, axis=1)
    pos = base + 0.5 + np.stack([best % (2 * s + 1), best // (2 * s + 1)], -1) - s

    # Inverse-compositional Lucas–Kanade on zero-mean patches: the template's gradients fix the
    # Gauss–Newton matrix, each round samples frame j once.
    gy_img, gx_img = np.gradient(gi)
    tgx = gx_img[pix[:, 1, None] + oy, pix[:, 0, None] + ox]
    tgy = gy_img[pix[:, 1, None] + oy, pix[:, 0, None] + ox]
    tgx -= tgx.mean(1, keepdims=True)
    tgy -= tgy.mean(1, keepdims=True)
    a, b, c = (tgx * tgx).sum(1), (tgx * tgy).sum(1), (tgy * tgy).sum(1)
    det = a * c - b * b
    solvable = det > 1e-12 * np.maximum(a + c, 1e-12) ** 2
    det = np.where(solvable, det, 1.0)
    inside = ok.copy()
    for _ in range(int(iterations)):
        val, ins = _patches(gj, pos, r)
        inside &= ins
        res = (val - val.mean(1, keepdims=True)) - t0
        ex, ey = (tgx * res).sum(1), (tgy * res).sum(1)
        step = np.stack([c * ex - b * ey, a * ey - b * ex], -1) / det[:, None]
        step = np.clip(np.where(solvable[:, None], step, 0.0), -1.0, 1.0)
        pos = pos - step
        if np.abs(step).max(initial=0.0) < 1e-3:  # every patch has converged
            break
    val, ins = _patches(gj, pos, r)
    good = inside & ins & solvable & (_zncc(template, val) >= min_ncc)
    offsets = pos - pred
    with np.errstate(invalid="ignore"):
        good &= np.abs(offsets).max(1) <= s + 1
    offsets[~good] = np.nan
    return offsets


# ---------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class _Frame:
    depth: np.ndarray  # (H, W)
    conf: np.ndarray | None  # (H, W)
    K: np.ndarray  # (3, 3)
    w2c: np.ndarray  # (3, 4)
    scale: np.ndarray  # (2,) processed → plate pixels (x, y)
    gray: np.ndarray | None  # (H, W) float32
    texture: np.ndarray | None  # (H, W) structure-tensor response


def _make_frame(depth, conf, K, w2c, scale, image) -> _Frame:
    gray = None if image is None else _gray(image)
    tex = None if gray is None else _texture(gray)
    return _Frame(
        np.asarray(depth),
        conf,
        np.asarray(K, np.float64),
        np.asarray(w2c, np.float64)[:3],
        np.asarray(scale, np.float64),
        gray,
        tex,
    )


def _confident(frame: _Frame) -> np.ndarray:
    ok = np.isfinite(frame.depth) & (frame.depth > 0)
    if frame.conf is not None and ok.any():
        c = np.asarray(frame.conf, np.float32) - CONF_OFFSET
        ok &= c > 0.1 * float(np.median(c[ok]))
    return ok


def _pick(mask: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` pixels (column, row) of ``mask``, deterministic for ``seed``."""
    idx = np.flatnonzero(mask)
    if len(idx) > n:
        idx = np.random.default_rng(seed).choice(idx, size=n, replace=False)
    v, u = np.divmod(idx, mask.shape[1])
    return np.stack([u, v], -1)


def _textured_pixels(frame: _Frame, n: int, seed: int) -> np.ndarray:
    """Confident pixels with texture (top half of the structure-tensor response), away from the border."""
    ok = _confident(frame)
    r = PATCH_RADIUS
    ok[:r], ok[-r:], ok[:, :r], ok[:, -r:] = False, False, False, False
    if not ok.any():
        return np.zeros((0, 2), np.int64)
    tex = frame.texture
    ok &= tex > max(float(np.median(tex[ok])), 1e-6)
    return _pick(ok, n, seed)


@dataclass
class _Direction:
    depth_px: float = float("nan")
    image_px: float = float("nan")


def _measure(src: _Frame, dst: _Frame, samples: int, seed: int) -> _Direction:
    """One direction src → dst: median depth-consistency (in src) and reprojection error (in dst)."""
    out = _Direction()
    pix = _pick(_confident(src), samples, seed)
    if len(pix):
        err = np.linalg.norm(
            round_trip_errors(pix, src.depth, src.K, src.w2c, dst.depth, dst.K, dst.w2c) * src.scale, axis=1
        )
        err = err[np.isfinite(err)]
        if len(err) >= MIN_VALID:
            out.depth_px = float(np.median(err))
    if src.gray is not None and dst.gray is not None:
        pix = _textured_pixels(src, samples, seed + 1)
        if len(pix):
            d = src.depth[pix[:, 1], pix[:, 0]].astype(np.float64)
            q, z = _project(_unproject(pix + 0.5, d, src.K, src.w2c), dst.K, dst.w2c)
            q[~(z > 0)] = np.nan
            off = match_offsets(pix, src.gray, q, dst.gray)
            err = np.linalg.norm(off * dst.scale, axis=1)
            err = err[np.isfinite(err)]
            if len(err) >= MIN_VALID:
                out.image_px = float(np.median(err))
    return out


class _Accumulator:
    """Per-direction medians, ``(F, 4·len(neighbours))`` per metric, filled block by block.

    For a pair (a, b = a + d) both directions are stored for both frames: columns 4k, 4k+1 of ``a``
    (as the earlier frame) and 4k+2, 4k+3 of ``b`` (as the later frame).
    """

    def __init__(self, frames: np.ndarray, neighbours: Sequence[int], samples: int, seed: int):
        self.frames = np.asarray(frames, np.int64)
        self.offsets = sorted({int(d) for d in neighbours if int(d) > 0})
        if not self.offsets:
            raise ValueError(f"neighbours must hold positive frame offsets, got {list(neighbours)}")
        self.samples, self.seed = int(samples), int(seed)
        shape = (len(self.frames), 4 * len(self.offsets))
        self.depth = np.full(shape, np.nan)
        self.image = np.full(shape, np.nan)
        self.window: dict[int, _Frame] = {}  # position → recent frames

    def add(self, pos: int, frame: _Frame) -> None:
        """The frame at position ``pos`` of ``frames`` (positions must come in increasing order)."""
        self.window[pos] = frame
        for k, d in enumerate(self.offsets):
            a = pos - d
            if a in self.window:
                fa, fb = self.window[a], frame
                ab = _measure(fa, fb, self.samples, self.seed + int(self.frames[a]))
                ba = _measure(fb, fa, self.samples, self.seed + int(self.frames[pos]))
                for table, x, y in (
                    (self.depth, ab.depth_px, ba.depth_px),
                    (self.image, ab.image_px, ba.image_px),
                ):
                    table[a, 4 * k : 4 * k + 2] = x, y
                    table[pos, 4 * k + 2 : 4 * k + 4] = x, y
        for old in [p for p in self.window if p <= pos - self.offsets[-1]]:
            del self.window[old]

    @staticmethod
    def per_frame(table: np.ndarray) -> np.ndarray:
        out = np.full(len(table), np.nan)
        seen = np.isfinite(table).any(1)
        out[seen] = np.nanmedian(table[seen], axis=1)
        return out


def frame_errors(
    depth: np.ndarray,
    intrinsics: np.ndarray,
    extrinsics: np.ndarray,
    conf: np.ndarray | None = None,
    images: np.ndarray | None = None,
    *,
    neighbours: Sequence[int] = DEFAULT_NEIGHBOURS,
    samples: int = DEFAULT_SAMPLES,
    pixel_scale: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame ``(reprojection error, depth-consistency error)``, each (F,), of frames in memory.

    depth, conf: (F, H, W); intrinsics: (F, 3, 3); extrinsics: (F, 3, 4); images: (F, H, W, 3) uint8
    or None (then the reprojection error is all NaN); pixel_scale: (F, 2) or (2,) processed → plate
    factors (x, y), or None for processed pixels. NaN for a frame without a measurable neighbour.
    """
    n = len(depth)
    scale = np.broadcast_to(
        np.ones(2) if pixel_scale is None else np.asarray(pixel_scale, np.float64), (n, 2)
    )
    acc = _Accumulator(np.arange(n), neighbours, samples, seed)
    for i in range(n):
        acc.add(
            i,
            _make_frame(
                depth[i],
                None if conf is None else conf[i],
                intrinsics[i],
                extrinsics[i],
                scale[i],
                None if images is None else images[i],
            ),
        )
    return acc.per_frame(acc.image), acc.per_frame(acc.depth)


# ---------------------------------------------------------------------------------------------- report


@dataclass
class SolveReport:
    """What the panel and the Info log show after a camera solve (pixels of the original plate).

    ``frame_error_px`` is the reprojection error when images were available, otherwise the depth
    consistency (``method`` says which); both are described in the module docstring.
    """

    frames: np.ndarray  # (F,) int64 global frame indices
    frame_error_px: np.ndarray  # (F,) float64 per-frame error (NaN: not measurable)
    depth_error_px: np.ndarray  # (F,) float64 depth-consistency error
    median_error_px: float
    mean_error_px: float
    worst_frames: list[tuple[int, float]]  # (frame, error), the worst first
    focal_px: float  # robust constant focal length (plate pixels)
    focal_spread_px: float  # 1.4826 · MAD of the per-frame focal lengths
    joints: list[dict] = field(default_factory=list)  # chunk joints: chunk, residuals, inliers, method
    method: str = "reprojection"  # "reprojection" or "depth"
    pixel_units: str = "plate"  # "plate" or "processed" (no plate size was given)

    def to_dict(self) -> dict:
        """Plain JSON-able values (NaN becomes None)."""

        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {
            "frames": [int(f) for f in self.frames],
            "frame_error_px": [num(e) for e in self.frame_error_px],
            "depth_error_px": [num(e) for e in self.depth_error_px],
            "median_error_px": num(self.median_error_px),
            "mean_error_px": num(self.mean_error_px),
            "worst_frames": [[int(f), num(e)] for f, e in self.worst_frames],
            "focal_px": num(self.focal_px),
            "focal_spread_px": num(self.focal_spread_px),
            "joints": list(self.joints),
            "method": self.method,
            "pixel_units": self.pixel_units,
        }

    def summary(self) -> str:
        """A few lines for the Info log."""
        worst = ", ".join(f"{f} ({e:.2f} px)" for f, e in self.worst_frames[:3])
        what = "reprojection" if self.method == "reprojection" else "depth-consistency"
        lines = [
            f"Solve {what} error {self.median_error_px:.3f} px median, {self.mean_error_px:.3f} px mean "
            f"over {int(np.isfinite(self.frame_error_px).sum())} frames ({self.pixel_units} pixels)",
            f"Worst frames: {worst or 'none'}",
            f"Focal length {self.focal_px:.1f} px ± {self.focal_spread_px:.1f} px",
        ]
        rel = [j.get("relative_residual") for j in self.joints]
        rel = [r for r in rel if r is not None]
        if self.joints:
            worst_joint = f"{100 * max(rel):.2f} % of the scene depth" if rel else "n/a (joined on cameras)"
            lines.append(f"{len(self.joints)} chunk joints, worst residual {worst_joint}")
        return "\n".join(lines)


def _pixel_scale(intrinsics: np.ndarray, plate_intrinsics, plate_hw, image_hw) -> np.ndarray:
    k = np.asarray(intrinsics, np.float64)
    if plate_intrinsics is not None:
        kp = np.broadcast_to(np.asarray(plate_intrinsics, np.float64), k.shape)
        return np.stack([kp[:, 0, 0] / k[:, 0, 0], kp[:, 1, 1] / k[:, 1, 1]], -1)
    if plate_hw is not None:
        sx, sy = plate_hw[1] / image_hw[1], plate_hw[0] / image_hw[0]
        return np.tile(np.array([sx, sy], np.float64), (len(k), 1))
    return np.ones((len(k), 2))


def build_solve_report(
    frames: np.ndarray,
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    blocks: Iterable[Sequence],
    *,
    image_hw: tuple[int, int],
    plate_hw: tuple[int, int] | None = None,
    plate_intrinsics: np.ndarray | None = None,
    joints: Sequence = (),
    neighbours: Sequence[int] = DEFAULT_NEIGHBOURS,
    samples: int = DEFAULT_SAMPLES,
    worst: int = 5,
    seed: int = 0,
) -> SolveReport:
    """The solve report of a shot whose depth arrives in blocks (e.g. ``JoinedResult.iter_blocks()``).

    frames: (F,) global indices, increasing; extrinsics (F, 3, 4) and intrinsics (F, 3, 3) of the
    joined shot; blocks: ``(frames (m,), depth (m, H, W), conf or None[, images (m, H, W, 3) or None])``
    in frame order; image_hw: the processed size; plate_hw (height, width) of the original footage,
    or plate_intrinsics (F, 3, 3) at the plate size (which also covers cropping), for errors in
    plate pixels; joints: ``ChunkJoint`` objects (or their dicts). Neighbours count positions in
    ``frames`` (with a stride, the next solved frame).

    For a joined shot: ``build_solve_report(j.frames, j.extrinsics, j.intrinsics, j.iter_blocks(),
    image_hw=j.image_hw, plate_hw=..., joints=j.joints)``.
    """
    frames = np.asarray(frames, np.int64)
    extrinsics = np.asarray(extrinsics, np.float64)
    intrinsics = np.asarray(intrinsics, np.float64)
    scale = _pixel_scale(intrinsics, plate_intrinsics, plate_hw, image_hw)
    acc = _Accumulator(frames, neighbours, samples, seed)
    any_images = False
    for block in blocks:
        block_frames, depth, conf = block[0], block[1], block[2]
        images = block[3] if len(block) > 3 else None
        any_images |= images is not None
        pos = np.searchsorted(frames, block_frames)
        if np.any(pos >= len(frames)) or np.any(frames[np.minimum(pos, len(frames) - 1)] != block_frames):
            raise ValueError("a depth block holds frames that are not in the shot's frame list")
        for r, p in enumerate(pos):
            frame = _make_frame(
                depth[r],
                None if conf is None else conf[r],
                intrinsics[p],
                extrinsics[p],
                scale[p],
                None if images is None else images[r],
            )
            acc.add(int(p), frame)
    depth_err = acc.per_frame(acc.depth)
    errors = acc.per_frame(acc.image) if any_images else depth_err
    finite = np.isfinite(errors)
    order = np.argsort(np.where(finite, -errors, np.inf))[: min(worst, int(finite.sum()))]
    focal, spread = robust_focal(intrinsics[:, 0, 0] * scale[:, 0])
    return SolveReport(
        frames=frames,
        frame_error_px=errors,
        depth_error_px=depth_err,
        median_error_px=float(np.median(errors[finite])) if finite.any() else float("nan"),
        mean_error_px=float(np.mean(errors[finite])) if finite.any() else float("nan"),
        worst_frames=[(int(frames[i]), float(errors[i])) for i in order],
        focal_px=focal,
        focal_spread_px=spread,
        joints=[j if isinstance(j, dict) else _joint_summary(j) for j in joints],
        method="reprojection" if any_images else "depth",
        pixel_units="processed" if plate_hw is None and plate_intrinsics is None else "plate",
    )


def _joint_summary(joint) -> dict:
    d = joint.to_dict()
    keys = ("chunk", "residual_rms", "relative_residual", "inlier_fraction", "n_points", "method")
    return {k: d[k] for k in keys}
