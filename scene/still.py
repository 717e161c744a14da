"""A still reconstruction's bundle → the open scene: a point cloud, the Gaussians, the fused mesh, meshes
per view and one camera per view (or one animated camera over a video's frames) under the reconstruction
root (``root.make_root``).

The root's transform turns the engine's world (the reference camera's frame, y down) so Blender's Z is
up (``convert.ENGINE_TO_BLENDER``), or is the identity when the job was given known cameras (their world
is the scene's); the cloud and the cameras keep the engine's coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np

from ..engine.formats.bundle import Bundle
from ..engine.formats.gaussians_ply import SplatTable
from . import cameras as camera_builders
from .bundle_data import bundle_points, original_intrinsics, root_alignment
from .camera_data import apply_render_settings, set_frame_range
from .gaussians import create_gaussians, prepare_scene
from .mesh import MESH_FILE, create_view_meshes, import_mesh_file
from .options import ImportOptions
from .points import create_point_cloud
from .root import ImportResult, build_reconstruction, make_root

__all__ = ["import_still"]


def import_still(
    context: bpy.types.Context, source: str | os.PathLike | Bundle, options: ImportOptions | None = None
) -> ImportResult:
    """Build the still reconstruction in ``source`` (a bundle folder or a read Bundle) into
    ``context.scene``; nothing is left behind when it fails."""
    options = options or ImportOptions()
    return build_reconstruction(context, source, lambda bundle: _build(context, bundle, options))


def _is_video(bundle: Bundle) -> bool:
    frames = np.asarray(bundle.frame_indices)
    return bundle.num_views > 1 and bool(np.all(frames >= 0)) and len(set(bundle.source_paths)) == 1


def _view_names(bundle: Bundle) -> list[str]:
    names = []
    for i, path in enumerate(bundle.source_paths):
        stem = Path(path).stem if path else ""
        names.append(f"{i:03d} {stem}" if stem else f"{i:03d}")
    return names


def _build(context: bpy.types.Context, bundle: Bundle, options: ImportOptions) -> ImportResult:
    scene = context.scene
    name = options.name or bundle.folder.name or "Reconstruction"
    collection, root = make_root(scene, name, bundle, root_alignment(bundle))

    cloud, count, extent = None, 0, None
    arrays = bundle_points(bundle, options.max_points, options.conf_percentile) if options.points else None
    if arrays is not None:
        cloud = create_point_cloud(
            f"{name} Points", *arrays, collection, parent=root, point_size=options.point_size
        )
        count, extent = len(arrays[0]), float(cloud["da3_scene_size"])
    if extent is None:
        depth = np.asarray(bundle.depth) if bundle.depth is not None else np.ones(1)
        valid = depth[np.isfinite(depth) & (depth > 0)]
        extent = float(np.median(valid)) * 2.0 if valid.size else 1.0
    root.empty_display_size = 0.1 * extent

    splats = None
    if options.gaussians and bundle.gaussians is not None and len(bundle.gaussians):
        table = SplatTable.from_gaussians(bundle.gaussians)
        source = bundle.folder / "gaussians.ply"
        splats = create_gaussians(f"{name} Gaussians", table, collection, parent=root, source=str(source))
        prepare_scene(scene)

    mesh, view_meshes = None, []
    if options.mesh and MESH_FILE in bundle.files:
        mesh = import_mesh_file(bundle.file(MESH_FILE), f"{name} Mesh", collection, parent=root)
    if options.view_meshes:
        views = bpy.data.collections.new(f"{name} View Meshes")
        collection.children.link(views)
        view_meshes = create_view_meshes(
            f"{name} View Mesh",
            bundle,
            views,
            parent=root,
            names=_view_names(bundle),
            stride=options.view_mesh_step,
        )

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
            set_frame_range(scene, int(frames.min()), int(frames.max()))
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
            apply_render_settings(scene, cams[min(ref, len(cams) - 1)])
    result = ImportResult(collection, root, cloud, cams, count, units=bundle.units)
    if splats is not None:
        result.gaussians, result.num_gaussians = splats, len(splats.data.vertices)
    if mesh is not None:
        result.mesh, result.num_faces = mesh, len(mesh.data.polygons)
    result.view_meshes = view_meshes
    return result
