"""Keyframes in bulk: ``keyframe_points.add(n)`` + one ``foreach_set('co', …)`` per channel.

Works with the layered (slotted) actions of Blender 4.4+ and 5.x and with the plain ``Action.fcurves``
of 4.2/4.3. Never a per-frame ``keyframe_insert`` (that takes seconds for a few thousand frames).
"""

from __future__ import annotations

from collections.abc import Callable

import bpy
import numpy as np

__all__ = ["fcurve_factory", "fcurves_of", "key_values", "set_keys"]


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


def fcurves_of(id_block: bpy.types.ID) -> list:
    """The F-curves of ``id_block``'s action (its slot's channelbag on 4.4+), [] when it has none."""
    anim = id_block.animation_data
    action = anim.action if anim is not None else None
    if action is None:
        return []
    if hasattr(action, "layers"):
        if anim.action_slot is None or not len(action.layers) or not len(action.layers[0].strips):
            return []
        bag = action.layers[0].strips[0].channelbag(anim.action_slot)
        return list(bag.fcurves) if bag is not None else []
    return list(action.fcurves)


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
