"""A shot bundle → the open scene: one animated camera over the plate, a reduced cloud, the solve report.

Layout (as ``importer``): a new collection holds a root Empty whose transform is the bundle's
``world_alignment`` (the floor at Z = 0, +Z up, metres when metric; the plain axis turn when the bundle
has none). The camera and the cloud are its children and keep the engine's coordinates, so Set Floor,
Set Origin and Set Scale (``scene.orient``) change the root alone and nothing is baked into points or
keyframes.

Timing: each view is keyed on the scene frame that shows its movie frame (``core.shot.scene_keys``:
the input's ``FrameMap`` and the frame's timestamp), the scene's frame range becomes the keyed range and
its frame rate the footage's. The plate is the camera's background: the Movie Clip itself for a clip
input; for a strip or a file the movie is loaded as a Movie Clip placed on the same scene frames.

The solve report goes on the root as custom properties (``da3_solve_*``), into a text datablock with
every frame's error, and into the returned summary for the Info log.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from ..core.shot import FrameMap, ShotSource, movie_positions, scene_keys
from ..core.solve import JointLine, SolveSummary
from ..engine.formats.bundle import Bundle, read_bundle
from . import points as point_builders
from .convert import DEFAULT_SENSOR_WIDTH, ENGINE_TO_BLENDER
from .importer import ImportResult, _Created, bundle_points, original_intrinsics
from .shot_camera import add_clip_background, create_shot_camera, set_scene_for_shot, shot_lens
from .shot_inputs import load_clip

__all__ = [
    "ShotImportOptions",
    "ShotImportResult",
    "default_source",
    "import_shot",
    "is_shot_bundle",
    "solve_summary_of",
    "store_solve",
]

SOLVE_PROPS = "da3_solve"  # prefix of the root's report properties


@dataclass(frozen=True)
class ShotImportOptions:
    """What to build from a shot bundle (plain values; operators fill it from their properties)."""

    points: bool = True
    max_points: int | None = 500_000
    rotation_mode: str = "QUATERNION"  # or "EULER" (XYZ, Euler-filtered)
    animated_focal: bool = False  # key the lens per frame (zoom shots) instead of one robust focal length
    background: bool = True  # the plate behind the camera
    set_scene: bool = True  # scene camera, render size, pixel aspect, fps and frame range
    sensor_width: float = DEFAULT_SENSOR_WIDTH
    name: str = ""


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
        solve = f". {self.solve.headline()}" if self.solve is not None else ""
        return (
            f"Imported a camera on frames {self.frame_range[0]}-{self.frame_range[1]} ({self.keys} keys)"
            f"{cloud} ({units}) in {self.seconds:.1f} s{solve}"
        )

    @property
    def report_lines(self) -> list[str]:
        return self.solve.lines() if self.solve is not None else []


def is_shot_bundle(bundle: Bundle) -> bool:
    """A bundle of a video shot (``shot_json``: solved in chunks, one camera over the plate)."""
    return bundle.shot is not None


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
    start = time.perf_counter()
    bundle = source if isinstance(source, Bundle) else read_bundle(source)
    name = options.name or bundle.folder.name or "Shot"
    created = _Created()
    before_clips = set(bpy.data.movieclips)
    before_texts = set(bpy.data.texts)
    try:
        result = _build(context, bundle, name, options, shot_source or default_source(bundle))
        context.view_layer.update()
    except BaseException:
        created.remove_new()
        for clip in [c for c in bpy.data.movieclips if c not in before_clips]:
            bpy.data.movieclips.remove(clip)
        for text in [t for t in bpy.data.texts if t not in before_texts]:
            bpy.data.texts.remove(text)
        raise
    result.seconds = time.perf_counter() - start
    return result


def _build(
    context: bpy.types.Context, bundle: Bundle, name: str, options: ShotImportOptions, source: ShotSource
) -> ShotImportResult:
    scene = context.scene
    collection = bpy.data.collections.new(f"DA3 {name}")
    scene.collection.children.link(collection)
    alignment = bundle.world_alignment if bundle.world_alignment is not None else ENGINE_TO_BLENDER
    root = bpy.data.objects.new(f"{name} Root", None)
    root.empty_display_type = "ARROWS"
    collection.objects.link(root)
    root.matrix_basis = Matrix(np.asarray(alignment, np.float64).tolist())
    root["da3_bundle"] = str(bundle.folder)
    root["da3_model"] = bundle.model_id
    root["da3_units"] = bundle.units
    root["da3_views"] = bundle.num_views
    root["da3_kind"] = "shot"
    root["da3_alignment"] = np.asarray(alignment, np.float64).ravel().tolist()

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
            cloud = point_builders.create_point_cloud(f"{name} Points", *cloud_arrays, collection)
            cloud.parent = root
            count = len(cloud_arrays[0])
            extent = float(cloud["da3_scene_size"])
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
        add_clip_background(camera, clip)
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
        frame_range=frame_range,
        keys=len(key_frames),
        clip=clip,
        solve=solve,
    )


def store_solve(root: bpy.types.Object, solve: SolveSummary, name: str) -> bpy.types.Text:
    """The report on the root (custom properties the panel reads) and in a text datablock (all of it)."""
    nan = float("nan")
    root[f"{SOLVE_PROPS}_error_px"] = solve.error_px if solve.error_px is not None else nan
    root[f"{SOLVE_PROPS}_mean_px"] = solve.mean_px if solve.mean_px is not None else nan
    root[f"{SOLVE_PROPS}_method"] = solve.method
    root[f"{SOLVE_PROPS}_frames"] = solve.frames
    root[f"{SOLVE_PROPS}_focal_px"] = solve.focal_px if solve.focal_px is not None else nan
    root[f"{SOLVE_PROPS}_focal_spread_px"] = (
        solve.focal_spread_px if solve.focal_spread_px is not None else nan
    )
    root[f"{SOLVE_PROPS}_worst_frames"] = [int(f) for f, _ in solve.worst] or [0]
    root[f"{SOLVE_PROPS}_worst_errors"] = [float(e) for _, e in solve.worst] or [nan]
    root[f"{SOLVE_PROPS}_joint_chunks"] = [j.chunk for j in solve.joints] or [0]
    root[f"{SOLVE_PROPS}_joint_residuals"] = [
        j.relative_residual if j.relative_residual is not None else nan for j in solve.joints
    ] or [nan]
    root[f"{SOLVE_PROPS}_joint_count"] = len(solve.joints)
    root[f"{SOLVE_PROPS}_worst_count"] = len(solve.worst)
    text = bpy.data.texts.new(f"{name} Solve Report")
    text.write(solve.text())
    root[f"{SOLVE_PROPS}_text"] = text.name
    return text


def solve_summary_of(root: bpy.types.Object) -> SolveSummary | None:
    """The summary stored on a root by ``store_solve`` (None when the root has no report)."""
    if f"{SOLVE_PROPS}_error_px" not in root:
        return None

    def num(key: str) -> float | None:
        value = float(root.get(f"{SOLVE_PROPS}_{key}", float("nan")))
        return value if np.isfinite(value) else None

    n_worst = int(root.get(f"{SOLVE_PROPS}_worst_count", 0))
    n_joints = int(root.get(f"{SOLVE_PROPS}_joint_count", 0))
    worst_frames = list(root[f"{SOLVE_PROPS}_worst_frames"])[:n_worst]
    worst_errors = list(root[f"{SOLVE_PROPS}_worst_errors"])[:n_worst]
    chunks = list(root[f"{SOLVE_PROPS}_joint_chunks"])[:n_joints]
    residuals = list(root[f"{SOLVE_PROPS}_joint_residuals"])[:n_joints]
    return SolveSummary(
        error_px=num("error_px"),
        mean_px=num("mean_px"),
        method=str(root.get(f"{SOLVE_PROPS}_method", "reprojection")),
        frames=int(root.get(f"{SOLVE_PROPS}_frames", 0)),
        worst=[(int(f), float(e)) for f, e in zip(worst_frames, worst_errors, strict=True)],
        focal_px=num("focal_px"),
        focal_spread_px=num("focal_spread_px"),
        joints=[
            JointLine(int(c), float(r) if np.isfinite(r) else None, None, "")
            for c, r in zip(chunks, residuals, strict=True)
        ],
    )
