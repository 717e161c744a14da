"""Render 3D Gaussians from cameras the way gsplat does (a preview, a fly-through, a ground truth).

Colours come from the SH along the ray from the camera centre to each splat's centre (+0.5, clamped at
0, as 3DGS and gsplat do); covariances and the 2D projection are gsplat's own PyTorch code
(``gsplat.cuda._torch_impl``: ``_quat_scale_to_covar_preci``, ``_fully_fused_projection`` with its
0.3 px² low-pass and 3.33σ radii). On a CUDA device with gsplat's compiled rasterizer the whole render is
``gsplat.rasterization``; elsewhere the projected Gaussians go through ``composite_front_to_back``, which
follows the CUDA rasterizer's rules. gsplat is optional: without it this module says what is missing
and nothing else in the engine changes.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from ..errors import UserError
from ..formats.gaussians_ply import Gaussians
from .composite import composite_front_to_back

__all__ = ["GSPLAT_MISSING", "gsplat_available", "render_gaussians"]

GSPLAT_MISSING = (
    "Splat renders need gsplat, which is not installed in the engine's Python: pip install gsplat==1.5.3 "
    "(everything else works without it)."
)


def gsplat_available() -> bool:
    """True when gsplat can be imported (its PyTorch reference code runs on any device)."""
    return importlib.util.find_spec("gsplat") is not None


def _torch_impl():
    if not gsplat_available():
        raise UserError(GSPLAT_MISSING)
    from gsplat.cuda import _torch_impl  # the PyTorch reference: no CUDA build needed

    return _torch_impl


def _colours(g: Gaussians, camera_centre: torch.Tensor, sh_degree: int | None, impl) -> torch.Tensor:
    sh = torch.as_tensor(np.ascontiguousarray(g.sh), dtype=torch.float32).transpose(1, 2)  # (N, K, 3)
    available = int(np.sqrt(sh.shape[1])) - 1
    degree = available if sh_degree is None else min(int(sh_degree), available)
    dirs = torch.as_tensor(g.means, dtype=torch.float32) - camera_centre[None, :]
    return torch.clamp_min(impl._spherical_harmonics(degree, dirs, sh) + 0.5, 0.0)


def render_gaussians(
    g: Gaussians,
    viewmat: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    background: tuple[float, float, float] | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """(H, W, 3) float32 colours of ``g`` seen by the OpenCV camera ``viewmat`` (4, 4, world → camera:
    x right, y down, z forward) with intrinsics ``K`` (3, 3, pixels; pixel (u, v) covers [u, u+1))."""
    impl = _torch_impl()
    view = torch.as_tensor(np.asarray(viewmat, np.float32).reshape(4, 4))
    intr = torch.as_tensor(np.asarray(K, np.float32).reshape(3, 3))
    centre = -view[:3, :3].T @ view[:3, 3]
    colours = _colours(g, centre, sh_degree, impl)
    means = torch.as_tensor(np.ascontiguousarray(g.means), dtype=torch.float32)
    quats = torch.as_tensor(np.ascontiguousarray(g.rotations), dtype=torch.float32)
    scales = torch.as_tensor(np.ascontiguousarray(g.scales), dtype=torch.float32)
    opacities = torch.as_tensor(np.ascontiguousarray(g.opacities), dtype=torch.float32)
    back = None if background is None else torch.tensor(background, dtype=torch.float32)
    if str(device).startswith("cuda") and torch.cuda.is_available():
        from gsplat import rasterization  # the CUDA rasterizer (compiled on first use)

        dev = torch.device(device)
        rendered, _, _ = rasterization(
            means.to(dev),
            quats.to(dev),
            scales.to(dev),
            opacities.to(dev),
            colours.to(dev),
            view[None].to(dev),
            intr[None].to(dev),
            width,
            height,
            backgrounds=None if back is None else back[None].to(dev),
        )
        return rendered[0].float().cpu().numpy()
    covars, _ = impl._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(
        means, covars, view[None], intr[None], width, height
    )
    image, _ = composite_front_to_back(
        means2d[0], conics[0], opacities, colours, depths[0], radii[0], width, height, back
    )
    return image.numpy().astype(np.float32)
