"""DINOv2-style ViT backbone with alternating per-view / cross-view attention (DA3 §2.2–2.5).

Tensor layout of the residual stream: ``(B, S, T, C)`` with S views and ``T = 1 + ph*pw``
tokens per view (token 0 = class token, later the camera token; patches row-major).
The per-block schedule is computed once in the constructor:

* block i is **global** (all views attend jointly, sequence ``S*T``) when ``i >= alt_start``
  and i is odd; otherwise **local** (each view alone);
* blocks ``>= alt_start`` use QK-norm and 2-D RoPE (local: grid positions; global: flat ones);
* before block ``alt_start - 1`` a reference view may be chosen and moved first (§2.13);
* at block ``alt_start`` token 0 is overwritten by the camera token (learned, or from poses).

Outputs for the heads, per out layer l: ``[local_x, x]`` (2C, cat_token) with only the global
half normed, or ``norm(x)`` (C); token 0 dropped. Camera tokens are the raw token 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Block
from .presets import BackboneConfig
from .refview import MIN_VIEWS_FOR_SELECTION, select_reference_view
from .rope import flat_positions, grid_positions, rope_tables

PATCH = 14
POS_GRID = 37  # the learned position table covers 37x37 patches (518 px) + the class entry


class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(V, 3, H, W) → (V, ph*pw, C)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Backbone(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.on_step: Callable[[str, int, int], None] | None = None  # (stage, done, total); may raise
        self.cfg = cfg
        c = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        if cfg.alt_start != -1:
            self.camera_token = nn.Parameter(torch.zeros(1, 2, c))  # [reference view, other views]
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + POS_GRID * POS_GRID, c))
        self.patch_embed = PatchEmbed(c)
        self.blocks = nn.ModuleList(
            Block(c, cfg.num_heads, cfg.ffn_hidden, ffn=cfg.ffn, qk_norm=cfg.has_rope(i))
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(c, eps=1e-5)

    def position_table(self, ph: int, pw: int) -> torch.Tensor:
        """(1 + ph*pw, C): class entry + the 37x37 table resampled bicubically by scale factor.

        The scale factors are ``(ph + 0.1)/37`` and ``(pw + 0.1)/37`` (not a target size): PyTorch
        then maps output o to source ``(o + 0.5)/s - 0.5`` with the given s, as DINOv2 does.
        """
        table = self.pos_embed[0].float()
        if ph * pw == POS_GRID * POS_GRID and ph == pw:
            return table.to(self.pos_embed.dtype)
        grid = table[1:].reshape(1, POS_GRID, POS_GRID, -1).permute(0, 3, 1, 2)
        scale = ((ph + 0.1) / POS_GRID, (pw + 0.1) / POS_GRID)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
        assert grid.shape[-2:] == (ph, pw), grid.shape
        patches = grid.permute(0, 2, 3, 1).reshape(ph * pw, -1)
        return torch.cat((table[:1], patches)).to(self.pos_embed.dtype)

    def tokens(self, x: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        """Normalised images (B, S, 3, H, W) → initial stream (B, S, T, C)."""
        b, s, _, h, w = x.shape
        patches = self.patch_embed(x.reshape(b * s, 3, h, w))
        pos = self.position_table(h // PATCH, w // PATCH)
        cls = self.cls_token.expand(b * s, 1, -1).to(patches.dtype)
        stream = torch.cat((cls, patches), dim=1) + pos
        if trace is not None:
            trace["bb_patch_embed_v0"] = patches[0]
            trace["bb_pos_embed"] = pos
            trace["bb_tokens_v0"] = stream[0]
        return stream.reshape(b, s, *stream.shape[1:])

    def forward(
        self,
        x: torch.Tensor,
        *,
        cam_tokens: torch.Tensor | None = None,
        ref_view_strategy: str = "saddle_balanced",
        ref_view_idx: int | None = None,
        export_layers: tuple[int, ...] = (),
        trace: dict | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], int, dict[int, torch.Tensor]]:
        """Run the blocks.

        x: (B, S, 3, H, W) normalised images; cam_tokens: (B, S, C) from the camera encoder or None.
        ref_view_idx forces the reference view (else the strategy picks it when S >= 3 and no poses).
        Returns (features per out layer (B, S, P, D), camera tokens per out layer (B, S, 2C or C),
        the reference view index or -1, exported block outputs {layer: (B, S, P, C)} normed).
        Everything comes back in the input view order.
        """
        cfg = self.cfg
        b, s, _, h, w = x.shape
        ph, pw = h // PATCH, w // PATCH
        stream = self.tokens(x, trace)
        head_dim = cfg.head_dim
        local_rope = rope_tables(grid_positions(ph, pw, x.device), head_dim)
        global_rope = rope_tables(flat_positions(ph, pw, x.device).repeat(s, 1), head_dim)

        order = None  # permutation applied to the view axis (reference view first)
        ref_idx = -1
        local_x = stream
        feats, cam_toks, exported = [], [], {}
        records0, records_mean = [], []
        for i, block in enumerate(self.blocks):
            if self.on_step is not None:
                self.on_step("backbone", i, len(self.blocks))
            if (
                cfg.alt_start != -1
                and i == cfg.alt_start - 1
                and cam_tokens is None
                and s >= MIN_VIEWS_FOR_SELECTION
            ):
                if trace is not None:
                    trace["bb_ref_tokens"] = stream[0, :, 0]
                ref_idx = (
                    ref_view_idx
                    if ref_view_idx is not None
                    else select_reference_view(stream, ref_view_strategy)
                )
                order = torch.tensor([ref_idx] + [v for v in range(s) if v != ref_idx], device=x.device)
                stream, local_x = stream[:, order], local_x[:, order]
            if cfg.alt_start != -1 and i == cfg.alt_start:
                stream = stream.clone()
                if cam_tokens is not None:
                    stream[:, :, 0] = cam_tokens.to(stream.dtype)
                else:
                    stream[:, :1, 0] = self.camera_token[:, 0].to(stream.dtype)
                    stream[:, 1:, 0] = self.camera_token[:, 1].to(stream.dtype)
            if cfg.is_global(i):
                rope = global_rope if cfg.has_rope(i) else None
                if self.on_step is not None:  # a long global attention checks in between its pieces
                    block.attn.between = lambda done, total: self.on_step("attention", done, total)
                try:
                    stream = block(stream.reshape(b, s * stream.shape[2], -1), rope).reshape(stream.shape)
                finally:
                    block.attn.between = None
            else:
                rope = local_rope if cfg.has_rope(i) else None
                stream = block(stream.reshape(b * s, *stream.shape[2:]), rope).reshape(stream.shape)
                local_x = stream
            if trace is not None:
                records0.append(self._unpermute(stream[:, :, 0], order)[0])
                records_mean.append(self._unpermute(stream[:, :, 1:].mean(dim=2), order)[0])
            if i in cfg.out_layers:
                out = torch.cat((local_x, stream), dim=-1) if cfg.cat_token else stream
                out = self._unpermute(out, order)
                cam_toks.append(out[:, :, 0])
                feats.append(self._head_features(out[:, :, 1:]))
            if i in export_layers:  # in input order (upstream leaves later layers reference-first)
                exported[i] = self.norm(self._unpermute(stream[:, :, 1:], order))
        if trace is not None:
            trace["bb_block_tok0"] = torch.stack(records0)  # (L, S, C)
            trace["bb_block_patch_mean"] = torch.stack(records_mean)
        return feats, cam_toks, ref_idx, exported

    def _head_features(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, S, P, 2C or C): the local half stays un-normalised; the global half (or all) is normed."""
        c = self.cfg.embed_dim
        if patches.shape[-1] == 2 * c:
            return torch.cat((patches[..., :c], self.norm(patches[..., c:])), dim=-1)
        return self.norm(patches)

    @staticmethod
    def _unpermute(t: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
        """Undo the reference-first view order on axis 1."""
        if order is None:
            return t
        return t[:, torch.argsort(order)]
