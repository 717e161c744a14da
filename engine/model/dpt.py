"""DPT dense heads (DA3 §2.6, §2.7, §5.1): depth (+ ray or sky) maps from four backbone layers.

Maps are NCHW with N = views. ``ph = H/14``. The pyramid: layer 1 at 4ph, 2 at 2ph, 3 at ph,
4 at ⌈ph/2⌉; fused top-down to 8ph, then the depth logits are bilinearly upsampled to H×W.
Module names mirror the checkpoints (``scratch.refinenet1.resConfUnit1.conv1`` ...).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .presets import HeadConfig

PATCH = 14
RAY_LEVEL = 3  # only the finest level of the ray pyramid is used; levels 0-2 exist in checkpoints only


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def uv_embedding(c: int, h: int, w: int, aspect: float, device, dtype) -> torch.Tensor:
    """(c, h, w) UV sin-cos embedding ×0.1 (§2.6): [sin uω, cos uω, sin vω, cos vω], ω_k = 100^(-4k/c)."""
    diag = math.sqrt(aspect**2 + 1.0)
    sx, sy = aspect / diag, 1.0 / diag
    u = torch.linspace(-sx * (w - 1) / w, sx * (w - 1) / w, w, dtype=dtype, device=device)
    v = torch.linspace(-sy * (h - 1) / h, sy * (h - 1) / h, h, dtype=dtype, device=device)
    q = c // 4
    omega = 1.0 / 100.0 ** (torch.arange(q, dtype=torch.float32, device=device) / q)

    def embed(p):  # (n,) → (n, 2q)
        a = p.reshape(-1)[:, None] * omega
        return torch.cat((a.sin(), a.cos()), dim=-1)

    eu = embed(u)[None, :, :].expand(h, w, 2 * q)
    ev = embed(v)[:, None, :].expand(h, w, 2 * q)
    return (torch.cat((eu, ev), dim=-1) * 0.1).permute(2, 0, 1).to(dtype)


class ResidualConvUnit(nn.Module):
    """``conv2(relu(conv1(relu(x)))) + x``."""

    def __init__(self, f: int):
        super().__init__()
        self.conv1 = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True)).add_(x)


class FusionBlock(nn.Module):
    """``out_conv(up(RCU2(x + RCU1(lateral))))``; the coarsest block has no lateral input."""

    def __init__(self, f: int, lateral: bool = True):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(f) if lateral else None
        self.resConfUnit2 = ResidualConvUnit(f)
        self.out_conv = nn.Conv2d(f, f, 1)

    def forward(self, x: torch.Tensor, lateral: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if lateral is not None and self.resConfUnit1 is not None:
            x = x + self.resConfUnit1(lateral)
        x = self.resConfUnit2(x)
        size = size or (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(upsample(x, size))


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _conv_relu_conv(c_in: int, c_out: int, norm: nn.Module | None = None) -> nn.Sequential:
    """3×3 conv c_in→32, [LayerNorm], ReLU, 1×1 conv 32→c_out. Identity placeholders keep the
    checkpoint's Sequential indices (conv .0, LayerNorm .2, final conv .2 or .5)."""
    if norm is None:
        return nn.Sequential(
            nn.Conv2d(c_in, 32, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(32, c_out, 1)
        )
    return nn.Sequential(
        nn.Conv2d(c_in, 32, 3, padding=1),
        nn.Identity(),
        norm,
        nn.Identity(),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, c_out, 1),
    )


def _ray_neck(f: int) -> nn.Sequential:
    """Five 3×3 convs F→F/2→F→F/2→F→F/2 with no activation in between."""
    chans = [f, f // 2, f, f // 2, f, f // 2]
    return nn.Sequential(*(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:], strict=False)))


