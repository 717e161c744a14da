"""2-D rotary position embedding (RoPE) of the DA3 backbone.

A head of size D is split in two halves: the first is rotated by the token's y position, the
second by its x position. Inside a half of size d, the pairs are (j, j + d/2) ("rotate half"),
with frequencies ``100^(-2k/d)``, k = 0 .. d/2-1. Angles are computed in fp32 (positions ×
inverse frequencies) before cos/sin, as the official implementation does. The cos/sin tables are
built once per forward pass and shared by every block that uses the same positions.
"""

from __future__ import annotations

import torch

ROPE_BASE = 100.0


def rope_tables(pos: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """pos: (T, 2) integer (y, x) positions → (cos, sin), each (T, head_dim) float32."""
    d = head_dim // 2
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, d, 2, device=pos.device).float() / d))
    halves = []
    for axis in (0, 1):
        angles = pos[:, axis].float()[:, None] * inv_freq  # (T, d/2)
        halves.append(torch.cat((angles, angles), dim=-1))
    angles = torch.cat(halves, dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x: (B, heads, T, D) → rotated x, with tables from ``rope_tables``."""
    cos, sin = tables
    q = x.shape[-1] // 4
    rotated = torch.cat((-x[..., q : 2 * q], x[..., :q], -x[..., 3 * q :], x[..., 2 * q : 3 * q]), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


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
