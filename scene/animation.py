"""Keyframes in bulk: ``keyframe_points.add(n)`` + one ``foreach_set('co', …)`` per channel.

Works with the layered (slotted) actions of Blender 4.4+ and 5.x and with the plain ``Action.fcurves``
of 4.2/4.3. Never a per-frame ``keyframe_insert`` (that takes seconds for a few thousand frames).
"""

from __future__ import annotations

from collections.abc import Callable

import bpy
import numpy as np

__all__ = ["fcurve_factory", "set_keys"]


def fcurve_factory(id_block: bpy.types.ID) -> Callable[[str, int], bpy.types.FCurve]:
    """A function ``new(data_path, index) -> FCurve`` on ``id_block``'s action (created if needed)."""
    anim = id_block.animation_data or id_block.animation_data_create()
    if anim.action is None:
        anim.action = bpy.data.actions.new(f"{id_block.name} Action")
    action = anim.action
    if hasattr(action, "layers"):  # 4.4+: slotted, layered actions
        if anim.action_slot is None:
            anim.action_slot = action.slots.new(id_type=id_block.id_type, name=id_block.name)
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        bag = strip.channelbag(anim.action_slot, ensure=True)
        return lambda path, index: bag.fcurves.new(path, index=index)
    return lambda path, index: action.fcurves.new(path, index=index)


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
