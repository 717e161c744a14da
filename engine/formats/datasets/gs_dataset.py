"""The 3DGS / SuGaR / gsplat dataset: the COLMAP layout those trainers take with ``-s <folder>``::

    images/<name>                  the photos, copied (or written as PNG from pixels)
    sparse/0/cameras.bin           PINHOLE cameras at each image's size
    sparse/0/images.bin            world-to-camera poses, one observation per seed point
    sparse/0/points3D.bin          the seed points (subsampled to a budget), colours, tracks
    depths/<stem>.png              16-bit inverse depth (graphdeco's ``-d depths``), 0 for sky/none
    sparse/0/depth_params.json     {<stem>: {"scale", "offset"}}: inverse depth = PNG/2¹⁶·scale + offset
    da3_dataset.json               the sidecar (sidecar.py)

graphdeco fits ``depth_params.json`` with ``utils/make_depth_scale.py`` against the sparse points; ours is
exact: the PNG holds ``round(2¹⁶ · (1/z) / scale)`` with one ``scale`` for all views (the largest inverse
depth of the dataset, so nothing clips) and offset 0, z in dataset units. One shared scale also keeps
graphdeco's check that every view's scale is within 0.2–5× of the median.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..colmap import ColmapPoints, write_colmap
from .common import DatasetFrame, Steps, points_tracks, view_depth, write_images
from .maps import to_uint16
from .png import write_png
from .source import DatasetSource

__all__ = ["gs_steps", "write_gs_dataset"]


def gs_steps(source: DatasetSource) -> int:
    return 2 * source.num_views + 1 if source.depth is not None else source.num_views + 1


def _inverse_depth_scale(source: DatasetSource, scale: float) -> float:
    """The largest inverse depth (1 / dataset units) of all views, a little above so it fits 65535."""
    span = source.depth_range()
    return (65536.0 / 65535.0) / (span[0] * scale) if span else 1.0


def write_gs_dataset(folder: Path, source: DatasetSource, frame: DatasetFrame, steps: Steps) -> float | None:
    """Write the dataset into ``folder`` (an empty staging folder); returns the depth scale (PNG value ×
    it = inverse depth in 1 / dataset units) or None without depth."""
    write_images(folder / "images", source, steps)
    view = source.points_view
    write_colmap(
        folder,
        extrinsics=frame.extrinsics,
        intrinsics_original=source.image_intrinsics,
        image_sizes=source.image_sizes,
        image_names=source.image_names,
        points=ColmapPoints(
            xyz=frame.points,
            rgb=source.points_rgb,
            error=np.zeros(len(view)),
            track_point=np.arange(len(view), dtype=np.int64),
            track_image=view,
            track_xy=points_tracks(frame, view, source.image_intrinsics),
        ),
        binary=True,
        text=False,
    )
    steps.step("Wrote sparse/0")
    if source.depth is None:
        return None
    scale = _inverse_depth_scale(source, frame.root.scale)
    depths = folder / "depths"
    depths.mkdir()
    params = {}
    for i, name in enumerate(source.image_names):
        depth, _ = view_depth(source, i, frame.root.scale)
        inverse = np.divide(1.0, depth, out=np.zeros_like(depth, dtype=np.float64), where=depth > 0)
        stem = Path(name).stem
        write_png(depths / f"{stem}.png", to_uint16(inverse, scale / 65536.0))
        params[stem] = {"scale": scale, "offset": 0.0}
        steps.step(f"Wrote depths/{stem}.png")
    (folder / "sparse" / "0" / "depth_params.json").write_text(json.dumps(params, indent=1) + "\n")
    return scale / 65536.0
