"""The optional files a job writes beside reconstruction.npz, one small writer per export.

Each writer gets the path of its file or folder inside the bundle, the ``JobResult`` and the job's
context (to check for cancel between files and to log), and writes with the ``formats`` modules:

``points``     points.ply: world points with colour, confidence and view index (``gather_points``:
               confidence percentile, sky and point budget from the job options)
``glb``        scene.glb: the same points, the fused mesh when there is one, and one frustum per camera
``mesh``       mesh.ply: the depth maps fused into one coloured triangle mesh (``meshing.fuse_stage``
               runs before the exports; a shot fuses its joined frames part by part)
``gaussians``  gaussians.ply in the 3DGS layout (giant and nested models)
``colmap``     colmap/: PINHOLE cameras at the original size, poses, up to ``COLMAP_MAX_POINTS`` seed
               points, and images/: plain stills copied, decoded pixels for everything else
``3dgs``       3dgs/: the dataset 3DGS, SuGaR and gsplat train on; ``nerfstudio`` nerfstudio/: the one
               splatfacto and DN-Splatter train on (``formats.datasets``), in the frame Blender gives the
               root (the floor alignment, else the axis turn; the identity for known cameras), images
               copied, up to ``dataset_max_points`` seeds; a shot's datasets have no depth or normals
``depth``      previews/: depth and confidence PNGs per view
``splat_previews``  splat_previews/: the predicted Gaussians rendered from each view's camera the way
               gsplat renders them (``render.splats``: its CUDA rasterizer on a GPU; on a CPU our
               compositor, up to ``CPU_SPLAT_PREVIEW_LIMIT`` splats); skipped with a warning when
               gsplat is not installed (everything else in the bundle is unaffected)

A shot (a video solved in chunks, ``shot_job``) keeps no depth maps: its ``JobResult`` carries a
``ShotGeometry`` (joined cameras and the reduced cloud) instead of a prediction, and points, glb and
colmap are written from those; depth previews and Gaussians need the per-frame maps and are refused.

A writer returns None to have everything it wrote listed in the manifest, or the paths (relative to
its folder) to list.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError
from ..formats.colmap import ColmapPoints, write_colmap
from ..formats.datasets import DatasetSource, default_root, export_dataset
from ..formats.datasets.images import dataset_image_names
from ..formats.gaussians_ply import write_gaussians_ply
from ..formats.glb import write_scene_glb
from ..formats.mesh_ply import write_mesh_ply
from ..formats.ply import write_points_ply
from ..formats.previews import write_confidence_preview, write_depth_preview
from ..geometry.filters import PointSet, gather_points, subsample
from ..geometry.mesh import Mesh
from ..io.imaging import load_image
from ..io.inputs import FrameRef, VideoSelection, expand_inputs, iter_frames
from ..process.protocol import ReconstructRequest

if TYPE_CHECKING:
    from .context import Context

__all__ = [
    "COLMAP_MAX_POINTS",
    "CPU_SPLAT_PREVIEW_LIMIT",
    "EXPORTERS",
    "NOT_AVAILABLE",
    "SHOT_NOT_AVAILABLE",
    "JobResult",
    "ShotGeometry",
]

COLMAP_MAX_POINTS = 100_000  # seed points for 3DGS trainers: plenty, and the text files stay small
NOT_AVAILABLE: dict[str, str] = {}  # exports the protocol names but this engine cannot make yet, and why
SHOT_NOT_AVAILABLE = {  # exports that need every frame's depth, which a shot does not keep
    "depth": (
        "a video shot keeps no per-frame depth maps (only cameras and a reduced point cloud), so it "
        "has no depth previews. Leave out the 'depth' export, or pick the frames as images"
    ),
    "gaussians": "3D Gaussians are not made for video shots; leave out the 'gaussians' export",
    "splat_previews": "3D Gaussians are not made for video shots; leave out the 'splat_previews' export",
}
CPU_SPLAT_PREVIEW_LIMIT = 300_000  # our CPU compositor: about 3.5 s a 512² view at this many on one core
_LINKABLE = (".jpg", ".jpeg", ".png")  # stills COLMAP tools read as we did (when 8-bit RGB, not rotated)


@dataclass(frozen=True)
class ShotGeometry:
    """What a shot keeps instead of a prediction: the joined cameras and the reduced point cloud."""

    extrinsics: np.ndarray  # (N, 3, 4) float64 world-to-camera, OpenCV
    intrinsics: np.ndarray  # (N, 3, 3) float64, processed pixels
    image_hw: tuple[int, int]  # (H, W) of the processed frames
    points: PointSet  # the reduced cloud of the whole shot (``pixel``: its projection in its view)
    gaussians: None = None  # never made for a shot
    world_alignment: np.ndarray | None = None  # (4, 4) the floor alignment (Blender's root), or None
    units: str = "relative"  # "metre", "relative" or "input", as the bundle says


@dataclass
class JobResult:
    """What the exporters read: the request, where each frame came from, the prediction."""

    request: ReconstructRequest
    refs: list[FrameRef]  # (N,) source of each view
    original_sizes: np.ndarray  # (N, 2) int64 (H, W) of each original frame
    prediction: Any  # pipeline.Prediction (its transforms map processed → original), or ShotGeometry
    intrinsics_original: np.ndarray  # (N, 3, 3) float32, the cameras at the original size
    mesh: Mesh | None = None  # the fused mesh, when the job exports "mesh" (made by the fuse stage)

    @property
    def is_shot(self) -> bool:
        return isinstance(self.prediction, ShotGeometry)

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) of the processed frames."""
        if self.is_shot:
            return self.prediction.image_hw
        return int(self.prediction.depth.shape[1]), int(self.prediction.depth.shape[2])

    @cached_property
    def points(self) -> PointSet:
        """World points of the kept pixels (confidence percentile, sky, point budget of the options);
        a shot's reduced cloud as it is."""
        if self.is_shot:
            return self.prediction.points
        p, o = self.prediction, self.request.options
        return gather_points(
            p.depth,
            p.intrinsics,
            p.extrinsics,
            p.processed_images,
            p.conf,
            p.sky,
            budget=o.max_points,
            conf_percentile=o.conf_percentile,
            seed=o.seed,
        )


