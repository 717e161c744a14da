"""What the importers take from a bundle: its cloud within a point budget, intrinsics in the pixels of
the original images, and where its root goes (numpy only)."""

from __future__ import annotations

import numpy as np

from ..engine.formats.bundle import Bundle, BundleError
from ..engine.geometry.filters import gather_points
from ..engine.geometry.floor import default_root
from .convert import scale_intrinsics

__all__ = ["bundle_points", "original_intrinsics", "root_alignment"]


def root_alignment(bundle: Bundle) -> np.ndarray:
    """The transform of the reconstruction's root: the identity for a job given known cameras (its world
    is theirs, e.g. the scene's own cameras: the result lands in the scene's frame and units), else the
    bundle's ``world_alignment``, else the plain axis turn — the engine's ``default_root``, the frame a
    CLI dataset export uses too."""
    return default_root(bool((bundle.options or {}).get("cameras")), bundle.world_alignment)


def original_intrinsics(bundle: Bundle) -> np.ndarray:
    """K of every view in pixels of its original image ``(N, 3, 3)``: the bundle's own when it has them
    (exact for crops too), else the processed intrinsics scaled to the original size."""
    given = getattr(bundle, "intrinsics_original", None)
    if given is not None:
        return np.asarray(given, np.float64)
    h, w = bundle.image_size
    processed = np.tile([h, w], (bundle.num_views, 1))
    return scale_intrinsics(bundle.intrinsics, processed, bundle.original_sizes)


def bundle_points(bundle: Bundle, budget: int | None, conf_percentile: float = 40.0):
    """``(xyz, rgb, conf, view)`` of a bundle's cloud, at most ``budget`` points, or None without one.

    The engine's reduced cloud (``points_*``, shot bundles) when there is one, else points gathered
    from the views' depth maps, leaving out the ``conf_percentile`` least confident pixels."""
    if bundle.points is not None:
        p = bundle.points
        keep = np.arange(len(p))
        if budget is not None and len(p) > budget:
            keep = np.sort(np.random.default_rng(0).choice(len(p), budget, replace=False))
        return p.xyz[keep], p.rgb[keep], p.conf[keep], p.view[keep]
    if bundle.depth is None:
        return None
    pts = gather_points(
        bundle.depth,
        bundle.intrinsics,
        bundle.extrinsics,
        bundle.images,
        bundle.conf,
        bundle.sky,
        budget=budget,
        conf_percentile=conf_percentile if bundle.conf is not None else 0.0,
    )
    if not len(pts.xyz):
        raise BundleError(
            f"{bundle.folder} holds no valid depth (no pixel gives a point), so there is no point cloud to "
            "import: run the reconstruction again (in full precision, fp32, if it happens again), or turn "
            "off Points to import the cameras alone."
        )
    return pts.xyz, pts.rgb, pts.conf, pts.view