class Scratch(nn.Module):
    """The fusion pyramid: ``layerK_rn`` projections and ``refinenetK`` blocks (+ ``_aux`` copies)."""

    def __init__(self, cfg: HeadConfig, aux: bool):
        super().__init__()
        f = cfg.features
        for k, oc in enumerate(cfg.out_channels, start=1):
            setattr(self, f"layer{k}_rn", nn.Conv2d(oc, f, 3, padding=1, bias=False))
        names = ["", "_aux"] if aux else [""]
        for suffix in names:
            for k in range(1, 5):
                setattr(self, f"refinenet{k}{suffix}", FusionBlock(f, lateral=k != 4))
        self.output_conv1 = nn.Conv2d(f, f // 2, 3, padding=1)

    def fuse(self, levels: list[torch.Tensor], suffix: str = "", trace: dict | None = None) -> torch.Tensor:
        """levels: the four ``layerK_rn`` outputs. Returns the fused map at 8ph (before output_conv1)."""
        l1, l2, l3, l4 = levels
        out = getattr(self, f"refinenet4{suffix}")(l4, size=l3.shape[-2:])
        if trace is not None:
            trace["head_refinenet4_v0"] = out[0]
        out = getattr(self, f"refinenet3{suffix}")(out, l3, size=l2.shape[-2:])
        if trace is not None:
            trace["head_refinenet3_v0"] = out[0]
        out = getattr(self, f"refinenet2{suffix}")(out, l2, size=l1.shape[-2:])
        return getattr(self, f"refinenet1{suffix}")(out, l1)


class DPTHead(nn.Module):
    """Shared trunk: project the four feature layers, resize them into a pyramid, fuse."""

    def __init__(self, cfg: HeadConfig, aux: bool = False):
        super().__init__()
        self.cfg = cfg
        oc = cfg.out_channels
        self.norm = nn.LayerNorm(cfg.dim_in, eps=1e-5) if cfg.input_norm else None
        self.projects = nn.ModuleList(nn.Conv2d(cfg.dim_in, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(oc[0], oc[0], 4, stride=4),
                nn.ConvTranspose2d(oc[1], oc[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(oc[3], oc[3], 3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(cfg, aux)
        self._uv_cache: dict = {}

    def add_uv(self, x: torch.Tensor, aspect: float, inplace: bool = False) -> torch.Tensor:
        """Add the UV embedding (in place for a fresh intermediate map, to save a full-size copy)."""
        if not self.cfg.pos_embed:
            return x
        key = (x.shape[1:], aspect, x.device, x.dtype)
        if key not in self._uv_cache:
            self._uv_cache = {
                key: uv_embedding(x.shape[1], x.shape[2], x.shape[3], aspect, x.device, x.dtype)
            }
        return x.add_(self._uv_cache[key]) if inplace else x + self._uv_cache[key]

    def pyramid(
        self, feats: list[torch.Tensor], h: int, w: int, trace: dict | None = None
    ) -> list[torch.Tensor]:
        """feats: four (V, P, D) maps → ``layerK_rn`` outputs at 4ph, 2ph, ph, ⌈ph/2⌉."""
        ph, pw = h // PATCH, w // PATCH
        levels = []
        for k, feat in enumerate(feats):
            x = self.norm(feat) if self.norm is not None else feat
            x = x.transpose(1, 2).reshape(x.shape[0], -1, ph, pw)
            x = self.resize_layers[k](self.add_uv(self.projects[k](x), w / h))
            levels.append(getattr(self.scratch, f"layer{k + 1}_rn")(x))
        if trace is not None:
            trace["head_layer3_rn_v0"], trace["head_layer4_rn_v0"] = levels[2][0], levels[3][0]
        return levels


class DepthHead(DPTHead):
    """DualDPT (any-view: depth + confidence, and rays) or DPT (metric/mono: depth + sky)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__(cfg, aux=cfg.dual)
        f = cfg.features
        self.scratch.output_conv2 = _conv_relu_conv(f // 2, cfg.output_dim)
        if cfg.dual:
            self.scratch.output_conv1_aux = nn.ModuleList(_ray_neck(f) for _ in range(4))
            shared_norm = ChannelLayerNorm(32, eps=1e-5)  # one module in all four (tied in checkpoints)
            self.scratch.output_conv2_aux = nn.ModuleList(
                _conv_relu_conv(f // 2, 7, shared_norm) for _ in range(4)
            )
        if cfg.sky:
            self.scratch.sky_output_conv2 = _conv_relu_conv(f // 2, 1)

    def forward(self, feats, h: int, w: int, *, rays: bool = False, trace: dict | None = None) -> dict:
        """feats: four (V, P, D). Returns logits/maps per view: ``depth`` (V,H,W), ``conf``, ``sky``, ``ray``
        (V, 8ph, 8pw, 6), ``ray_conf`` — whichever the head has (rays only when asked)."""
        sc = self.scratch
        levels = self.pyramid(feats, h, w, trace)
        out = {}
        if self.cfg.dual and rays:
            aux = sc.output_conv1_aux[RAY_LEVEL](sc.fuse(levels, "_aux"))
            ray_logits = sc.output_conv2_aux[RAY_LEVEL](self.add_uv(aux, w / h, inplace=True))
            del aux
            out["ray"] = ray_logits[:, :6].permute(0, 2, 3, 1)
            out["ray_conf"] = torch.exp(ray_logits[:, 6]) + 1
            if trace is not None:
                trace["head_ray_logits_v0"] = ray_logits[0]
        fused = sc.output_conv1(sc.fuse(levels, trace=trace))
        del levels
        neck = self.add_uv(upsample(fused, (h, w)), w / h, inplace=True)  # (V, F/2, H, W): the peak
        del fused
        logits = sc.output_conv2(neck)
        out["depth"] = torch.exp(logits[:, 0])
        if self.cfg.output_dim == 2:
            out["conf"] = torch.exp(logits[:, 1]) + 1
        if trace is not None:
            trace["head_logits_v0"] = logits[0]
        if self.cfg.sky:
            sky_logits = sc.sky_output_conv2(neck)
            out["sky"] = F.relu(sky_logits[:, 0])
            if trace is not None:
                trace["head_sky_logits_v0"] = sky_logits[0]
        return out


class GaussianHead(DPTHead):
    """GSDPT (§5.1): raw Gaussian parameters per pixel; the input image enters through ``images_merger``."""

    def __init__(self, cfg: HeadConfig, out_dim: int = 38):
        super().__init__(replace(cfg, input_norm=False))  # GSDPT takes the features without a LayerNorm
        f = cfg.features
        self.scratch.output_conv2 = _conv_relu_conv(f // 2, out_dim)
        self.images_merger = nn.Sequential(
            nn.Conv2d(3, f // 8, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(f // 8, f // 4, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(f // 4, f // 2, 3, padding=1),
            nn.GELU(),
        )

    def forward(self, feats, images: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """images: (V, 3, H, W) normalised. Returns raw (V, H, W, 37) and opacity density (V, H, W)."""
        fused = self.scratch.output_conv1(self.scratch.fuse(self.pyramid(feats, h, w)))
        neck = upsample(fused, (h, w)).add_(self.images_merger(images))
        del fused
        logits = self.scratch.output_conv2(self.add_uv(neck, w / h, inplace=True)).permute(0, 2, 3, 1)
        return logits[..., :-1], torch.sigmoid(logits[..., -1])