def _export_points(path: Path, r: JobResult, context: Context) -> None:
    pts = r.points
    write_points_ply(path, pts.xyz, pts.rgb, pts.conf, extra={"view": pts.view})


def _export_glb(path: Path, r: JobResult, context: Context) -> None:
    p, pts = r.prediction, r.points
    write_scene_glb(path, pts.xyz, pts.rgb, p.extrinsics, p.intrinsics, r.image_hw, mesh=r.mesh)


def _export_mesh(path: Path, r: JobResult, context: Context) -> None:
    if r.mesh is None:
        raise UserError("No mesh was fused for this job (internal error: the fuse stage did not run).")
    write_mesh_ply(path, r.mesh, comments=["DA3 Reconstruct fused mesh (TSDF), the bundle's world frame"])


def _refuse_for_shot(name: str, r: JobResult) -> None:
    if r.is_shot:
        raise UserError(f"The '{name}' export cannot be made: {SHOT_NOT_AVAILABLE[name]}.")


def _export_gaussians(path: Path, r: JobResult, context: Context) -> None:
    _refuse_for_shot("gaussians", r)
    g = r.prediction.gaussians
    if g is None:
        raise UserError("The model returned no Gaussians: turn on Gaussians (infer_gs) with a giant model.")
    write_gaussians_ply(path, g.means, g.scales, g.rotations, g.harmonics, g.opacities)


def _export_splat_previews(folder: Path, r: JobResult, context: Context) -> None:
    _refuse_for_shot("splat_previews", r)
    g = r.prediction.gaussians
    if g is None:
        raise UserError("The model returned no Gaussians: turn on Gaussians (infer_gs) with a giant model.")
    from ..formats.gaussians_ply import Gaussians
    from ..formats.previews import write_rgb_preview
    from ..render.splats import GSPLAT_MISSING, gsplat_available, render_gaussians

    folder.mkdir(exist_ok=True)
    if not gsplat_available():
        context.log("warning", f"Splat previews skipped. {GSPLAT_MISSING}")
        return
    import torch

    requested = r.request.options.device
    device = "cuda" if torch.cuda.is_available() and requested in ("auto", "cuda") else requested
    device = device if str(device).startswith("cuda") and torch.cuda.is_available() else "cpu"
    if device == "cpu" and len(g.means) > CPU_SPLAT_PREVIEW_LIMIT:
        context.log(
            "warning",
            f"Splat previews skipped: {len(g.means):,} splats is more than the CPU renders in reasonable time "
            f"({CPU_SPLAT_PREVIEW_LIMIT:,}); a CUDA GPU with gsplat renders any number.",
        )
        return
    gaussians = Gaussians(g.means, g.scales, g.rotations, g.harmonics, g.opacities)
    h, w = r.image_hw
    p = r.prediction
    for i in range(len(p.extrinsics)):
        context.check_cancel()
        view = np.eye(4)
        view[:3, :] = p.extrinsics[i]
        image = render_gaussians(gaussians, view, p.intrinsics[i], w, h, device=device)
        write_rgb_preview(folder / f"splats_{i:04d}.png", image)


