"""A shot bundle → the open scene: one animated camera over the plate, a reduced cloud, the solve report.

Layout (``root.make_root``): a new collection holds a root Empty whose transform is the bundle's
``world_alignment`` (the floor at Z = 0, +Z up, metres when metric; the plain axis turn when the bundle
has none). The camera and the cloud are its children and keep the engine's coordinates, so Set Floor,
Set Origin and Set Scale (``scene.orient``) change the root alone and nothing is baked into points or
keyframes.

Timing: each view is keyed on the scene frame that shows its movie frame (``session.shot.scene_keys``:
the input's ``FrameMap`` and the frame's timestamp), the scene's frame range becomes the keyed range and
its frame rate the footage's. The plate is the camera's background: the Movie Clip itself for a clip
input; for a strip or a file the movie is loaded as a Movie Clip placed on the same scene frames.

The solve report goes on the root (``solve_report.store_solve``), into a text datablock with every
frame's error, and into the returned summary for the Info log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import bpy
import numpy as np

from ..engine.formats.bundle import Bundle
from ..session.shot import FrameMap, ShotSource, movie_positions, scene_keys
from ..session.solve import SolveSummary
from .bundle_data import bundle_points, original_intrinsics, root_alignment
from .camera_data import add_background
from .mesh import MESH_FILE, import_mesh_file
from .options import ShotImportOptions
from .points import create_point_cloud
from .root import ImportResult, build_reconstruction, make_root
from .shot_camera import create_shot_camera, set_scene_for_shot, shot_lens
from .shot_inputs import load_clip
from .solve_report import store_solve

__all__ = ["ShotImportOptions", "ShotImportResult", "default_source", "import_shot"]


@dataclass
class ShotImportResult(ImportResult):
    frame_range: tuple[int, int] = (0, 0)
    keys: int = 0
    clip: bpy.types.MovieClip | None = None
    solve: SolveSummary | None = None

    @property
    def summary(self) -> str:
        units = "metres" if self.units == "metre" else "relative units"
        cloud = f", {self.num_points:,} points" if self.points is not None else ""
        cloud += f", a mesh of {self.num_faces:,} faces" if self.mesh is not None else ""
        solve = f". {self.solve.headline()}" if self.solve is not None else ""
        return (
            f"Imported a camera on frames {self.frame_range[0]}-{self.frame_range[1]} ({self.keys} keys)"
            f"{cloud} ({units}) in {self.seconds:.1f} s{solve}" + "".join(f"; {note}" for note in self.notes)
        )

    @property
    def report_lines(self) -> list[str]:
        return self.solve.lines() if self.solve is not None else []


def default_source(bundle: Bundle, start_frame: int = 1) -> ShotSource:
    """Where a shot goes when nothing else says (File > Import): its movie as a clip from ``start_frame``."""
    path = bundle.source_paths[0] if bundle.source_paths else ""
    shot = bundle.shot or {}
    count = int(shot.get("frame_count") or 0) or int(np.max(bundle.frame_indices)) + 1
    h, w = (int(v) for v in bundle.original_sizes[0])
    fps = float(shot.get("nominal_fps") or shot.get("fps") or 0.0)
    return ShotSource("VIDEO", path, os.path.basename(path), FrameMap(start_frame, 0, count - 1), fps, (w, h))


def _background_clip(source: ShotSource) -> bpy.types.MovieClip | None:
    """The clip that shows the plate on the shot's scene frames (None when the movie is gone)."""
    if source.kind == "CLIP":
        clip = bpy.data.movieclips.get(source.clip)
        if clip is not None:
            return clip
    if not source.path or not os.path.isfile(source.path):
        return None
    clip = load_clip(source.path)
    # Scene frame f shows position f − frame_start + frame_offset = f − offset.
    clip.frame_start = source.frame_map.scene_range[0]
    clip.frame_offset = source.frame_map.first
    return clip


def import_shot(
    context: bpy.types.Context,
    source: str | os.PathLike | Bundle,
    options: ShotImportOptions | None = None,
    shot_source: ShotSource | None = None,
) -> ShotImportResult:
    """Build the shot in ``source`` (a bundle folder or a read Bundle) into ``context.scene``.

    ``shot_source``: the input the job tracked (where its frames sit on the timeline, which clip shows
    it); None places the movie from scene frame 1. Nothing is left behind when the import fails.
    """
    options = options or ShotImportOptions()

    def build(bundle: Bundle) -> ShotImportResult:
        return _build(context, bundle, options, shot_source or default_source(bundle))

    return build_reconstruction(context, source, build)


def _build(
    context: bpy.types.Context, bundle: Bundle, options: ShotImportOptions, source: ShotSource
) -> ShotImportResult:
    scene = context.scene
    name = options.name or bundle.folder.name or "Shot"
    alignment = root_alignment(bundle)
    collection, root = make_root(scene, name, bundle, alignment, kind="shot")

    clip = _background_clip(source) if options.background else None
    fps = float(clip.fps) if clip is not None and clip.fps > 0 else source.fps
    fps = fps or float((bundle.shot or {}).get("nominal_fps") or (bundle.shot or {}).get("fps") or 0.0)
    key_frames, rows = scene_keys(bundle.frame_indices, bundle.timestamps_s, fps, source.frame_map)
    view_frames = source.frame_map.scene_frame(
        movie_positions(bundle.frame_indices, bundle.timestamps_s, fps)
    )

    cloud, count, extent = None, 0, None
    if options.points:
        cloud_arrays = bundle_points(bundle, options.max_points)
        if cloud_arrays is not None and len(cloud_arrays[0]):
            cloud = create_point_cloud(f"{name} Points", *cloud_arrays, collection, parent=root)
            count = len(cloud_arrays[0])
            extent = float(cloud["da3_scene_size"])
    mesh = None
    if options.mesh and MESH_FILE in bundle.files:
        mesh = import_mesh_file(bundle.file(MESH_FILE), f"{name} Mesh", collection, parent=root)
    w2c = np.asarray(bundle.extrinsics, np.float64)[rows]
    if extent is None:
        centres = -np.einsum("nji,nj->ni", w2c[:, :, :3], w2c[:, :, 3])
        extent = max(float(np.ptp(centres, axis=0).max()) * 2.0, 1e-3)
    root.empty_display_size = 0.1 * extent

    K_plate = original_intrinsics(bundle)
    plate_hw = tuple(int(v) for v in bundle.original_sizes[0])
    lens = shot_lens(K_plate[rows], plate_hw, bundle.shot)
    camera = create_shot_camera(
        f"{name} Camera",
        w2c,
        lens,
        key_frames,
        collection,
        root,
        rotation_mode=options.rotation_mode,
        focal_per_frame=K_plate[rows, 0, 0] if options.animated_focal else None,
        sensor_width=options.sensor_width,
        extent=extent,
    )
    camera["da3_source"] = source.path
    if clip is not None:
        add_background(camera.data, clip)
        if scene.active_clip is None:
            scene.active_clip = clip
    frame_range = (int(key_frames.min()), int(key_frames.max()))
    if options.set_scene:
        set_scene_for_shot(scene, camera, frame_range, fps or None)

    solve = None
    if bundle.report is not None:
        solve = SolveSummary.from_report(bundle.report, view_frames, bundle.shot)
        store_solve(root, solve, name)
    return ShotImportResult(
        collection,
        root,
        cloud,
        [camera],
        count,
        units=bundle.units,
        mesh=mesh,
        num_faces=len(mesh.data.polygons) if mesh is not None else 0,
        frame_range=frame_range,
        keys=len(key_frames),
        clip=clip,
        solve=solve,
    )
