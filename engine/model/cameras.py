"""Camera decoder (tokens → poses) and camera encoder (poses → tokens), DA3 §2.8–2.9.

Pose encoding (9): ``[t (3) = camera centre (c2w translation), q (4) scalar-last xyzw, fov_h, fov_w]``.
Extrinsics are OpenCV world-to-camera (…, 3, 4); intrinsics in pixels of the processed image.
Both run in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Block, Mlp


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Scalar-last quaternions (…, 4) (any norm) → rotation matrices (…, 3, 3)."""
    i, j, k, r = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    m = torch.stack(
        (
            1 - s * (j * j + k * k), s * (i * j - k * r), s * (i * k + j * r),
            s * (i * j + k * r), 1 - s * (i * i + k * k), s * (j * k - i * r),
            s * (i * k - j * r), s * (j * k + i * r), 1 - s * (i * i + j * j),
        ),
        dim=-1,
    )  # fmt: skip
    return m.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (…, 3, 3) → scalar-last quaternions (…, 4) with w ≥ 0.

    Of the four algebraically equivalent candidates, the one with the largest |component| is used
    (well conditioned everywhere); denominators are floored at 0.1 as in the reference code.
    """
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.reshape(*m.shape[:-2], 9).unbind(-1)
    sq = torch.stack(
        (1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), dim=-1
    )
    q_abs = torch.where(sq > 0, torch.sqrt(sq.clamp(min=0)), torch.zeros_like(sq))
    cands = torch.stack(  # rows: candidate from r, i, j, k; columns: (r, i, j, k)
        (
            torch.stack((q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21), dim=-1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2), dim=-1),
        ),
        dim=-2,
    )
    cands = cands / (2.0 * q_abs[..., None].clamp(min=0.1))
    best = q_abs.argmax(dim=-1)
    rijk = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
    q = rijk[..., [1, 2, 3, 0]]
    return torch.where(q[..., 3:4] < 0, -q, q)


def invert_rigid(rt: torch.Tensor) -> torch.Tensor:
    """[R | t] (…, 3, 4) → [Rᵀ | −Rᵀt]."""
    r, t = rt[..., :3, :3], rt[..., :3, 3:]
    rinv = r.transpose(-1, -2)
    return torch.cat((rinv, -rinv @ t), dim=-1)


def pose_encoding_to_cameras(enc: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, 9) → (w2c extrinsics (…, 3, 4), intrinsics (…, 3, 3)); principal point at the image centre."""
    c2w = torch.cat((quat_to_matrix(enc[..., 3:7]), enc[..., :3, None]), dim=-1)
    fy = (h / 2.0) / torch.clamp(torch.tan(enc[..., 7] / 2.0), min=1e-6)
    fx = (w / 2.0) / torch.clamp(torch.tan(enc[..., 8] / 2.0), min=1e-6)
    k = torch.zeros(*enc.shape[:-1], 3, 3, dtype=enc.dtype, device=enc.device)
    k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = fx, fy, w / 2, h / 2, 1.0
    return invert_rigid(c2w), k


def cameras_to_pose_encoding(w2c: torch.Tensor, k: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """w2c (…, 3|4, 4), K (…, 3, 3) → (…, 9). The principal point is not encoded."""
    c2w = invert_rigid(w2c[..., :3, :])
    fov_h = 2 * torch.atan((h / 2) / k[..., 1, 1])
    fov_w = 2 * torch.atan((w / 2) / k[..., 0, 0])
    return torch.cat(
        (c2w[..., :3, 3], matrix_to_quat(c2w[..., :3, :3]), fov_h[..., None], fov_w[..., None]), -1
    )


class CameraDecoder(nn.Module):
    """MLP on the raw camera token of the last out layer → pose encoding."""

    def __init__(self, dim: int):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU())
        self.fc_t = nn.Linear(dim, 3)
        self.fc_qvec = nn.Linear(dim, 4)
        self.fc_fov = nn.Sequential(nn.Linear(dim, 2))  # ReLU applied in forward (index 0 kept for keys)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        """token: (…, 2C) → (…, 9)."""
        h = self.backbone(token.float())
        return torch.cat((self.fc_t(h), self.fc_qvec(h), F.relu(self.fc_fov(h))), dim=-1)


class CameraEncoder(nn.Module):
    """Pose encoding → one token per view; a 4-block trunk attends across the views (16 heads)."""

    def __init__(self, dim: int, depth: int = 4, heads: int = 16):
        super().__init__()
        self.pose_branch = Mlp(9, dim // 2, dim)
        self.token_norm = nn.LayerNorm(dim, eps=1e-5)
        self.trunk = nn.ModuleList(Block(dim, heads, 4 * dim, norm_eps=1e-5) for _ in range(depth))
        self.trunk_norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        """encoding: (B, S, 9) → tokens (B, S, C)."""
        x = self.token_norm(self.pose_branch(encoding.float()))
        for block in self.trunk:
            x = block(x)
        return self.trunk_norm(x)
