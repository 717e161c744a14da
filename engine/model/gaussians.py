"""Gaussian adapter (DA3 §5.2): raw GSDPT channels + depth + cameras → world-space 3D Gaussians.

Raw channels (37): 0–1 pixel offset, 2–4 scale logits, 5–8 rotation, 9–35 SH (3 colours × 9,
colour-major), 36 depth offset. The upstream index permutations of the rotation quaternion are
reproduced exactly (see ``_world_rotations``); downstream code reads the 4-vector as (w, x, y, z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from .cameras import invert_rigid, matrix_to_quat, quat_to_matrix

SCALE_MIN, SCALE_MAX = 1e-5, 30.0
SH_DEGREE = 2
SH_MASK = [1.0] + [0.1 * 0.25**d for d in range(1, SH_DEGREE + 1) for _ in range(2 * d + 1)]


@dataclass(frozen=True)
class GaussianTensors:
    """World-space Gaussians of one scene, flattened view-major then row-major (M = S·H·W)."""

    means: torch.Tensor  # (M, 3)
    scales: torch.Tensor  # (M, 3) linear scale
    rotations: torch.Tensor  # (M, 4) read as (w, x, y, z) downstream
    harmonics: torch.Tensor  # (M, 3, 9) SH per colour
    opacities: torch.Tensor  # (M,)


# --- real spherical-harmonic rotation (e3nn conventions: real basis, Y-X-Y Euler angles) ---------


@cache
def _so3_generators(l: int) -> np.ndarray:
    """Generators (3, 2l+1, 2l+1) of the real degree-l representation: su(2) spin-l generators
    conjugated into the real SH basis (with the i^l phase that makes them real)."""
    m = np.arange(-l, l + 1)
    raising = np.diag(-np.sqrt(l * (l + 1) - m[:-1] * (m[:-1] + 1)), k=-1)
    lowering = np.diag(np.sqrt(l * (l + 1) - m[1:] * (m[1:] - 1)), k=1)
    complex_gens = np.stack([0.5 * (raising + lowering), np.diag(1j * m), -0.5j * (raising - lowering)])
    q = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    for mm in range(-l, 0):
        q[l + mm, l - mm] = 1 / math.sqrt(2)
        q[l + mm, l + mm] = -1j / math.sqrt(2)
    q[l, l] = 1
    for mm in range(1, l + 1):
        q[l + mm, l + mm] = (-1) ** mm / math.sqrt(2)
        q[l + mm, l - mm] = 1j * (-1) ** mm / math.sqrt(2)
    q = (-1j) ** l * q
    return np.real(q.conj().T @ complex_gens @ q)


def _expm_skew(x: np.ndarray) -> np.ndarray:
    """Matrix exponential of real skew-symmetric matrices (…, n, n) via their eigen-decomposition."""
    w, v = np.linalg.eigh(1j * x)  # i·X is Hermitian
    return np.real(v @ (np.exp(-1j * w)[..., None] * v.conj().swapaxes(-1, -2)))


def _yxy_angles(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R = Ry(α)·Rx(β)·Ry(γ) (e3nn's ``matrix_to_angles``)."""
    y = r[..., :, 1]
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    beta = np.arccos(np.clip(y[..., 1], -1, 1))
    alpha = np.arctan2(y[..., 0], y[..., 2])
    ca, sa, cb, sb = np.cos(alpha), np.sin(alpha), np.cos(beta), np.sin(beta)
    o, z = np.ones_like(alpha), np.zeros_like(alpha)
    ry = np.stack([np.stack([ca, z, sa], -1), np.stack([z, o, z], -1), np.stack([-sa, z, ca], -1)], -2)
    rx = np.stack([np.stack([o, z, z], -1), np.stack([z, cb, -sb], -1), np.stack([z, sb, cb], -1)], -2)
    rest = (ry @ rx).swapaxes(-1, -2) @ r
    return alpha, beta, np.arctan2(rest[..., 0, 2], rest[..., 0, 0])


