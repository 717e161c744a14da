"""The ``fuse`` stage: a job's depth maps into one mesh (``geometry.fusion``), with progress and cancel.

A still job hands over its prediction as one block; a shot hands over its joined frames part by part
(``JoinedResult.iter_blocks``), so a shot of any length fuses with the memory of one chunk plus the
volume, which follows the surface. The voxel size is the job's ``mesh_voxel_size`` or is chosen from
the first block's depth (``auto_voxel_size`` with ``mesh_detail``); ``mesh_max_faces`` decimates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..errors import UserError
from ..geometry.mesh import Mesh

if TYPE_CHECKING:
    from ..process.protocol import JobOptions
    from .context import Context
    from .stages import Stages

__all__ = ["DepthBlock", "fuse_stage"]

PROGRESS_EVENTS = 100  # at most this many progress events while integrating


class DepthBlock(NamedTuple):
    """Consecutive views to fuse, all in the job's world and units."""

    depth: np.ndarray  # (m, H, W) float32 z-depth
    extrinsics: np.ndarray  # (m, 3, 4) world-to-camera, OpenCV
    intrinsics: np.ndarray  # (m, 3, 3) processed pixels
    images: np.ndarray | None  # (m, H, W, 3) uint8
    conf: np.ndarray | None  # (m, H, W)
    sky: np.ndarray | None  # (m, H, W) bool


def _device(requested: str) -> str:
    import torch

    if requested in ("auto", "cuda") or requested.startswith("cuda"):
        if torch.cuda.is_available():
            return "cuda" if requested == "auto" else requested
    return "cpu"


def fuse_stage(
    blocks: Iterable[DepthBlock],
    views: int,
    options: JobOptions,
    context: Context,
    stages: Stages,
    units: str,
) -> Mesh:
    """Fuse every block into one mesh; progress counts views, then the surface extraction."""
    # torch only here: the shot orchestrator imports this module and must import without torch
    from ..geometry.fusion import FusionTooLarge, TSDFVolume, auto_voxel_size, decimate, fusion_weights

    total = views + 1
    stages.begin("fuse", total, "Fusing the depth maps into a mesh")
    every = max(1, views // PROGRESS_EVENTS)
    volume = None  # a TSDFVolume once the first block gives the voxel size
    done = 0

    def on_view() -> None:
        nonlocal done
        done += 1
        context.check_cancel()
        if done % every == 0 or done == views:
            context.progress("fuse", done, total, f"view {done}/{views}")

    try:
        for block in blocks:
            weights = fusion_weights(block.depth, block.conf, block.sky)
            if volume is None:
                if not (weights > 0).any() and options.mesh_voxel_size is None:
                    done += len(block.depth)
                    continue  # nothing to size the voxels by yet
                voxel = options.mesh_voxel_size or auto_voxel_size(
                    block.depth, block.intrinsics, weights, detail=options.mesh_detail
                )
                volume = TSDFVolume(voxel, colors=block.images is not None, device=_device(options.device))
            volume.integrate(
                block.depth, block.extrinsics, block.intrinsics, weights, block.images, on_view=on_view
            )
        if volume is None:
            context.log(
                "warning", "The fused mesh is empty: no view has depth left after sky and confidence."
            )
            return Mesh.empty()
        context.progress("fuse", views, total, "Extracting the surface")
        mesh = volume.extract(on_chunk=lambda d, t: context.check_cancel())
    except FusionTooLarge as exc:
        raise UserError(f"The mesh cannot be fused: {exc}.") from None
    if options.mesh_max_faces and mesh.num_faces > options.mesh_max_faces:
        before = mesh.num_faces
        mesh = decimate(mesh, options.mesh_max_faces)
        context.log("info", f"Mesh decimated from {before:,} to {mesh.num_faces:,} faces.")
    context.log(
        "info",
        f"Fused mesh: {mesh.num_faces:,} faces, {mesh.num_vertices:,} vertices, voxel size "
        f"{volume.voxel_size:.4g} ({units}), {volume.num_blocks:,} blocks ({volume.nbytes / 2**20:.0f} MiB).",
    )
    context.progress("fuse", total, total, f"Mesh of {mesh.num_faces:,} faces")
    return mesh
