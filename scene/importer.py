"""A whole bundle → the open scene: a collection, a root Empty, a point cloud and cameras.

Layout (DESIGN.md §2.5): a new collection per job holds a root Empty whose transform turns the engine's
world (the reference camera's frame, y down) so Blender's Z is up (``convert.ENGINE_TO_BLENDER``). The
point cloud and the cameras are its children and keep the engine's coordinates, so the user can move,
scale or undo the world transform on one object. Nothing is left behind when the import fails: every
datablock made so far is removed again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..engine.formats.bundle import Bundle, read_bundle
from ..engine.geometry.filters import gather_points
from . import cameras as camera_builders
from . import points as point_builders
from .convert import ENGINE_TO_BLENDER, scale_intrinsics

__all__ = ["ImportOptions", "ImportResult", "bundle_points", "import_bundle", "original_intrinsics"]


@dataclass(frozen=True)
class ImportOptions:
    """What to build from a bundle (plain values; operators fill it from their properties)."""

    points: bool = True
    cameras: bool = True
    backgrounds: bool = True  # the view's image as the camera background
    animated_camera: str = "AUTO"  # AUTO: one animated camera for video frames; ALWAYS; NEVER
    max_points: int | None = 2_000_000
    conf_percentile: float = 40.0  # drop this percentile of the least confident pixels before import
    point_size: float | None = None  # radius as a fraction of the scene size (None: from the count)
    set_render: bool = True  # render resolution, pixel aspect and scene camera from the reference view
    name: str = ""  # collection name (default: the bundle folder's name)
    camera_rotation: str = "QUATERNION"  # a shot camera's rotation keys: QUATERNION or EULER (filtered)
    animated_focal: bool = False  # a shot camera's lens keyed per frame (zoom) instead of one focal length


@dataclass
class ImportResult:
    collection: bpy.types.Collection
    root: bpy.types.Object
    points: bpy.types.Object | None
    cameras: list[bpy.types.Object] = field(default_factory=list)
    num_points: int = 0
    seconds: float = 0.0
    units: str = "relative"

    @property
    def summary(self) -> str:
        parts = []
        if self.points is not None:
            parts.append(f"{self.num_points:,} points")
        if self.cameras:
            parts.append(f"{len(self.cameras)} camera{'s' if len(self.cameras) != 1 else ''}")
        units = "metres" if self.units == "metre" else "relative units"
        return f"Imported {', '.join(parts) or 'nothing'} ({units}) in {self.seconds:.1f} s"


def original_intrinsics(bundle: Bundle) -> np.ndarray:
    """K of every view in pixels of its original image ``(N, 3, 3)``: the bundle's own when it has them
    (exact for crops too), else the processed intrinsics scaled to the original size."""
    given = getattr(bundle, "intrinsics_original", None)
    if given is not None:
        return np.asarray(given, np.float64)
    h, w = bundle.image_size
    processed = np.tile([h, w], (bundle.num_views, 1))
    return scale_intrinsics(bundle.intrinsics, processed, bundle.original_sizes)


class _Created:
    """Datablocks made by one import, removed again if it fails."""

    def __init__(self) -> None:
        self.before = {name: set(getattr(bpy.data, name)) for name in self.KINDS}

    KINDS = ("objects", "meshes", "cameras", "images", "collections", "actions")

    def remove_new(self) -> None:
        for name in self.KINDS:
            data = getattr(bpy.data, name)
            for block in [b for b in data if b not in self.before[name]]:
                data.remove(block)


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
    return pts.xyz, pts.rgb, pts.conf, pts.view


def _is_video(bundle: Bundle) -> bool:
    frames = np.asarray(bundle.frame_indices)
    return bundle.num_views > 1 and bool(np.all(frames >= 0)) and len(set(bundle.source_paths)) == 1


def _view_names(bundle: Bundle) -> list[str]:
    names = []
    for i, path in enumerate(bundle.source_paths):
        stem = Path(path).stem if path else ""
        names.append(f"{i:03d} {stem}" if stem else f"{i:03d}")
    return names


def import_bundle(
    context: bpy.types.Context, source: str | os.PathLike | Bundle, options: ImportOptions | None = None
) -> ImportResult:
    """Build the reconstruction in ``source`` (a bundle folder or a read Bundle) into ``context.scene``.

    A shot bundle (a video solved in chunks, ``scene.shot``) becomes one animated camera over the plate
    with its movie from scene frame 1. Raises the bundle reader's errors (``BundleError``: incomplete,
    missing, newer schema) unchanged.
    """
    options = options or ImportOptions()
    start = time.perf_counter()
    bundle = source if isinstance(source, Bundle) else read_bundle(source)
    from .shot import ShotImportOptions, import_shot, is_shot_bundle

    if is_shot_bundle(bundle):
        shot_options = ShotImportOptions(
            points=options.points,
            max_points=options.max_points,
            rotation_mode=options.camera_rotation,
            animated_focal=options.animated_focal,
            background=options.backgrounds,
            set_scene=options.set_render,
            name=options.name,
        )
        return import_shot(context, bundle, shot_options)
    name = options.name or bundle.folder.name or "Reconstruction"
    created = _Created()
    try:
        result = _build(context, bundle, name, options)
        context.view_layer.update()  # world matrices are right for the caller at once
    except BaseException:
        created.remove_new()
        raise
    result.seconds = time.perf_counter() - start
    return result


def _build(context: bpy.types.Context, bundle: Bundle, name: str, options: ImportOptions) -> ImportResult:
    scene = context.scene
    collection = bpy.data.collections.new(f"DA3 {name}")
    scene.collection.children.link(collection)

    root = bpy.data.objects.new(f"{name} Root", None)
    root.empty_display_type = "ARROWS"
    collection.objects.link(root)
    root.matrix_basis = Matrix(ENGINE_TO_BLENDER.tolist())
    root["da3_bundle"] = str(bundle.folder)
    root["da3_model"] = bundle.model_id
    root["da3_units"] = bundle.units
    root["da3_views"] = bundle.num_views
    root["da3_alignment"] = ENGINE_TO_BLENDER.ravel().tolist()  # what "Reset Alignment" goes back to

    cloud, count, extent = None, 0, None
    arrays = bundle_points(bundle, options.max_points, options.conf_percentile) if options.points else None
    if arrays is not None:
        cloud = point_builders.create_point_cloud(
            f"{name} Points", *arrays, collection, point_size=options.point_size
        )
        cloud.parent = root
        count, extent = len(arrays[0]), float(cloud["da3_scene_size"])
    if extent is None:
        depth = np.asarray(bundle.depth) if bundle.depth is not None else np.ones(1)
        valid = depth[np.isfinite(depth) & (depth > 0)]
        extent = float(np.median(valid)) * 2.0 if valid.size else 1.0
    root.empty_display_size = 0.1 * extent

    cams: list[bpy.types.Object] = []
    if options.cameras:
        K = original_intrinsics(bundle)
        sizes = np.asarray(bundle.original_sizes)
        animated = options.animated_camera == "ALWAYS" or (
            options.animated_camera == "AUTO" and _is_video(bundle)
        )
        if animated:
            frames = np.asarray(bundle.frame_indices)
            frames = (frames if np.all(frames >= 0) else np.arange(bundle.num_views)) + scene.frame_start
            cam = camera_builders.create_animated_camera(
                f"{name} Camera", bundle.extrinsics, K, sizes, frames, collection, root, extent=extent
            )
            scene.frame_start, scene.frame_end = int(frames.min()), int(frames.max())
            cams = [cam]
        else:
            images = None
            if options.backgrounds:
                images = [
                    camera_builders.view_image(
                        f"{name} {i:03d}", path, bundle.images[i] if bundle.images is not None else None
                    )
                    for i, path in enumerate(bundle.source_paths)
                ]
            cams = camera_builders.create_view_cameras(
                f"{name} Cam",
                bundle.extrinsics,
                K,
                sizes,
                collection,
                root,
                extent=extent,
                images=images,
                names=_view_names(bundle),
            )
        if options.set_render and cams:
            ref = bundle.ref_view_idx if bundle.ref_view_idx is not None and not animated else 0
            camera_builders.apply_render_settings(scene, cams[min(ref, len(cams) - 1)])
    return ImportResult(collection, root, cloud, cams, count, units=bundle.units)
