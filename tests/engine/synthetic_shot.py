"""An analytic test shot: exact depth, cameras and a procedural texture by ray casting in numpy.

The scene (metres, Z up, floor at Z = 0): a textured ground plane, three boxes standing on it and
a wall at Y = ``WALL_Y`` facing the cameras, all with a smooth procedural texture. A camera dollies sideways along a gentle arc at about
eye height, looking at the boxes, with a known constant focal length. Rendering is vectorised
over all pixels of the asked-for frames, so a chunk can be rendered on its own (a 400-frame shot
never needs to exist in memory at once).

``make_chunks`` turns the exact shot into what a network would return for overlapping chunks:
each chunk in its own random similarity frame (scale, rotation, translation), with optional depth
noise, outlier pixels and pose jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.geometry.cameras import camera_centers, quaternion_wxyz_to_matrix
from engine.geometry.sim3 import Sim3
from engine.geometry.streaming import ChunkPrediction

H, W = 48, 64
FOCAL = 56.0
WALL_Y = 7.0
BOXES = (  # (min corner, max corner), standing on the floor
    ((-1.2, 2.0, 0.0), (0.0, 3.0, 1.0)),
    ((1.2, 1.0, 0.0), (2.2, 2.0, 0.6)),
    ((-2.8, 4.0, 0.0), (-1.8, 5.0, 1.5)),
)


@dataclass(frozen=True)
class Shot:
    """Frames of the ground-truth shot (world: Z up, floor at Z = 0, metres)."""

    frames: np.ndarray  # (n,) int64 global frame indices
    depth: np.ndarray  # (n, H, W) float32 z-depth, NaN where a ray hits nothing
    extrinsics: np.ndarray  # (n, 3, 4) float64 world-to-camera, OpenCV
    intrinsics: np.ndarray  # (n, 3, 3) float64
    images: np.ndarray  # (n, H, W, 3) uint8

    @property
    def centers(self) -> np.ndarray:
        return camera_centers(self.extrinsics)


def intrinsics(h: int = H, w: int = W, focal: float = FOCAL) -> np.ndarray:
    return np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1]], np.float64)


def camera_path(n_frames: int, frames: np.ndarray | None = None) -> np.ndarray:
    """World-to-camera (m, 3, 4) of the smooth path at ``frames`` (default all) of an ``n_frames`` shot."""
    frames = np.arange(n_frames) if frames is None else np.asarray(frames)
    tau = frames / max(n_frames - 1, 1)
    centre = np.stack(
        [-3.0 + 6.0 * tau, -4.0 + 1.0 * np.sin(np.pi * tau), 1.6 + 0.2 * np.sin(2 * np.pi * tau)], -1
    )
    target = np.stack([0.8 * np.sin(np.pi * tau), np.full_like(tau, 3.0), np.full_like(tau, 0.5)], -1)
    fwd = target - centre
    fwd /= np.linalg.norm(fwd, axis=1, keepdims=True)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(fwd, right)
    rot = np.stack([right, down, fwd], 1)  # rows: camera axes in world
    w2c = np.empty((len(frames), 3, 4))
    w2c[:, :, :3] = rot
    w2c[:, :, 3] = -np.einsum("nij,nj->ni", rot, centre)
    return w2c


def _ray_cast(origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """origins (n, 3), dirs (n, P, 3) → ray parameter t (n, P) of the first hit (inf: none), object id."""
    o = origins[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        t_floor = np.where(dirs[..., 2] < 0, -o[..., 2] * inv[..., 2], np.inf)
        t_wall = np.where(dirs[..., 1] > 0, (WALL_Y - o[..., 1]) * inv[..., 1], np.inf)
        hits = [t_floor, t_wall]
        for lo, hi in BOXES:
            t1 = (np.asarray(lo) - o) * inv
            t2 = (np.asarray(hi) - o) * inv
            near = np.nanmax(np.minimum(t1, t2), axis=-1)
            far = np.nanmin(np.maximum(t1, t2), axis=-1)
            hits.append(np.where((near <= far) & (near > 0), near, np.inf))
    stack = np.stack(hits)  # (objects, n, P)
    stack = np.where(stack > 1e-6, stack, np.inf)
    return stack.min(0), stack.argmin(0)


def render(
    n_frames: int, frames: np.ndarray | range | None = None, h: int = H, w: int = W, focal: float = FOCAL
) -> Shot:
    """Exact depth and a procedural texture for ``frames`` of an ``n_frames`` shot."""
    frames = np.arange(n_frames) if frames is None else np.asarray(frames, np.int64)
    w2c = camera_path(n_frames, frames)
    K = intrinsics(h, w, focal)
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(
        -1, 3
    )
    dirs = np.einsum("pj,nji->npi", rays_cam, w2c[:, :, :3])  # Rᵀ d, z-component 1 in the camera
    origins = camera_centers(w2c)
    t, obj = _ray_cast(origins, dirs)
    depth = np.where(np.isfinite(t), t, np.nan).reshape(len(frames), h, w).astype(np.float32)
    hit = origins[:, None, :] + np.where(np.isfinite(t), t, 0.0)[..., None] * dirs
    # A smooth procedural texture (sums of sines of the hit point; periods 0.9–1.7 m), so that the
    # point-sampled images are band-limited and patches can be matched to sub-pixel precision.
    k = 2 * np.pi / np.array([1.3, 1.7, 0.9])
    pattern = np.sin(hit * k).sum(-1) + 0.7 * np.sin(hit @ (k * [1.1, -0.8, 0.6]) + 1.0)
    tint = np.array(
        [[120, 160, 90], [200, 190, 170], [180, 60, 50], [60, 90, 190], [220, 180, 40]], np.float64
    )
    rgb = tint[obj] * (0.65 + 0.1 * pattern[..., None])
    rgb[~np.isfinite(t)] = (135, 180, 235)
    images = rgb.reshape(len(frames), h, w, 3).astype(np.uint8)
    return Shot(frames, depth, w2c, np.tile(K, (len(frames), 1, 1)), images)


def random_sim3(rng: np.random.Generator) -> Sim3:
    """A random similarity like the gap between two chunks' worlds: any rotation, scale 0.3–3."""
    return Sim3(
        float(np.exp(rng.uniform(-1.2, 1.2))),
        quaternion_wxyz_to_matrix(rng.normal(size=4)),
        rng.normal(size=3) * 3,
    )


