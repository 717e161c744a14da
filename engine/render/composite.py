"""Front-to-back compositing of projected 2D Gaussians with gsplat's rules, on any torch device.

gsplat 1.5's CUDA rasterizer (``RasterizeToPixels3DGSFwd.cu``), followed here exactly:

* a Gaussian touches the pixels of the 16 × 16 tiles its per-axis radius box overlaps (``_isect_tiles``);
  within them every pixel is tested;
* Gaussians are taken in order of their centre's depth (ties by index);
* at the pixel centre (x + 0.5, y + 0.5), ``σ = ½(a dx² + c dy²) + b dx dy`` with the conic (a, b, c);
  skipped when σ < 0; ``α = min(0.999, opacity · e^−σ)``, skipped when α < 1/255;
* ``T' = T (1 − α)``; when T' ≤ 1e-4 the pixel is done *without* that Gaussian; otherwise the colour
  gains ``α T c`` and T becomes T';
* the background adds ``T · background`` at the end.

The loop runs over Gaussians (in depth order) and is vectorised over each one's pixels, so it suits the
small renders and checks it is used for; gsplat's CUDA kernel is the tool for millions of splats.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ALPHA_CAP", "ALPHA_MIN", "TILE_SIZE", "TRANSMITTANCE_MIN", "composite_front_to_back"]

TILE_SIZE = 16
ALPHA_CAP = 0.999
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4


def _tile_box(
    mean2d: torch.Tensor, radius: torch.Tensor, width: int, height: int
) -> tuple[int, int, int, int]:
    """Pixel bounds (x0, x1, y0, y1) of the tiles that the box mean ± radius overlaps."""
    tiles_x = (width + TILE_SIZE - 1) // TILE_SIZE
    tiles_y = (height + TILE_SIZE - 1) // TILE_SIZE
    tx, ty = float(mean2d[0]) / TILE_SIZE, float(mean2d[1]) / TILE_SIZE
    rx, ry = float(radius[0]) / TILE_SIZE, float(radius[1]) / TILE_SIZE
    x0 = min(max(math.floor(tx - rx), 0), tiles_x)
    x1 = min(max(math.ceil(tx + rx), 0), tiles_x)
    y0 = min(max(math.floor(ty - ry), 0), tiles_y)
    y1 = min(max(math.ceil(ty + ry), 0), tiles_y)
    return x0 * TILE_SIZE, min(x1 * TILE_SIZE, width), y0 * TILE_SIZE, min(y1 * TILE_SIZE, height)


def composite_front_to_back(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One camera: means2d (N, 2) pixels, conics (N, 3), opacities (N,), colors (N, C), depths (N,),
    radii (N, 2) (0: not drawn) → colour (H, W, C) and alpha (H, W)."""
    device, dtype = means2d.device, means2d.dtype
    channels = colors.shape[-1]
    image = torch.zeros(height, width, channels, device=device, dtype=dtype)
    transmittance = torch.ones(height, width, device=device, dtype=dtype)
    done = torch.zeros(height, width, device=device, dtype=torch.bool)
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5
    drawn = torch.nonzero((radii > 0).all(dim=-1)).flatten()
    order = drawn[torch.argsort(depths[drawn], stable=True)]
    for g in order.tolist():
        x0, x1, y0, y1 = _tile_box(means2d[g], radii[g], width, height)
        if x0 >= x1 or y0 >= y1:
            continue
        dx = means2d[g, 0] - xs[x0:x1][None, :]
        dy = means2d[g, 1] - ys[y0:y1][:, None]
        a, b, c = conics[g]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opacities[g] * torch.exp(-sigma), max=ALPHA_CAP)
        t = transmittance[y0:y1, x0:x1]
        live = ~done[y0:y1, x0:x1] & (sigma >= 0) & (alpha >= ALPHA_MIN)
        next_t = t * (1.0 - alpha)
        finish = live & (next_t <= TRANSMITTANCE_MIN)
        use = live & ~finish
        weight = torch.where(use, alpha * t, torch.zeros_like(t))
        image[y0:y1, x0:x1] += weight[..., None] * colors[g]
        transmittance[y0:y1, x0:x1] = torch.where(use, next_t, t)
        done[y0:y1, x0:x1] |= finish
    if background is not None:
        image += transmittance[..., None] * background.to(device=device, dtype=dtype)
    return image, 1.0 - transmittance
