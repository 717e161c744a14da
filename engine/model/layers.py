"""Transformer building blocks shared by the backbone and the camera encoder.

Parameter names follow the official checkpoints (``norm1``, ``attn.qkv``, ``attn.q_norm``,
``ls1.gamma``, ``mlp.fc1`` / ``mlp.w12`` ...), so state dicts load without renaming.
Inference only: no dropout, no drop-path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .rope import apply_rope


class LayerScale(nn.Module):
    """Holds the per-channel γ; the block applies it fused with the residual add (``addcmul``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))


class Mlp(nn.Module):
    """Linear → exact GELU → Linear."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """Fused first projection ``w12`` split into (a, b); ``w3(silu(a) * b)``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


PIECE_FLOPS = 2e10  # work (2 × multiply-adds) per query piece of a long attention: ~0.2 s on a CPU
PIECE_ALIGN = 256  # query pieces start on multiples of this (the kernels' query blocks): identical results


class Attention(nn.Module):
    """Multi-head self-attention with optional QK-norm (LayerNorm per head, eps 1e-5) and 2-D RoPE.

    ``between`` (set by the backbone for a pass that can be cancelled) is called between query pieces of
    a long attention (a global block over a long chunk takes many seconds on a CPU): every query attends
    to all keys either way, so the pieces give the same result, and raising from it stops the block.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        self.between: Callable[[int, int], None] | None = None  # (queries done, queries)
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        head_dim = dim // num_heads
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-5) if qk_norm else None
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-5) if qk_norm else None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x: (B, T, C); rope: (cos, sin) tables (T, head_dim) from ``rope.rope_tables``, or None."""
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        if q.dtype != v.dtype:  # QK-norm runs in fp32 under autocast; keep SDPA in one dtype
            q, k = q.to(v.dtype), k.to(v.dtype)
        piece = self._piece(b, t, c)
        if piece >= t:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            parts = []
            for start in range(0, t, piece):
                self.between(start, t)  # the projections and RoPE of a long sequence take a while too
                parts.append(F.scaled_dot_product_attention(q[:, :, start : start + piece], k, v))
            x = torch.cat(parts, dim=2)
        return self.proj(x.transpose(1, 2).reshape(b, t, c))

    def _piece(self, b: int, t: int, c: int) -> int:
        """Queries per piece: all of them without ``between``, else about ``PIECE_FLOPS`` of work each."""
        if self.between is None:
            return t
        per_query = 4.0 * b * t * c  # QKᵀ and AV, all heads
        return max(PIECE_ALIGN, int(PIECE_FLOPS / per_query) // PIECE_ALIGN * PIECE_ALIGN)


class Block(nn.Module):
    """Pre-norm block: ``x + γ1·Attn(LN1 x)``, then ``x + γ2·FFN(LN2 x)``."""

    def __init__(
        self, dim: int, num_heads: int, ffn_hidden: int, *, ffn: str = "mlp", qk_norm=False, norm_eps=1e-6
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = SwiGLU(dim, ffn_hidden) if ffn == "swiglu" else Mlp(dim, ffn_hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = torch.addcmul(x, self.attn(self.norm1(x), rope), self.ls1.gamma)  # x + γ1 ⊙ attn
        return torch.addcmul(x, self.mlp(self.norm2(x)), self.ls2.gamma)
