"""Front-to-back compositing of projected 2D Gaussians with gsplat's rules, on any torch device.

gsplat 1.5's CUDA rasterizer (``IntersectTile.cu``, ``RasterizeToPixels3DGSFwd.cu``), followed here exactly:

* a Gaussian touches the pixels of the 16 × 16 tiles its per-axis radius box overlaps: tiles
  ``floor((mean − radius) / 16)`` to ``ceil((mean + radius) / 16)`` (exclusive), clamped to the image,
  computed in the inputs' precision like the kernel; within those tiles every pixel is tested (the box
  itself is not), and Gaussians with a zero radius are not drawn;
* per tile, Gaussians are taken in order of their centre's depth (ties by index: gsplat's stable sort of
  the intersections);
* at the pixel centre (x + 0.5, y + 0.5), ``σ = ½(a dx² + c dy²) + b dx dy`` with the conic (a, b, c) and
  ``d = mean − pixel``; skipped when σ < 0; ``α = min(0.999, opacity · e^−σ)`` (gsplat caps at 0.999,
  the Inria code at 0.99), skipped when α < 1/255;
* ``T' = T (1 − α)``; when T' ≤ 1e-4 the pixel is done *without* that Gaussian; otherwise the colour
  gains ``α T c`` and T becomes T';
* the background adds ``T · background`` at the end; the alpha returned is ``1 − T``.

Like the kernel, the work goes tile by tile; within a tile it is vectorised over the tile's pixels and a
batch of its Gaussians at once (the transmittance before each Gaussian is a running product, which keeps
the kernel's left-to-right order of multiplication). The sums of ``α T c`` are taken in another order
than the kernel's, and the kernel's ``__expf`` is an approximation, so float32 results agree to about
1e-6, not bit for bit.
"""

from __future__ import annotations

import math

import torch

__all__ = ["ALPHA_CAP", "ALPHA_MIN", "TILE_SIZE", "TRANSMITTANCE_MIN", "composite_front_to_back"]

TILE_SIZE = 16
ALPHA_CAP = 0.999
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
BATCH = 1024  # at most this many Gaussians of one tile evaluated together (× 256 pixels per tensor)
FIRST_BATCH = 128  # then doubled: a dense tile is often opaque before its first few hundred are done


