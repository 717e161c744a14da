"""Render 3D Gaussians from cameras the way gsplat does (a preview, a fly-through, a ground truth).

Colours come from the SH along the ray from the camera centre to each splat's centre (+0.5, clamped at
0, as 3DGS and gsplat do); covariances and the 2D projection are gsplat's own PyTorch code
(``gsplat.cuda._torch_impl``: ``_quat_scale_to_covar_preci``, ``_fully_fused_projection`` with its
0.3 px² low-pass, 0.01 near plane and 3.33σ radii per axis). The projected Gaussians then go through
``composite_front_to_back``, which follows gsplat's CUDA rasterizer, on the device asked for — except on
a CUDA device where gsplat's compiled rasterizer loads, where the whole render is ``gsplat.rasterization``
(its CUDA projection draws boxes tightened by opacity, which only leaves out pixels where α < 1/255,
which both skip). gsplat is optional: without it this module says what is missing and nothing else in
the engine changes.

Importing ``gsplat`` is safe on any machine: its CUDA code (``gsplat.cuda._backend``) loads only when a
CUDA function is first called, and that first call builds the extension with nvcc when no prebuilt one is
installed (minutes, once; it fails where no CUDA toolkit fits the installed torch). This module touches
that backend only on a CUDA device, and falls back to the compositor when it does not load.
"""

from __future__ import annotations

import importlib.util
from functools import cache

import numpy as np
import torch

from ..errors import UserError
from ..formats.gaussians_ply import Gaussians
from .composite import composite_front_to_back

__all__ = ["GSPLAT_MISSING", "gsplat_available", "gsplat_cuda_rasterizer", "render_gaussians"]

GSPLAT_MISSING = (
    "Splat renders need gsplat, which is not installed in the engine's Python: pip install gsplat==1.5.3 "
    "(everything else works without it)."
)


def gsplat_available() -> bool:
    """True when gsplat can be imported (its PyTorch reference code runs on any device)."""
    return importlib.util.find_spec("gsplat") is not None


@cache
def gsplat_cuda_rasterizer() -> bool:
    """True when gsplat's compiled CUDA rasterizer loads on this machine (a CUDA device is present and the
    extension is prebuilt or builds now). The first call may take minutes: gsplat compiles it with nvcc."""
    if not gsplat_available() or not torch.cuda.is_available():
        return False
    try:
        from gsplat.cuda._backend import _C
    except Exception:  # gsplat's JIT build: ImportError, OSError (no CUDA_HOME), RuntimeError (nvcc failed)
        return False
    return _C is not None


def _torch_impl():
    if not gsplat_available():
        raise UserError(GSPLAT_MISSING)
    from gsplat.cuda import _torch_impl  # the PyTorch reference: no CUDA build needed

    return _torch_impl


def _colours(g: Gaussians, camera_centre: torch.Tensor, sh_degree: int | None, impl) -> torch.Tensor:
    sh = torch.as_tensor(np.ascontiguousarray(g.sh), dtype=torch.float32).transpose(1, 2)  # (N, K, 3)
    available = int(np.sqrt(sh.shape[1])) - 1
    if sh_degree is not None and sh_degree < 0:
        raise ValueError(f"sh_degree must be 0 or more, got {sh_degree}")
    degree = available if sh_degree is None else min(int(sh_degree), available)
    sh = sh.to(camera_centre.device)
    dirs = torch.as_tensor(g.means, dtype=torch.float32, device=camera_centre.device) - camera_centre[None, :]
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
    """(H, W, 3) float32 colours of ``g`` seen by one camera, in the values 3DGS composites (its sRGB-space
    colours, not clipped to 1), with ``background`` (r, g, b) behind (default black).

    viewmat (4, 4) world → camera, OpenCV axes (x right, y down, z forward); K (3, 3) intrinsics in pixels,
    pixel (u, v) covering [u, u + 1) × [v, v + 1); sh_degree: highest SH degree used (default: all the
    splats hold). ``device`` "cpu" or "cuda[:i]" (a CUDA device that is not there means the CPU). Raises
    ``UserError`` when gsplat is not installed."""
    impl = _torch_impl()
    dev = torch.device(device if str(device).startswith("cuda") and torch.cuda.is_available() else "cpu")
    view = torch.as_tensor(np.asarray(viewmat, np.float32).reshape(4, 4), device=dev)
    intr = torch.as_tensor(np.asarray(K, np.float32).reshape(3, 3), device=dev)
    means, quats, scales, opacities = (
        torch.as_tensor(np.ascontiguousarray(a, np.float32), device=dev)
        for a in (g.means, g.rotations, g.scales, g.opacities)
    )
    centre = -view[:3, :3].T @ view[:3, 3]
    colours = _colours(g, centre, sh_degree, impl)
    back = None if background is None else torch.tensor(background, dtype=torch.float32, device=dev)
    if dev.type == "cuda" and gsplat_cuda_rasterizer():
        from gsplat import rasterization

        rendered, _, _ = rasterization(
            means,
            quats,
            scales,
            opacities,
            colours,
            view[None],
            intr[None],
            width,
            height,
            backgrounds=None if back is None else back[None],
        )
        return rendered[0].float().cpu().numpy()
    covars, _ = impl._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(
        means, covars, view[None], intr[None], width, height
    )
    image, _ = composite_front_to_back(
        means2d[0], conics[0], opacities, colours, depths[0], radii[0], width, height, back
    )
    return image.cpu().numpy().astype(np.float32)
