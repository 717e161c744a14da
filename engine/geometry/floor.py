"""Floor, origin and scale of a reconstruction, as a transform for its root object (numpy only).

A matchmover orients a solve like Blender's tracking tools do (Floor, Set Origin, Set Scale):
the floor becomes the plane Z = 0 with +Z up, the origin sits on the floor below a chosen point
(the first camera, by default), and a typed distance fixes the scale. None of this is baked into
points or keyframes: each step returns a 4×4 matrix for the reconstruction root, so the user can
redo or undo it.

``fit_floor`` finds the floor with RANSAC on a deterministic subsample (plane hypotheses from
point triples, scored by the weight of the points within a distance threshold), then refits the
best plane by weighted least squares on its inliers (twice, re-collecting inliers from all
points). Among the hypotheses it only accepts planes the cameras are above: every camera on the
same side, at least a threshold away (a plane through the camera path is no floor), and, when an
``up_hint`` is given, a normal within ``max_tilt_deg`` of it (so a big wall loses to a smaller
floor). Of the accepted planes the best supported one wins. The normal points to the cameras' side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sim3 import rotation_between

__all__ = [
    "ENGINE_TO_BLENDER",
    "Floor",
    "NoFloorFound",
    "default_root",
    "fit_floor",
    "root_transform",
    "scale_from_distance",
    "up_from_cameras",
    "world_alignment",
]


# The plain axis turn a reconstruction's root gets when nothing aligned it: the engine's world (the reference
# camera's frame: x right, y down, z forward) turned so +Z is up and that camera looks along +Y (X=x, Y=z,
# Z=-y). The one definition: Blender's importer (scene/convert.py) and the datasets' frame use this.
ENGINE_TO_BLENDER = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
ENGINE_TO_BLENDER.flags.writeable = False


def default_root(given_cameras: bool, alignment: np.ndarray | None) -> np.ndarray:
    """The transform a reconstruction's root gets on import (Blender's importer and a CLI dataset export
    both use it): the identity for a job given known cameras (their world is the scene's), else the
    bundle's floor alignment ``alignment`` (4, 4), else the plain axis turn. A new float64 array."""
    if given_cameras:
        return np.eye(4)
    return np.array(alignment if alignment is not None else ENGINE_TO_BLENDER, np.float64)


class NoFloorFound(ValueError):
    """No plane with the cameras above it has enough support."""


@dataclass(frozen=True)
class Floor:
    """The plane ``{x : normal · x = offset}``; ``normal`` (3,) is unit length and points to the cameras."""

    normal: np.ndarray  # (3,) float64
    offset: float
    inlier_fraction: float  # share of the input points (by weight) within ``threshold`` of the plane
    threshold: float  # the inlier distance used, in the points' units

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Height above the floor of points ``(..., 3)`` → ``(...)`` (positive on the cameras' side)."""
        return np.asarray(points, np.float64) @ self.normal - self.offset

    def project(self, points: np.ndarray) -> np.ndarray:
        """The foot on the floor of points ``(..., 3)`` → ``(..., 3)``."""
        p = np.asarray(points, np.float64)
        return p - self.signed_distance(p)[..., None] * self.normal


def up_from_cameras(w2c: np.ndarray) -> np.ndarray:
    """A rough "up" for a shot: the mean of the cameras' up axes (OpenCV −y) in world, unit (3,).

    Good enough as ``fit_floor``'s ``up_hint`` for footage shot with a level-ish camera.
    """
    rot = np.asarray(w2c, np.float64)[..., :3, :3].reshape(-1, 3, 3)
    up = -rot[:, 1, :].sum(0)  # camera y axis in world is the 2nd row of R; image up is −y
    norm = np.linalg.norm(up)
    if norm < 1e-9:
        raise ValueError("the cameras' up directions cancel out; give the up direction explicitly")
    return up / norm


def _plane_fit(points: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted least-squares plane: the normal is the smallest principal axis."""
    wn = w / w.sum()
    centroid = wn @ points
    c = (points - centroid) * np.sqrt(wn)[:, None]
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    normal = vt[-1]
    return normal, float(normal @ centroid)


def _robust_extent(points: np.ndarray) -> float:
    med = np.median(points, axis=0)
    return float(np.median(np.linalg.norm(points - med, axis=1)))


def fit_floor(
    points: np.ndarray,
    weights: np.ndarray | None = None,
    camera_centers: np.ndarray | None = None,
    *,
    up_hint: np.ndarray | None = None,
    threshold: float | None = None,
    max_tilt_deg: float = 45.0,
    iterations: int = 512,
    sample_size: int = 20_000,
    seed: int = 0,
) -> Floor:
    """Robust floor plane of a point cloud.

    points: (M, 3); weights: (M,) ≥ 0 or None (e.g. confidence); camera_centers: (F, 3) or None
    (then the world origin, the reference camera in the engine convention, stands for the cameras);
    up_hint: (3,) rough up direction or None (see ``up_from_cameras``); threshold: inlier distance
    (default 1.5 % of the cloud's median distance to its median point); iterations: RANSAC
    hypotheses, drawn from at most ``sample_size`` points (deterministic for a given ``seed``).
    Raises ``NoFloorFound`` when no acceptable plane exists.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    w = np.ones(len(pts)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape != (len(pts),):
        raise ValueError(f"weights must have shape ({len(pts)},), got {w.shape}")
    ok = np.isfinite(pts).all(1) & np.isfinite(w) & (w > 0)
    pts, w = pts[ok], w[ok]
    if len(pts) < 3:
        raise NoFloorFound(f"need at least 3 points to find a floor, got {len(pts)}")
    cams = (
        np.zeros((1, 3)) if camera_centers is None else np.asarray(camera_centers, np.float64).reshape(-1, 3)
    )
    if threshold is None:
        threshold = 0.015 * _robust_extent(pts)
    threshold = float(threshold)
    if not threshold > 0:
        raise NoFloorFound("all points are in one spot; there is no floor to find")
    rng = np.random.default_rng(seed)
    sub = rng.choice(len(pts), size=min(sample_size, len(pts)), replace=False)
    sp, sw = pts[sub], w[sub]

    # Hypotheses from random triples: (T, 3) normals n and offsets d.
    tri = rng.integers(0, len(sp), size=(int(iterations), 3))
    a, b, c = sp[tri[:, 0]], sp[tri[:, 1]], sp[tri[:, 2]]
    n = np.cross(b - a, c - a)
    norm = np.linalg.norm(n, axis=1)
    good = norm > 1e-12 * max(1.0, float(np.abs(sp).max())) ** 2
    n = n[good] / norm[good, None]
    d = np.einsum("ij,ij->i", n, a[good])
    # Orient each normal to the cameras' side (median camera height positive), reject planes that
    # do not have every camera above them by at least the threshold.
    heights = cams @ n.T - d  # (F, T)
    flip = np.median(heights, axis=0) < 0
    n[flip], d[flip], heights[:, flip] = -n[flip], -d[flip], -heights[:, flip]
    accept = heights.min(axis=0) > threshold
    if up_hint is not None:
        up = np.asarray(up_hint, np.float64).reshape(3)
        up = up / np.linalg.norm(up)
        accept &= n @ up >= np.cos(np.radians(max_tilt_deg))
    if not accept.any():
        raise NoFloorFound(
            "no plane with the cameras above it was found in the points; set the floor by hand "
            "(pick three points on it)"
        )
    n, d = n[accept], d[accept]
    score = np.empty(len(n))
    for start in range(0, len(n), 64):  # blocks of hypotheses keep the (T, M) distance table small
        dist = np.abs(sp @ n[start : start + 64].T - d[start : start + 64])  # (M, 64)
        score[start : start + 64] = sw @ (dist < threshold)
    best = int(np.argmax(score))
    normal, offset = n[best], float(d[best])

    for _ in range(2):  # least-squares refit on the inliers among all points
        inl = np.abs(pts @ normal - offset) < threshold
        if inl.sum() < 3:
            break
        new_n, new_d = _plane_fit(pts[inl], w[inl])
        if new_n @ normal < 0:
            new_n, new_d = -new_n, -new_d
        normal, offset = new_n, new_d
    inl = np.abs(pts @ normal - offset) < threshold
    return Floor(normal, offset, float(w[inl].sum() / w.sum()), threshold)


def world_alignment(
    floor: Floor,
    origin_point: np.ndarray,
    up: np.ndarray = (0.0, 0.0, 1.0),
    forward: np.ndarray | None = None,
) -> np.ndarray:
    """A rigid 4×4 ``M`` for the reconstruction root: floor → the plane ⟂ ``up`` through 0, normal → ``up``.

    ``origin_point`` (3,) (e.g. the first camera centre) lands straight above the new origin:
    ``M @ [p, 1] = [0, 0, h, 1]`` for ``up = +Z``, with ``h`` its height above the floor. The turn
    about ``up`` is the smallest one unless ``forward`` (3,) is given (e.g. the first camera's viewing
    direction): its part along the floor then points to +Y (Blender's "front" is the −Y view, looking
    along +Y), so the shot starts looking "into" the scene.
    """
    up = np.asarray(up, np.float64).reshape(3)
    up = up / np.linalg.norm(up)
    rot = rotation_between(floor.normal, up)
    if forward is not None:
        f = rot @ np.asarray(forward, np.float64).reshape(3)
        f -= (f @ up) * up
        if np.linalg.norm(f) > 1e-9:
            # +Y within the plane ⟂ up (for up = +Z this is +Y itself)
            y = np.array([0.0, 1.0, 0.0]) - up[1] * up
            if np.linalg.norm(y) < 1e-9:
                y = np.array([0.0, 0.0, 1.0]) - up[2] * up
            rot = rotation_between(f / np.linalg.norm(f), y / np.linalg.norm(y)) @ rot
    foot = floor.project(np.asarray(origin_point, np.float64).reshape(3))
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ foot
    return m


def scale_from_distance(p: np.ndarray, q: np.ndarray, metres: float) -> float:
    """The uniform scale that makes points ``p`` and ``q`` (3,) lie ``metres`` apart (Set Scale)."""
    metres = float(metres)
    if not metres > 0 or not np.isfinite(metres):
        raise ValueError(f"the real distance must be a positive number, got {metres}")
    dist = float(np.linalg.norm(np.asarray(p, np.float64) - np.asarray(q, np.float64)))
    if not dist > 1e-12 or not np.isfinite(dist):
        raise ValueError("the two points are in the same place; pick two points some distance apart")
    return metres / dist


def root_transform(alignment: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
    """The root object's 4×4 matrix: ``scale`` applied after ``alignment`` (floor/origin), ``S · M``.

    Scaling about the origin keeps the floor at Z = 0 and the origin in place.
    """
    if not float(scale) > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    m = np.eye(4) if alignment is None else np.asarray(alignment, np.float64).reshape(4, 4).copy()
    m[:3, :] *= float(scale)
    return m