def _intersections(
    means2d: torch.Tensor, radii: torch.Tensor, depths: torch.Tensor, tiles_x: int, tiles_y: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """gsplat's ``isect_tiles``: (tile id, Gaussian id) of every tile–Gaussian overlap, sorted by tile,
    then by depth (ties by index). means2d (N, 2), radii (N, 2), depths (N,) → two (M,) int64 tensors."""
    device = means2d.device
    n = means2d.shape[0]
    tile_xy = means2d / TILE_SIZE
    tile_r = radii.to(means2d.dtype) / TILE_SIZE
    limit = torch.tensor([tiles_x, tiles_y], device=device)
    lo = torch.minimum(torch.floor(tile_xy - tile_r).long().clamp_min(0), limit)
    hi = torch.minimum(torch.ceil(tile_xy + tile_r).long().clamp_min(0), limit)
    span = hi - lo  # (N, 2) tiles along x and y
    counts = span[:, 0] * span[:, 1] * (radii > 0).all(dim=-1)
    gaussian = torch.repeat_interleave(torch.arange(n, device=device), counts)
    first = torch.cumsum(counts, 0) - counts  # where each Gaussian's run of tiles starts
    k = torch.arange(gaussian.shape[0], device=device) - first[gaussian]
    span_x = span[gaussian, 0]
    tile = (lo[gaussian, 1] + k // span_x) * tiles_x + lo[gaussian, 0] + k % span_x
    rank = torch.empty(n, dtype=torch.long, device=device)
    rank[torch.argsort(depths, stable=True)] = torch.arange(n, device=device)
    order = torch.argsort(tile * max(n, 1) + rank[gaussian])  # keys are unique
    return tile[order], gaussian[order]


def _composite_tile(
    dx0: torch.Tensor,  # (B, 1) Gaussian centre x
    dy0: torch.Tensor,  # (B, 1) Gaussian centre y
    conics: torch.Tensor,  # (B, 3)
    opacities: torch.Tensor,  # (B,)
    colors: torch.Tensor,  # (B, C)
    px: torch.Tensor,  # (P,) pixel centres x
    py: torch.Tensor,  # (P,) pixel centres y
    transmittance: torch.Tensor,  # (P,) T before this batch
    done: torch.Tensor,  # (P,) bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch of one tile's Gaussians (in depth order) over its pixels → (colour gained (P, C), T, done)."""
    dx = dx0 - px[None, :]
    dy = dy0 - py[None, :]
    a, b, c = conics[:, 0:1], conics[:, 1:2], conics[:, 2:3]
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp(opacities[:, None] * torch.exp(-sigma), max=ALPHA_CAP)
    live = (sigma >= 0) & (alpha >= ALPHA_MIN) & ~done[None, :]
    alpha = torch.where(live, alpha, torch.zeros_like(alpha))
    # running transmittance T, T(1 − α₀), T(1 − α₀)(1 − α₁), … multiplied left to right as the kernel does
    running = torch.cumprod(torch.cat([transmittance[None, :], 1.0 - alpha]), dim=0)
    before, after = running[:-1], running[1:]
    stop = live & (after <= TRANSMITTANCE_MIN)
    stopped = torch.cumsum(stop.to(torch.int32), dim=0) > 0  # at or after the first stop
    use = live & ~stopped
    weight = torch.where(use, alpha * before, torch.zeros_like(alpha))
    gained = weight.T @ colors
    any_stop = stopped[-1]
    first_stop = torch.argmax(stop.to(torch.int8), dim=0)
    at_stop = before.gather(0, first_stop[None, :])[0]
    return gained, torch.where(any_stop, at_stop, running[-1]), done | any_stop


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
    """One camera, pixels on the image grid (pixel (x, y) covers [x, x + 1) × [y, y + 1)):

    means2d (N, 2) pixels; conics (N, 3) inverse 2D covariance (a, b, c) = (Σ⁻¹₀₀, Σ⁻¹₀₁, Σ⁻¹₁₁);
    opacities (N,) in [0, 1]; colors (N, C); depths (N,) camera z; radii (N, 2) integer pixels per axis
    (0: not drawn); background (C,) or None → colour (H, W, C) and alpha (H, W), in the inputs' dtype.
    """
    device, dtype = means2d.device, means2d.dtype
    channels = colors.shape[-1]
    image = torch.zeros(height, width, channels, device=device, dtype=dtype)
    transmittance = torch.ones(height, width, device=device, dtype=dtype)
    tiles_x = math.ceil(width / TILE_SIZE)
    tiles_y = math.ceil(height / TILE_SIZE)
    tile_ids, gaussian_ids = _intersections(means2d, radii, depths, tiles_x, tiles_y)
    bounds = torch.searchsorted(tile_ids, torch.arange(tiles_x * tiles_y + 1, device=device))
    bounds = bounds.tolist()
    grid = torch.arange(TILE_SIZE, device=device, dtype=dtype) + 0.5
    colors = colors.to(dtype)
    for tile in range(tiles_x * tiles_y):
        start, end = bounds[tile], bounds[tile + 1]
        if start == end:
            continue
        x0, y0 = (tile % tiles_x) * TILE_SIZE, (tile // tiles_x) * TILE_SIZE
        w, h = min(TILE_SIZE, width - x0), min(TILE_SIZE, height - y0)
        px = (x0 + grid[:w]).repeat(h)
        py = (y0 + grid[:h]).repeat_interleave(w)
        t = torch.ones(h * w, device=device, dtype=dtype)
        done = torch.zeros(h * w, device=device, dtype=torch.bool)
        gained = torch.zeros(h * w, channels, device=device, dtype=dtype)
        first, size = start, FIRST_BATCH
        while first < end and not bool(done.all()):
            ids = gaussian_ids[first : min(first + size, end)]
            step, t, done = _composite_tile(
                means2d[ids, 0:1],
                means2d[ids, 1:2],
                conics[ids],
                opacities[ids],
                colors[ids],
                px,
                py,
                t,
                done,
            )
            gained += step
            first, size = first + size, min(2 * size, BATCH)
        image[y0 : y0 + h, x0 : x0 + w] = gained.reshape(h, w, channels)
        transmittance[y0 : y0 + h, x0 : x0 + w] = t.reshape(h, w)
    if background is not None:
        image += transmittance[..., None] * background.to(device=device, dtype=dtype)
    return image, 1.0 - transmittance
