"""2-D rotary position embedding (RoPE) of the DA3 backbone.

A head of size D is split in two halves: the first is rotated by the token's y position, the
second by its x position. Inside a half of size d, the pairs are (j, j + d/2) ("rotate half"),
with frequencies ``100^(-2k/d)``, k = 0 .. d/2-1. Angles are computed in fp32 and cast to the
q/k dtype before cos/sin, as the official implementation does.
"""

from __future__ import annotations

import torch

ROPE_BASE = 100.0


def _rotate_1d(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x: (B, heads, T, d); positions: (B, T) integer."""
    d = x.shape[-1]
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, d, 2, device=x.device).float() / d))
    angles = (positions.to(torch.float32)[..., None] * inv_freq).to(x.dtype)  # (B, T, d/2)
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, T, d)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * angles.cos() + torch.cat((-x2, x1), dim=-1) * angles.sin()


def apply_rope_2d(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """x: (B, heads, T, D); pos: (B or 1, T, 2) integer (y, x) positions."""
    y_half, x_half = x.chunk(2, dim=-1)
    return torch.cat((_rotate_1d(y_half, pos[..., 0]), _rotate_1d(x_half, pos[..., 1])), dim=-1)


def grid_positions(ph: int, pw: int, device=None) -> torch.Tensor:
    """Positions of one view's tokens for per-view blocks: token 0 → (0, 0), patch (y, x) → (y+1, x+1).

    Returns (1 + ph*pw, 2) int64, patches row-major.
    """
    ys, xs = torch.meshgrid(torch.arange(ph, device=device), torch.arange(pw, device=device), indexing="ij")
    patches = torch.stack((ys.reshape(-1), xs.reshape(-1)), dim=-1) + 1
    return torch.cat((torch.zeros(1, 2, dtype=patches.dtype, device=device), patches))


def flat_positions(ph: int, pw: int, device=None) -> torch.Tensor:
    """Positions for cross-view blocks: token 0 → (0, 0), every patch → (1, 1) (no spatial signal)."""
    pos = torch.ones(1 + ph * pw, 2, dtype=torch.int64, device=device)
    pos[0] = 0
    return pos