def _export_depth(folder: Path, r: JobResult, context: Context) -> None:
    _refuse_for_shot("depth", r)
    p = r.prediction
    folder.mkdir(exist_ok=True)
    for i in range(len(p.depth)):
        context.check_cancel()
        write_depth_preview(folder / f"depth_{i:04d}.png", p.depth[i], None if p.sky is None else ~p.sky[i])
        if p.conf is not None:
            write_confidence_preview(folder / f"conf_{i:04d}.png", p.conf[i])


def _export_colmap(folder: Path, r: JobResult, context: Context) -> list[str]:
    """COLMAP model at the original size; stills linked, other images written from decoded pixels.

    The manifest lists the model and the written images, not the links: a bundle must stay complete
    when the user moves the source photos.
    """
    p, refs = r.prediction, r.refs
    rewrite = {i for i, ref in enumerate(refs) if ref.frame_index >= 0 or not _plain_still(ref.path)}
    names = _colmap_names(refs, rewrite)
    pts = r.points
    keep = subsample(len(pts), COLMAP_MAX_POINTS, r.request.options.seed)
    write_colmap(
        folder,
        extrinsics=p.extrinsics,
        intrinsics_original=r.intrinsics_original,
        image_sizes=r.original_sizes,
        image_names=names,
        points=_colmap_points(pts, keep, p.extrinsics, r.intrinsics_original),
        image_sources=[None if i in rewrite else ref.path for i, ref in enumerate(refs)],
    )
    _write_plates(folder / "images", names, rewrite, r.request, refs, context)
    return ["sparse", "images"]


def _export_dataset(tool: str, folder: Path, r: JobResult, context: Context) -> None:
    """A 3dgs or nerfstudio dataset (``formats.datasets``) in the frame Blender gives the root: plain stills
    copied, every other image decoded again into a scratch folder beside it first."""
    p, refs, options = r.prediction, r.refs, r.request.options
    rewrite = {i for i, ref in enumerate(refs) if ref.frame_index >= 0 or not _plain_still(ref.path)}
    stems = [
        Path(ref.path).stem + (f"_{ref.frame_index:06d}" if ref.frame_index >= 0 else "") for ref in refs
    ]
    suffixes = [".jpg" if i in rewrite else Path(ref.path).suffix for i, ref in enumerate(refs)]
    names = dataset_image_names(stems, suffixes)
    plates = folder.with_name(f".{folder.name}.plates")
    pts = r.points
    keep = subsample(len(pts), options.dataset_max_points, options.seed)
    if r.is_shot:
        root = default_root(bool(options.cameras), p.world_alignment)
        context.log(
            "warning",
            f"The {tool} dataset of a video shot has cameras, images and seed points only: "
            "a shot keeps no per-frame depth, so depths, normals and masks are left out.",
        )
    else:
        root = default_root(bool(options.cameras), None)
    try:
        if rewrite:
            _write_plates(plates, names, rewrite, r.request, refs, context)
        missing = [names[i] for i in rewrite if not (plates / names[i]).is_file()]
        if missing:
            raise UserError(
                f"{len(missing)} frame(s) could not be decoded again for the {tool} dataset "
                f"(first: {missing[0]}); check that the inputs are still readable."
            )
        source = DatasetSource(
            extrinsics=np.asarray(p.extrinsics, np.float64),
            image_names=names,
            images=[str(plates / names[i]) if i in rewrite else ref.path for i, ref in enumerate(refs)],
            image_sizes=np.asarray(r.original_sizes, np.int64),
            image_intrinsics=np.asarray(r.intrinsics_original, np.float64),
            points_xyz=np.asarray(pts.xyz[keep], np.float64),
            points_rgb=pts.rgb[keep],
            points_view=pts.view[keep].astype(np.int64),
            units=p.units,
            bundle_folder=os.path.abspath(r.request.output),
            bundle_id=Path(r.request.output).name,
            depth=None if r.is_shot else p.depth,
            depth_intrinsics=None if r.is_shot else np.asarray(p.intrinsics, np.float64),
            sky=None if r.is_shot else p.sky,
        )

        def progress(done: int, total: int, message: str) -> None:
            context.log("debug", f"{tool}: {message} ({done}/{total})")

        export_dataset(tool, folder, source, root, progress=progress, check_cancel=context.check_cancel)
    finally:
        shutil.rmtree(plates, ignore_errors=True)


