"""Analytic scenes with known surfaces for the fusion tests and benchmark: exact depth maps ray cast
from known cameras (numpy only), optional depth noise and outliers, and the accuracy measures
(Chamfer distance and F-score against the true surface)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Scene",
    "chamfer_fscore",
    "corrupt",
    "intrinsics",
    "look_at",
    "orbit_cameras",
    "render_depth",
    "room",
    "room_cameras",
    "sphere_on_plane",
    "surface_samples",
    "thin_structures",
]


@dataclass(frozen=True)
class Scene:
    """Boxes seen from outside, one box seen from inside (a room), spheres; each with a colour."""

    name: str
    boxes: tuple = ()  # ((lo (3,), hi (3,), rgb), ...) solid boxes
    spheres: tuple = ()  # ((centre (3,), radius, rgb), ...)
    room: tuple | None = None  # (lo, hi, rgb) seen from inside
    size: float = 1.0  # the scene's size (its bounding box diagonal), for the F-score threshold


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(3, 4) OpenCV world-to-camera matrix of a camera at ``eye`` looking at ``target`` (z up world)."""
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, (0.0, 1.0, 0.0))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])
    return np.concatenate([rot, (-rot @ eye)[:, None]], axis=1)


def orbit_cameras(
    n: int, radius: float, height: float, target=(0.0, 0.0, 0.0), turns: float = 1.0
) -> np.ndarray:
    """(n, 3, 4) cameras on a circle around ``target`` (``turns`` times round), all looking at it."""
    angles = np.linspace(0.0, 2 * np.pi * turns, n, endpoint=False)
    eyes = np.stack([radius * np.cos(angles), radius * np.sin(angles), np.full(n, height)], 1) + target
    return np.stack([look_at(e, target) for e in eyes])


def room_cameras(n: int) -> np.ndarray:
    """(n, 3, 4) cameras turning round the room's middle, each looking slightly down at a wall."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    eyes = np.stack([0.3 * np.cos(angles), 0.3 * np.sin(angles), np.full(n, 1.5)], 1)
    targets = np.stack([2.5 * np.cos(angles + 0.3), 2.0 * np.sin(angles + 0.3), np.full(n, 0.8)], 1)
    return np.stack([look_at(e, t) for e, t in zip(eyes, targets, strict=True)])


def intrinsics(width: int, height: int, fov_deg: float = 60.0) -> np.ndarray:
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


def _rays(w2c, k, h, w):
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    dirs_cam = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1)  # z = 1
    rot, t = w2c[:, :3], w2c[:, 3]
    origin = -rot.T @ t
    return origin, dirs_cam @ rot  # world directions with unit z-depth per unit t


def render_depth(scene: Scene, w2c: np.ndarray, k: np.ndarray, h: int, w: int):
    """(depth (H, W) float32 z-depth, 0 where nothing is hit; rgb (H, W, 3) uint8) of one view."""
    origin, dirs = _rays(w2c, k, h, w)
    best = np.full((h, w), np.inf)
    rgb = np.zeros((h, w, 3), np.uint8)
    safe = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
    for lo, hi, colour in scene.boxes:
        t0 = (np.asarray(lo) - origin) / safe
        t1 = (np.asarray(hi) - origin) / safe
        near = np.minimum(t0, t1).max(-1)
        far = np.maximum(t0, t1).min(-1)
        hit = (near <= far) & (near > 1e-6) & (near < best)
        best[hit] = near[hit]
        rgb[hit] = colour
    for centre, radius, colour in scene.spheres:
        oc = origin - np.asarray(centre)
        a = (dirs * dirs).sum(-1)
        b = 2 * (dirs @ oc)
        c = oc @ oc - radius**2
        disc = b * b - 4 * a * c
        t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        hit = (disc > 0) & (t > 1e-6) & (t < best)
        best[hit] = t[hit]
        rgb[hit] = colour
    if scene.room is not None:
        lo, hi, colour = scene.room
        t0 = (np.asarray(lo) - origin) / safe
        t1 = (np.asarray(hi) - origin) / safe
        far = np.maximum(t0, t1).min(-1)
        hit = (far > 1e-6) & (far < best)
        best[hit] = far[hit]
        shade = (np.floor(origin + far[..., None] * dirs) * 4 % 2).sum(-1) % 2  # a checker, for texture
        rgb[hit] = (np.asarray(colour) * (0.6 + 0.4 * shade[hit][:, None])).astype(np.uint8)
    depth = np.where(np.isfinite(best), best, 0.0).astype(np.float32)  # t along z-unit rays is z-depth
    return depth, rgb


def corrupt(depth: np.ndarray, *, noise: float, outliers: float, seed: int = 0) -> np.ndarray:
    """Depth with relative Gaussian noise (``noise`` = its standard deviation, e.g. 0.01) and a share of
    ``outliers`` pixels moved to a random depth between 0.3 and 2 times their own."""
    rng = np.random.default_rng(seed)
    out = depth * (1 + noise * rng.standard_normal(depth.shape)).astype(np.float32)
    wild = (rng.random(depth.shape) < outliers) & (depth > 0)
    out[wild] = depth[wild] * rng.uniform(0.3, 2.0, int(wild.sum())).astype(np.float32)
    return out


def surface_samples(mesh_vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points spread uniformly by area over a triangle mesh."""
    v = mesh_vertices.astype(np.float64)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(faces), count, p=area / area.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    return (1 - s)[:, None] * a[pick] + (s * (1 - r2))[:, None] * b[pick] + (s * r2)[:, None] * c[pick]


def chamfer_fscore(pred: np.ndarray, truth: np.ndarray, threshold: float) -> tuple[float, float]:
    """(Chamfer distance: mean of the two mean nearest distances, F-score at ``threshold``)."""
    from scipy.spatial import cKDTree

    to_truth = cKDTree(truth).query(pred, workers=-1)[0]
    to_pred = cKDTree(pred).query(truth, workers=-1)[0]
    precision = float((to_truth < threshold).mean())
    recall = float((to_pred < threshold).mean())
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return 0.5 * float(to_truth.mean() + to_pred.mean()), f


def sphere_on_plane() -> Scene:
    return Scene(
        "sphere on a plane",
        boxes=(((-2.0, -2.0, -0.1), (2.0, 2.0, 0.0), (180, 170, 150)),),
        spheres=(((0.0, 0.0, 0.6), 0.6, (200, 60, 40)),),
        size=float(np.linalg.norm([4.0, 4.0, 1.3])),
    )


def room() -> Scene:
    return Scene(
        "room",
        boxes=(((0.5, 0.3, 0.0), (1.3, 1.0, 0.75), (90, 120, 200)),),  # a table-sized block
        room=((-2.5, -2.0, 0.0), (2.5, 2.0, 2.6), (220, 210, 190)),
        size=float(np.linalg.norm([5.0, 4.0, 2.6])),
    )


def thin_structures() -> Scene:
    poles = tuple(
        ((x - 0.03, y - 0.03, 0.0), (x + 0.03, y + 0.03, 1.5), (40, 160, 60))
        for x, y in ((-0.6, 0), (0.6, 0), (0, 0.6))
    )
    plate = ((-0.8, -0.8, 1.5), (0.8, 0.8, 1.54), (200, 200, 60))  # a 4 cm thin table top
    floor = ((-2.0, -2.0, -0.1), (2.0, 2.0, 0.0), (150, 150, 160))
    return Scene("thin structures", boxes=(floor, plate) + poles, size=float(np.linalg.norm([4.0, 4.0, 1.6])))