def to_chunk(
    shot: Shot,
    world: Sim3,
    rng: np.random.Generator,
    *,
    depth_noise: float = 0.0,
    outlier_fraction: float = 0.0,
    pose_noise: float = 0.0,
) -> ChunkPrediction:
    """The shot's frames as a network chunk in the world ``world(ground truth)``.

    depth_noise: relative std of a multiplicative depth error; outlier_fraction: share of pixels
    whose depth is multiplied by a random factor in [0.3, 3] (with normal confidence, so the
    joint must reject them); pose_noise: std of a random camera rotation (radians) and of the
    centre (× 0.1 m), per frame.
    """
    depth = world.scale_depth(shot.depth)
    if depth_noise:
        depth = depth * (1 + depth_noise * rng.standard_normal(depth.shape)).astype(np.float32)
    if outlier_fraction:
        bad = rng.random(depth.shape) < outlier_fraction
        depth = np.where(bad, depth * rng.uniform(0.3, 3.0, depth.shape), depth).astype(np.float32)
    w2c = world.transform_extrinsics(shot.extrinsics)
    if pose_noise:
        axis_angle = rng.normal(scale=pose_noise, size=(len(shot.frames), 3))
        half = np.linalg.norm(axis_angle, axis=1, keepdims=True) / 2
        quat = np.concatenate([np.cos(half), np.sinc(half / np.pi) * axis_angle / 2], axis=1)
        jitter = quaternion_wxyz_to_matrix(quat)
        centre = camera_centers(w2c) + rng.normal(
            scale=0.1 * pose_noise * world.s, size=(len(shot.frames), 3)
        )
        rot = jitter @ w2c[:, :, :3]
        w2c = np.concatenate([rot, -np.einsum("nij,nj->ni", rot, centre)[..., None]], axis=2)
    conf = np.where(np.isfinite(depth), 2.0 + rng.random(depth.shape), 1.0).astype(np.float32)
    return ChunkPrediction(shot.frames, depth.astype(np.float32), w2c, shot.intrinsics, conf, shot.images)


def make_chunks(
    n_frames: int,
    ranges: list[range],
    seed: int = 0,
    *,
    h: int = H,
    w: int = W,
    focal: float = FOCAL,
    **noise,
) -> tuple[list[ChunkPrediction], list[Sim3]]:
    """Chunks of an ``n_frames`` shot over ``ranges``, each in a random world; also the worlds (GT → chunk).

    ``noise``: the keyword arguments of ``to_chunk`` (depth_noise, outlier_fraction, pose_noise).
    """
    rng = np.random.default_rng(seed)
    chunks, worlds = [], []
    for r in ranges:
        world = random_sim3(rng)
        chunks.append(to_chunk(render(n_frames, r, h, w, focal), world, rng, **noise))
        worlds.append(world)
    return chunks, worlds