# name → (file or folder in the bundle, writer)
EXPORTERS: dict[str, tuple[str, Callable[[Path, JobResult, Context], list[str] | None]]] = {
    "points": ("points.ply", _export_points),
    "glb": ("scene.glb", _export_glb),
    "gaussians": ("gaussians.ply", _export_gaussians),
    "mesh": ("mesh.ply", _export_mesh),
    "colmap": ("colmap", _export_colmap),
    "3dgs": ("3dgs", lambda path, r, context: _export_dataset("3dgs", path, r, context)),
    "nerfstudio": ("nerfstudio", lambda path, r, context: _export_dataset("nerfstudio", path, r, context)),
    "depth": ("previews", _export_depth),
    "splat_previews": ("splat_previews", _export_splat_previews),
}


# --- COLMAP helpers -----------------------------------------------------------------------------------


def _plain_still(path: str) -> bool:
    """True when COLMAP tools read this file as we did: 8-bit RGB JPEG/PNG without an EXIF rotation."""
    if Path(path).suffix.lower() not in _LINKABLE:
        return False
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode == "RGB" and im.getexif().get(0x0112, 1) == 1  # 0x0112: EXIF orientation
    except OSError:
        return False


def _colmap_names(refs: list[FrameRef], rewrite: set[int]) -> list[str]:
    """Image names: a still's file name (``.jpg`` when rewritten), ``<video>_<frame>.jpg`` for frames."""
    names = []
    for i, ref in enumerate(refs):
        p = Path(ref.path)
        if ref.frame_index >= 0:
            name = f"{p.stem}_{ref.frame_index:06d}.jpg"
        else:
            name = f"{p.stem}.jpg" if i in rewrite else p.name
        names.append(name.replace(" ", "_"))
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [f"{i:05d}_{name}" if counts[name] > 1 else name for i, name in enumerate(names)]


def _colmap_points(pts: PointSet, keep: np.ndarray, w2c: np.ndarray, k_original: np.ndarray) -> ColmapPoints:
    """One observation per point: its projection into its source view at the original size (exact under
    crops too, where scaling the processed pixel would not be)."""
    xyz = pts.xyz[keep].astype(np.float64)  # (P, 3)
    view = pts.view[keep].astype(np.int64)  # (P,)
    ext = np.asarray(w2c, np.float64)[view]  # (P, 3, 4)
    cam = np.einsum("pij,pj->pi", ext[:, :, :3], xyz) + ext[:, :, 3]
    uvw = np.einsum("pij,pj->pi", np.asarray(k_original, np.float64)[view], cam)
    return ColmapPoints(
        xyz=xyz,
        rgb=pts.rgb[keep],
        error=np.zeros(len(keep)),
        track_point=np.arange(len(keep), dtype=np.int64),
        track_image=view,
        track_xy=uvw[:, :2] / uvw[:, 2:3],
    )


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(path.name + ".partial")
    Image.fromarray(image).save(tmp, format="JPEG", quality=95)
    os.replace(tmp, path)


def _write_plates(
    folder: Path,
    names: list[str],
    rewrite: set[int],
    request: ReconstructRequest,
    refs: list[FrameRef],
    context: Context,
) -> list[str]:
    """Write the images COLMAP cannot link to: decoded stills, and the video frames decoded once more
    (the job keeps no full-size frame in memory). Returns the names written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    wanted: dict[tuple[str, int], str] = {}
    for i in sorted(rewrite):
        if refs[i].frame_index < 0:
            context.check_cancel()
            _save_jpeg(folder / names[i], load_image(refs[i].path))
            written.append(names[i])
        else:
            wanted[(refs[i].path, refs[i].frame_index)] = names[i]
    if not wanted:
        return written
    options = request.options
    plan = expand_inputs(
        list(request.inputs),
        frames=options.frames or (0, None, 1),
        target_fps=options.target_fps,
        positions_fps=options.frame_positions_fps,
    )
    decoded = iter_frames([item for item in plan if isinstance(item, VideoSelection)])
    try:
        for ref, image in decoded:
            name = wanted.pop((ref.path, ref.frame_index), None)
            if name is not None:
                _save_jpeg(folder / name, image)
                written.append(name)
            if not wanted:
                break
            context.check_cancel()
    finally:
        decoded.close()
    if wanted:
        context.log("warning", f"{len(wanted)} video frame(s) could not be decoded again for colmap/images.")
    return written
