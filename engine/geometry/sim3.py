"""Similarity transforms (scale, rotation, translation) and how to estimate them (numpy, float64).

A ``Sim3`` maps points ``X' = s R X + t``. Three estimators, for three situations:

``umeyama(src, dst, weights)``
    The least-squares optimum of ``Σ wᵢ ‖dstᵢ − (s R srcᵢ + t)‖²`` (Umeyama 1991, weighted):
    weighted means, weighted covariance ``Σ = Σ wᵢ (dstᵢ − μ_d)(srcᵢ − μ_s)ᵀ``, its SVD ``U D Vᵀ``,
    ``R = U S Vᵀ`` with ``S = diag(1, 1, det(U Vᵀ))`` (never a reflection) and ``s = tr(D S) / σ²``
    with ``σ² = Σ wᵢ ‖srcᵢ − μ_s‖²``. Raises ``DegenerateAlignment`` when the rotation is not
    defined: fewer than 3 weighted points, all points in one spot, or points on one line.

``align_centers(src, dst, weights)``
    Never fails; meant for camera centres, where a shot may have 1 or 2 cameras or a dolly move
    along a straight line. It uses ``umeyama`` when that is well defined and otherwise the most
    conservative transform the data does define:

    * no usable point: the identity;
    * one point (or every source point in one spot): a pure translation (s = 1, R = I). One
      correspondence says nothing about scale or rotation, so we keep the model's own;
    * two points or a straight line: the scale and offset along the line are fitted by least
      squares, and the rotation is the *smallest* rotation that turns the source line direction
      onto the target line direction (a roll about the line itself is unobservable, so none is
      added);
    * every target point in one spot: a translation onto it (a zero scale would be singular).

``robust_sim3(src, dst, weights, delta, iters)``
    The DA3-Streaming chunk-alignment recipe, for dense point correspondences with outliers:
    iteratively reweighted least squares with Huber weights ``wᵢ = w⁰ᵢ · min(1, δ / rᵢ)`` (δ = 0.1,
    5 rounds), each round a weighted fit: weighted centroids, rotation from the SVD of the weighted
    covariance (reflection fixed). ``δ`` is in units of ``dst``. The scale of each round is, by
    default, Umeyama's weighted least-squares optimum, so every round solves the weighted problem it
    stands for. DA3-Streaming instead takes the ratio of the weighted RMS spreads
    ``s = √(Σ w ‖dst − μ_d‖² / Σ w ‖src − μ_s‖²)``; ``scale_method="rms"`` reproduces that. The RMS
    ratio is biased upward by whatever weight the outliers keep (their spread adds to the target's
    but not to the source's), so it is not the default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DegenerateAlignment",
    "Sim3",
    "align_centers",
    "robust_sim3",
    "rotation_between",
    "umeyama",
]

_RANK_RTOL = 1e-9  # relative size of the 2nd singular value below which points count as collinear


class DegenerateAlignment(ValueError):
    """The correspondences do not define a unique similarity (too few points, or all on one line)."""


@dataclass(frozen=True)
class Sim3:
    """``X' = s R X + t`` with ``s > 0``, ``R (3, 3)`` a rotation and ``t (3,)``, all float64."""

    s: float = 1.0
    R: np.ndarray = None  # type: ignore[assignment]  # (3, 3); None → identity
    t: np.ndarray = None  # type: ignore[assignment]  # (3,); None → zeros

    def __post_init__(self) -> None:
        rot = np.eye(3) if self.R is None else np.array(self.R, np.float64).reshape(3, 3)
        t = np.zeros(3) if self.t is None else np.array(self.t, np.float64).reshape(3)
        rot.flags.writeable = False
        t.flags.writeable = False
        object.__setattr__(self, "s", float(self.s))
        object.__setattr__(self, "R", rot)
        object.__setattr__(self, "t", t)

    @classmethod
    def identity(cls) -> Sim3:
        return cls()

    @classmethod
    def from_matrix(cls, m: np.ndarray) -> Sim3:
        """From a ``(4, 4)`` or ``(3, 4)`` matrix ``[sR | t]`` (s = cube root of det)."""
        m = np.asarray(m, np.float64)
        sr = m[:3, :3]
        s = float(np.cbrt(np.linalg.det(sr)))
        if s <= 0:
            raise ValueError("matrix is not a similarity with positive scale")
        return cls(s, sr / s, m[:3, 3])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points ``(..., 3)`` → ``(..., 3)`` float64."""
        return self.s * (np.asarray(points, np.float64) @ self.R.T) + self.t

    def inverse(self) -> Sim3:
        rt = self.R.T
        return Sim3(1.0 / self.s, rt, -(rt @ self.t) / self.s)

    def compose(self, other: Sim3) -> Sim3:
        """``self ∘ other``: apply ``other`` first, then ``self``."""
        return Sim3(self.s * other.s, self.R @ other.R, self.s * (self.R @ other.t) + self.t)

    def matrix(self) -> np.ndarray:
        """``(4, 4)`` homogeneous matrix ``[[sR, t], [0, 1]]``."""
        m = np.eye(4)
        m[:3, :3] = self.s * self.R
        m[:3, 3] = self.t
        return m

    def transform_extrinsics(self, w2c: np.ndarray) -> np.ndarray:
        """World-to-camera ``(..., 3, 4)`` for the old world → the same cameras in the new world.

        With ``X' = s R X + t`` the camera rotation becomes ``R_c Rᵀ`` and the camera centre maps like
        any point (``C' = s R C + t``); camera-frame coordinates, hence depth, scale by ``s``
        (see ``scale_depth``): ``t_c' = s t_c − R_c Rᵀ t``. Keeps the input dtype.
        """
        w2c = np.asarray(w2c)
        rc = w2c[..., :3, :3].astype(np.float64)
        tc = w2c[..., :3, 3].astype(np.float64)
        rc_new = rc @ self.R.T
        tc_new = self.s * tc - rc_new @ self.t
        out = np.array(w2c[..., :3, :], dtype=np.result_type(w2c.dtype, np.float32))
        out[..., :3, :3] = rc_new
        out[..., :3, 3] = tc_new
        return out

    def scale_depth(self, depth: np.ndarray) -> np.ndarray:
        """Depth maps of the old world expressed in the new world's units (``s · depth``), same dtype."""
        depth = np.asarray(depth)
        return (depth * self.s).astype(depth.dtype, copy=False)


# --------------------------------------------------------------------------------------------------


def _prepare(src, dst, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = np.asarray(src, np.float64).reshape(-1, 3) if np.size(src) else np.zeros((0, 3))
    dst = np.asarray(dst, np.float64).reshape(-1, 3) if np.size(dst) else np.zeros((0, 3))
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must both be (n, 3) with the same n, got {src.shape} and {dst.shape}")
    if weights is None:
        w = np.ones(len(src))
    else:
        w = np.asarray(weights, np.float64).reshape(-1)
        if w.shape != (len(src),):
            raise ValueError(f"weights must have shape ({len(src)},), got {w.shape}")
        if np.any(w < 0):
            raise ValueError("weights must not be negative")
    ok = np.isfinite(src).all(1) & np.isfinite(dst).all(1) & np.isfinite(w) & (w > 0)
    return src[ok], dst[ok], w[ok]


def _weighted_fit(src, dst, w, *, scale: str) -> tuple[Sim3, np.ndarray]:
    """One weighted fit; returns the transform and the singular values of the covariance."""
    wn = w / w.sum()
    mu_s = wn @ src
    mu_d = wn @ dst
    xs = src - mu_s
    xd = dst - mu_d
    var_s = float(wn @ np.einsum("ij,ij->i", xs, xs))
    cov = (xd * wn[:, None]).T @ xs  # (3, 3) Σ w (d − μd)(s − μs)ᵀ
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    rot = (u * sign) @ vt
    if scale == "umeyama":
        s = float((d * sign).sum() / var_s)
    elif scale == "rms":
        var_d = float(wn @ np.einsum("ij,ij->i", xd, xd))
        s = float(np.sqrt(var_d / var_s))
    else:
        s = 1.0
    return Sim3(s, rot, mu_d - s * rot @ mu_s), d


def _spread(points: np.ndarray, w: np.ndarray) -> float:
    wn = w / w.sum()
    c = points - wn @ points
    return float(wn @ np.einsum("ij,ij->i", c, c))


def umeyama(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True
) -> Sim3:
    """Least-squares similarity with ``dst ≈ s R src + t``: src, dst (n, 3); weights (n,) ≥ 0 or None.

    ``with_scale=False`` fits a rigid transform (s = 1). Raises ``DegenerateAlignment`` for fewer than
    3 points with positive weight, no spread, or collinear points (rotation about the line undefined).
    """
    src, dst, w = _prepare(src, dst, weights)
    if len(src) < 3:
        raise DegenerateAlignment(f"need at least 3 point pairs to fit a rotation, got {len(src)}")
    if _spread(src, w) <= (1e-12 * max(1.0, float(np.max(np.abs(src))))) ** 2:
        raise DegenerateAlignment("all source points are in one spot; scale and rotation are undefined")
    sim, sv = _weighted_fit(src, dst, w, scale="umeyama" if with_scale else "none")
    if sv[0] <= 0 or sv[1] <= _RANK_RTOL * sv[0]:
        raise DegenerateAlignment(
            "the points lie on a line (or the targets are all in one spot); the rotation about that line "
            "is undefined — use align_centers() for such input"
        )
    return sim


def _principal_direction(points: np.ndarray, w: np.ndarray) -> np.ndarray:
    wn = w / w.sum()
    c = points - wn @ points
    _, _, vt = np.linalg.svd(c * np.sqrt(wn)[:, None], full_matrices=False)
    return vt[0]


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation turning unit vector ``a`` onto unit vector ``b`` (Rodrigues; a half turn about a
    perpendicular axis when they are opposite)."""
    v = np.cross(a, b)
    c = float(a @ b)
    sin = float(np.linalg.norm(v))
    if sin < 1e-12:
        if c > 0:
            return np.eye(3)
        # half turn about an axis perpendicular to a (the one least aligned with a coordinate axis of a)
        axis = np.cross(a, np.eye(3)[np.argmin(np.abs(a))])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    k = v / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + sin * kx + (1 - c) * (kx @ kx)


def align_centers(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Sim3:
    """Similarity with ``dst ≈ s R src + t`` that never fails (see the module docstring for fallbacks).

    src, dst: (n, 3) e.g. camera centres; weights: (n,) ≥ 0 or None. Non-finite pairs are ignored.
    """
    src, dst, w = _prepare(src, dst, weights)
    if len(src) == 0:
        return Sim3()
    wn = w / w.sum()
    mu_s, mu_d = wn @ src, wn @ dst
    scale_ref = max(1.0, float(np.max(np.abs(src))), float(np.max(np.abs(dst))))
    tiny = (1e-12 * scale_ref) ** 2
    if len(src) == 1 or _spread(src, w) <= tiny or _spread(dst, w) <= tiny:
        return Sim3(1.0, np.eye(3), mu_d - mu_s)
    if len(src) >= 3:
        try:
            sim = umeyama(src, dst, w)
            if sim.s > 0 and np.isfinite(sim.s):
                return sim
        except DegenerateAlignment:
            pass
    # Two points or a line: fit along the principal directions.
    a = _principal_direction(src, w)
    b = _principal_direction(dst, w)
    p = (src - mu_s) @ a  # (n,) coordinates along the source line
    q = (dst - mu_d) @ b
    if wn @ (p * q) < 0:
        b, q = -b, -q
    s = float((wn @ (p * q)) / (wn @ (p * p)))
    if not s > 0:  # the targets do not move along the line at all
        return Sim3(1.0, np.eye(3), mu_d - mu_s)
    rot = rotation_between(a, b)
    return Sim3(s, rot, mu_d - s * rot @ mu_s)


def robust_sim3(
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray | None = None,
    delta: float = 0.1,
    iters: int = 5,
    tol: float = 1e-9,
    scale_method: str = "umeyama",
) -> tuple[Sim3, np.ndarray]:
    """Huber-IRLS similarity with ``dst ≈ s R src + t`` (DA3-Streaming's chunk alignment).

    src, dst: (n, 3); weights: (n,) prior weights (e.g. √(conf₁·conf₂)) or None; delta: Huber
    threshold in ``dst`` units; iters: reweighting rounds after the first fit; tol: stop when the
    transform or the relative cost changes less than this; scale_method: "umeyama" (default) or "rms"
    (DA3-Streaming's spread ratio, see the module docstring). Returns the transform and the residual
    distances ``‖dstᵢ − sim(srcᵢ)‖`` (n,) of every input pair (NaN for pairs that were not finite).
    Raises ``DegenerateAlignment`` like ``umeyama``.
    """
    src_all = np.asarray(src, np.float64).reshape(-1, 3)
    dst_all = np.asarray(dst, np.float64).reshape(-1, 3)
    src_ok, dst_ok, w0 = _prepare(src_all, dst_all, weights)
    if len(src_ok) < 3:
        raise DegenerateAlignment(f"need at least 3 point pairs to fit a rotation, got {len(src_ok)}")
    if _spread(src_ok, w0) <= 0 or _spread(dst_ok, w0) <= 0:
        raise DegenerateAlignment("all source or target points are in one spot")
    if delta <= 0:
        raise ValueError(f"Huber delta must be positive, got {delta}")
    if scale_method not in ("umeyama", "rms"):
        raise ValueError(f"scale_method must be 'umeyama' or 'rms', got {scale_method!r}")

    def residuals(sim: Sim3) -> np.ndarray:
        return np.linalg.norm(dst_ok - sim.apply(src_ok), axis=1)

    sim, sv = _weighted_fit(src_ok, dst_ok, w0, scale=scale_method)
    if sv[1] <= _RANK_RTOL * sv[0]:
        raise DegenerateAlignment("the points lie on a line; the rotation about that line is undefined")
    r = residuals(sim)
    cost = _huber_cost(r, w0, delta)
    for _ in range(int(iters)):
        w = w0 * np.minimum(1.0, delta / np.maximum(r, 1e-300))
        new, _ = _weighted_fit(src_ok, dst_ok, w, scale=scale_method)
        r_new = residuals(new)
        new_cost = _huber_cost(r_new, w0, delta)
        change = abs(new.s - sim.s) + float(np.abs(new.R - sim.R).max()) + float(np.abs(new.t - sim.t).max())
        sim, r = new, r_new
        rel = abs(cost - new_cost) / max(cost, 1e-300)
        cost = new_cost
        if change < tol or rel < tol:
            break
    return sim, np.linalg.norm(dst_all - sim.apply(src_all), axis=1)


def _huber_cost(r: np.ndarray, w: np.ndarray, delta: float) -> float:
    quad = np.minimum(r, delta)
    return float(w @ (0.5 * quad**2 + delta * (r - quad)))