def _project_so3(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= d[..., None]
    return u @ vt


def sh_rotation_blocks(c2w_rot: np.ndarray) -> list[np.ndarray]:
    """Per-view SH rotation matrices for degrees 0..2, as the reference implementation builds them:
    axes permuted (yzx → xyz), projected to SO(3), Y-X-Y angles, and ``D(α, −β, γ)``."""
    p = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])
    r = _project_so3(np.linalg.inv(p) @ c2w_rot @ p)
    alpha, beta, gamma = (a % (2 * math.pi) for a in _yxy_angles(r))
    beta = (-beta) % (2 * math.pi)
    blocks = []
    for l in range(SH_DEGREE + 1):
        g = _so3_generators(l)
        ex = [_expm_skew(a[..., None, None] * g[i]) for a, i in ((alpha, 1), (beta, 0), (gamma, 1))]
        blocks.append(ex[0] @ ex[1] @ ex[2])
    return blocks


# --- the adapter ---------------------------------------------------------------------------------


def _world_rotations(raw_rot: torch.Tensor, c2w_rot: torch.Tensor) -> torch.Tensor:
    """raw_rot (S, P, 4), c2w_rot (S, 3, 3) → (S, P, 4) world rotations, upstream index order."""
    q = raw_rot / (raw_rot.norm(dim=-1, keepdim=True) + 1e-8)
    r_cam = quat_to_matrix(q[..., [3, 0, 1, 2]])
    return matrix_to_quat(c2w_rot[:, None] @ r_cam)


def gaussians_from_raw(
    raw: torch.Tensor,
    density: torch.Tensor,
    depth: torch.Tensor,
    w2c: torch.Tensor,
    intrinsics: torch.Tensor,
    pose_scale: float = 1.0,
) -> GaussianTensors:
    """raw (S, H, W, 37), density (S, H, W), depth (S, H, W), w2c (S, 3, 4), intrinsics (S, 3, 3) pixels.

    ``pose_scale`` (posed jobs) multiplies camera translations and Gaussian depths.
    """
    s, h, w, _ = raw.shape
    c2w = invert_rigid(w2c)
    centres = c2w[:, :, 3] * pose_scale
    k_norm = intrinsics.clone()
    k_norm[:, 0] /= w
    k_norm[:, 1] /= h
    gs_depth = (depth + raw[..., 36]) * pose_scale

    ys, xs = torch.meshgrid(
        torch.arange(h, device=raw.device), torch.arange(w, device=raw.device), indexing="ij"
    )
    x = (xs + 0.5) / w + raw[..., 0] / w
    y = (ys + 0.5) / h + raw[..., 1] / h
    pix = torch.stack((x, y, torch.ones_like(x)), dim=-1)  # (S, H, W, 3)
    dirs = torch.einsum("sij,shwj->shwi", torch.linalg.inv(k_norm), pix)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    dirs = torch.einsum("sij,shwj->shwi", c2w[:, :, :3], dirs)
    means = centres[:, None, None] + dirs * gs_depth[..., None]

    pixel_size = torch.tensor((1.0 / w, 1.0 / h), dtype=raw.dtype, device=raw.device)
    multiplier = 0.1 * (torch.linalg.inv(k_norm[:, :2, :2]) @ pixel_size).sum(-1)  # (S,)
    scales = SCALE_MIN + (SCALE_MAX - SCALE_MIN) * torch.sigmoid(raw[..., 2:5])
    scales = scales * gs_depth[..., None] * multiplier[:, None, None, None]

    rotations = _world_rotations(raw[..., 5:9].reshape(s, h * w, 4), c2w[:, :, :3])

    mask = torch.tensor(SH_MASK, dtype=raw.dtype, device=raw.device)
    sh = raw[..., 9:36].reshape(s, h * w, 3, 9) * mask
    blocks = sh_rotation_blocks(c2w[:, :, :3].double().cpu().numpy())
    rotated, start = [], 0
    for block in blocks:
        n = block.shape[-1]
        d = torch.from_numpy(block).to(device=raw.device, dtype=raw.dtype)  # (S, n, n)
        rotated.append(torch.einsum("sij,spcj->spci", d, sh[..., start : start + n]))
        start += n
    sh = torch.cat(rotated, dim=-1)

    opacity = 0.5 * (1 - (1 - density) + density)  # the reference mapping at exponent 1, computed literally
    return GaussianTensors(
        means=means.reshape(-1, 3),
        scales=scales.reshape(-1, 3),
        rotations=rotations.reshape(-1, 4),
        harmonics=sh.reshape(-1, 3, 9),
        opacities=opacity.reshape(-1),
    )
