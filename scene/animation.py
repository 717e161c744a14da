"""Keyframes in bulk: ``keyframe_points.add(n)`` + one ``foreach_set('co', …)`` per channel.

``key_camera_path`` keys a camera's poses: location, and rotation either as quaternions with sign
continuity (no flips, no gimbal lock; ``engine.geometry.trajectory``) or as Blender ``XYZ`` Euler angles
run through the Euler filter (no ±360° jumps).

Works with the layered (slotted) actions of Blender 4.4+ and 5.x and with the plain ``Action.fcurves``
of 4.2/4.3. Never a per-frame ``keyframe_insert`` (that takes seconds for a few thousand frames).
"""

from __future__ import annotations

from collections.abc import Callable

import bpy
import numpy as np

from ..engine.geometry.trajectory import euler_filter, matrix_to_euler_xyz, quaternions_with_continuity
from .compat import fcurve_factory, fcurves_of  # the action API differs between 4.2 and 4.4+

__all__ = ["ROTATION_MODES", "fcurve_factory", "fcurves_of", "key_camera_path", "key_values", "set_keys"]

ROTATION_MODES = ("QUATERNION", "EULER")


def set_keys(
    new_fcurve: Callable[[str, int], bpy.types.FCurve],
    data_path: str,
    frames: np.ndarray,
    values: np.ndarray,
    interpolation: str = "LINEAR",
) -> None:
    """Key ``values (F, k)`` (or (F,)) at ``frames (F,)`` on channels 0..k-1 of ``data_path``."""
    frames = np.asarray(frames, np.float32).ravel()
    values = np.asarray(values, np.float32).reshape(len(frames), -1)
    mode = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[interpolation].value
    modes = np.full(len(frames), mode, np.int32)
    co = np.empty((len(frames), 2), np.float32)
    co[:, 0] = frames
    for channel in range(values.shape[1]):
        fcurve = new_fcurve(data_path, channel)
        points = fcurve.keyframe_points
        points.add(len(frames))
        co[:, 1] = values[:, channel]
        points.foreach_set("co", co.ravel())
        points.foreach_set("interpolation", modes)
        fcurve.update()


def key_values(id_block: bpy.types.ID, data_path: str, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The keys of channels 0..size-1 of ``data_path``: ``(frames (K,), values (K, size))``, or None when
    a channel is missing or the channels are keyed on different frames."""
    curves = {(fc.data_path, fc.array_index): fc for fc in fcurves_of(id_block)}
    columns, frames = [], None
    for index in range(size):
        fcurve = curves.get((data_path, index))
        if fcurve is None:
            return None
        co = np.empty(2 * len(fcurve.keyframe_points), np.float32)
        fcurve.keyframe_points.foreach_get("co", co)
        if frames is not None and not np.array_equal(frames, co[0::2]):
            return None
        frames = co[0::2]
        columns.append(co[1::2])
    return frames.astype(np.float64), np.stack(columns, 1).astype(np.float64)


def key_camera_path(
    obj: bpy.types.Object, frames: np.ndarray, matrices: np.ndarray, rotation_mode: str = "QUATERNION"
) -> None:
    """Key the rigid ``matrices (F, 4, 4)`` at ``frames (F,)`` on ``obj``: location, and the rotation as
    quaternions ("QUATERNION", signs kept continuous) or Blender's XYZ Euler angles ("EULER", filtered)."""
    if rotation_mode not in ROTATION_MODES:
        raise ValueError(f"rotation_mode must be QUATERNION or EULER, got {rotation_mode!r}")
    rotations = matrices[:, :3, :3]
    new_fcurve = fcurve_factory(obj)
    set_keys(new_fcurve, "location", frames, matrices[:, :3, 3])
    if rotation_mode == "EULER":
        obj.rotation_mode = "XYZ"
        set_keys(new_fcurve, "rotation_euler", frames, euler_filter(matrix_to_euler_xyz(rotations)))
    else:
        obj.rotation_mode = "QUATERNION"
        set_keys(new_fcurve, "rotation_quaternion", frames, quaternions_with_continuity(rotations))
