"""An animated camera (Blender's own tracker solve, ours, or one imported from another tracker) → one
known camera per frame of a shot: OpenCV ``K`` in plate pixels and world-to-camera poses in the scene's
frame (``known_cameras.camera_intrinsics`` / ``camera_w2c``).

A camera keyed by F-curves alone (no parent, constraints or drivers) is read from its F-curves, a few
calls per frame and channel and no scene update; anything else (a parent, a Camera Solver constraint,
drivers) is evaluated by the depsgraph frame by frame (``frame_set``), which gives whatever Blender
shows. Raises ``CameraInputError`` when the camera does not animate over the shot.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Euler, Quaternion

from .compat import fcurves_of
from .known_cameras import CameraInputError, camera_intrinsics, camera_w2c, check_perspective

__all__ = ["track_cameras"]

_LENS_PATHS = ("lens", "shift_x", "shift_y")


def _curves(id_block) -> dict[tuple[str, int], bpy.types.FCurve]:
    return {(fc.data_path, fc.array_index): fc for fc in fcurves_of(id_block)}


def _has_drivers(id_block) -> bool:
    anim = id_block.animation_data
    return anim is not None and len(anim.drivers) > 0


def _channel(curves, path: str, index: int, static: float, frames: np.ndarray) -> np.ndarray:
    fc = curves.get((path, index))
    if fc is None:
        return np.full(len(frames), float(static))
    return np.array([fc.evaluate(float(f)) for f in frames])


def _keyed_range(curves) -> tuple[float, float] | None:
    keys = [k.co[0] for fc in curves.values() for k in fc.keyframe_points]
    return (min(keys), max(keys)) if keys else None


def _simple(obj: bpy.types.Object) -> bool:
    """Keyed by F-curves alone: its world matrix is its own keyed transform."""
    deltas = (
        tuple(obj.delta_location) == (0, 0, 0)
        and tuple(obj.delta_scale) == (1, 1, 1)
        and tuple(obj.delta_rotation_euler) == (0, 0, 0)
        and tuple(obj.delta_rotation_quaternion) == (1, 0, 0, 0)
    )
    return (
        obj.parent is None
        and not obj.constraints
        and not _has_drivers(obj)
        and obj.rotation_mode != "AXIS_ANGLE"
        and deltas
    )


def _matrices_from_curves(obj: bpy.types.Object, frames: np.ndarray) -> np.ndarray:
    curves = _curves(obj)
    loc = np.stack([_channel(curves, "location", i, obj.location[i], frames) for i in range(3)], 1)
    scale = np.stack([_channel(curves, "scale", i, obj.scale[i], frames) for i in range(3)], 1)
    if obj.rotation_mode == "QUATERNION":
        quat = np.stack(
            [
                _channel(curves, "rotation_quaternion", i, obj.rotation_quaternion[i], frames)
                for i in range(4)
            ],
            1,
        )
        rots = [Quaternion(q).normalized().to_matrix() for q in quat]
    else:
        euler = np.stack(
            [_channel(curves, "rotation_euler", i, obj.rotation_euler[i], frames) for i in range(3)], 1
        )
        rots = [Euler(e, obj.rotation_mode).to_matrix() for e in euler]
    out = np.tile(np.eye(4), (len(frames), 1, 1))
    out[:, :3, :3] = np.array([np.array(r) for r in rots]) * scale[:, None, :]
    out[:, :3, 3] = loc
    return out


def _matrices_by_frame(scene: bpy.types.Scene, obj: bpy.types.Object, frames: np.ndarray):
    """World matrices and (lens, shift_x, shift_y) per frame, evaluated by the depsgraph."""
    current = scene.frame_current, scene.frame_subframe
    mats, lens = [], []
    try:
        for f in frames:
            scene.frame_set(int(f))
            mats.append(np.array(obj.matrix_world))
            lens.append([obj.data.lens, obj.data.shift_x, obj.data.shift_y])
    finally:
        scene.frame_set(current[0], subframe=current[1])
    return np.array(mats), np.array(lens)


def track_cameras(
    scene: bpy.types.Scene, obj: bpy.types.Object | None, frames, plate_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(K (F, 3, 3), w2c (F, 4, 4))`` of the camera ``obj`` at scene ``frames (F,)``, K in pixels of the
    plate (``plate_size`` = width, height; the scene's pixel aspect applies)."""
    if obj is None or obj.type != "CAMERA":
        raise CameraInputError("No track camera chosen: pick the animated camera of the shot under Shot.")
    check_perspective(obj)
    frames = np.asarray(frames, np.float64)
    obj_curves, cam_curves = _curves(obj), _curves(obj.data)
    keyed = [r for r in (_keyed_range(obj_curves), _keyed_range(cam_curves)) if r is not None]
    moved_otherwise = obj.parent is not None or len(obj.constraints) > 0 or _has_drivers(obj)
    if not keyed and not moved_otherwise:
        raise CameraInputError(
            f"The camera '{obj.name}' has no animation: pick the camera of a camera track (keyed, or solved "
            "with a Camera Solver constraint), or reconstruct without the track."
        )
    if keyed and not moved_otherwise:
        first, last = min(r[0] for r in keyed), max(r[1] for r in keyed)
        if frames.min() < first or frames.max() > last:
            raise CameraInputError(
                f"The camera '{obj.name}' is keyed on frames {first:g}–{last:g} but the shot covers frames "
                f"{frames.min():g}–{frames.max():g}: narrow the frame range to the track, or key the camera "
                "over the whole shot."
            )
    if _simple(obj) and not _has_drivers(obj.data):
        matrices = _matrices_from_curves(obj, frames)
        data = obj.data
        animated = {p: _channel(cam_curves, p, 0, getattr(data, p), frames) for p in _LENS_PATHS}
    else:
        matrices, lens = _matrices_by_frame(scene, obj, frames)
        animated = dict(zip(_LENS_PATHS, lens.T, strict=True))
    K = camera_intrinsics(obj.data, scene, plate_size, **animated)
    w2c = np.stack([camera_w2c(m) for m in matrices])
    return K, w2c
