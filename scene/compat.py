"""Blender 4.2 LTS … 5.x API differences, in one place, detected by feature (never by version number).

- Geometry Nodes modifier inputs: ID properties ``modifier["Socket_n"]`` up to 5.1; RNA
  ``modifier.properties.inputs.Socket_n.value`` from 5.2 (the ID properties are gone there).
- Movie strip timing: 5.x names ``content_start``, ``left_handle``, ``right_handle``,
  ``content_duration``, ``content_trim_start``/``_end`` (the 4.x names ``frame_start``,
  ``frame_final_start``… are marked for removal in 6.0).
- The sequencer's strips: ``strips_all`` (4.4+) or ``sequences_all`` (4.2/4.3).
- Actions: slotted, layered actions (4.4+: F-curves live in a slot's channelbag) or ``Action.fcurves``.
- Node trees of materials and worlds: always on in 5.x (``use_nodes`` deprecated), switched on in 4.x.
- Transparent materials in EEVEE: ``surface_render_method`` (EEVEE Next, 4.2+) or ``blend_method``.

Everything else in ``scene/``, ``operators/`` and ``panels/`` goes through these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import bpy

__all__ = [
    "StripTiming",
    "ensure_node_tree",
    "fcurve_factory",
    "fcurves_of",
    "modifier_input_owner",
    "modifier_input_value",
    "set_modifier_input",
    "sequencer_strips",
    "set_material_blend",
    "strip_timing",
]


# --- Geometry Nodes modifier inputs ---------------------------------------------------------------


def _has_rna_inputs(modifier: bpy.types.NodesModifier) -> bool:
    return "properties" in modifier.bl_rna.properties


def _identifier(modifier: bpy.types.NodesModifier, name: str) -> str:
    for item in modifier.node_group.interface.items_tree:
        if item.item_type == "SOCKET" and item.in_out == "INPUT" and item.name == name:
            return item.identifier
    raise KeyError(f"the node group '{modifier.node_group.name}' has no input '{name}'")


def modifier_input_owner(modifier: bpy.types.NodesModifier, name: str) -> tuple[bpy.types.bpy_struct, str]:
    """``(data, property)`` such that ``layout.prop(data, property)`` draws the group input ``name``."""
    key = _identifier(modifier, name)
    if _has_rna_inputs(modifier):
        return getattr(modifier.properties.inputs, key), "value"
    return modifier, f'["{key}"]'


def modifier_input_value(modifier: bpy.types.NodesModifier, name: str):
    """The value of the group input ``name`` on this modifier."""
    key = _identifier(modifier, name)
    if _has_rna_inputs(modifier):
        return getattr(modifier.properties.inputs, key).value
    return modifier[key]


def set_modifier_input(modifier: bpy.types.NodesModifier, name: str, value) -> None:
    """Set the group input ``name`` on this modifier (a number, vector or datablock)."""
    key = _identifier(modifier, name)
    if _has_rna_inputs(modifier):
        getattr(modifier.properties.inputs, key).value = value
    else:
        modifier[key] = value
    modifier.id_data.update_tag()


# --- Movie strips ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StripTiming:
    """Where a movie strip's content sits on the timeline (scene frames, ``end`` exclusive).

    ``start`` shows content frame 0, which is movie position ``trim_start`` (the hold offset);
    ``first``…``end`` is the part that plays (between the handles); ``length`` is the number of movie
    positions the strip holds (the movie's length less both hold offsets).
    """

    start: float
    first: int
    end: int
    length: int
    trim_start: int
    trim_end: int
    reversed: bool


def strip_timing(strip) -> StripTiming:
    """A movie strip's timing under the names of whichever Blender runs."""
    if "content_start" in strip.bl_rna.properties:  # 5.x names
        return StripTiming(
            float(strip.content_start),
            int(strip.left_handle),
            int(strip.right_handle),
            int(strip.content_duration),
            int(strip.content_trim_start),
            int(strip.content_trim_end),
            bool(strip.use_reverse_frames),
        )
    return StripTiming(
        float(strip.frame_start),
        int(strip.frame_final_start),
        int(strip.frame_final_end),
        int(strip.frame_duration),
        int(strip.animation_offset_start),
        int(strip.animation_offset_end),
        bool(strip.use_reverse_frames),
    )


def sequencer_strips(scene: bpy.types.Scene) -> list:
    """Every strip of the scene's sequencer, inside meta strips too ([] without a sequencer)."""
    editor = scene.sequence_editor
    if editor is None:
        return []
    if "strips_all" in editor.bl_rna.properties:
        return list(editor.strips_all)
    return list(editor.sequences_all)


# --- Actions --------------------------------------------------------------------------------------


def _is_layered(action: bpy.types.Action) -> bool:
    return "layers" in action.bl_rna.properties


def fcurve_factory(id_block: bpy.types.ID) -> Callable[[str, int], bpy.types.FCurve]:
    """A function ``new(data_path, index) -> FCurve`` on ``id_block``'s action (created if needed)."""
    anim = id_block.animation_data or id_block.animation_data_create()
    if anim.action is None:
        anim.action = bpy.data.actions.new(f"{id_block.name} Action")
    action = anim.action
    if _is_layered(action):
        if anim.action_slot is None:
            anim.action_slot = action.slots.new(id_type=id_block.id_type, name=id_block.name)
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        bag = strip.channelbag(anim.action_slot, ensure=True)
        return lambda path, index: bag.fcurves.new(path, index=index)
    return lambda path, index: action.fcurves.new(path, index=index)


def fcurves_of(id_block: bpy.types.ID) -> list:
    """The F-curves of ``id_block``'s action (its slot's channelbag where actions are layered)."""
    anim = id_block.animation_data
    action = anim.action if anim is not None else None
    if action is None:
        return []
    if _is_layered(action):
        if anim.action_slot is None or not len(action.layers) or not len(action.layers[0].strips):
            return []
        bag = action.layers[0].strips[0].channelbag(anim.action_slot)
        return list(bag.fcurves) if bag is not None else []
    return list(action.fcurves)


# --- Node trees of materials and worlds -----------------------------------------------------------


def ensure_node_tree(id_block) -> bpy.types.NodeTree:
    """The node tree of a material or world, switched on where Blender still has a switch (4.x)."""
    switch = id_block.bl_rna.properties.get("use_nodes")
    if switch is not None and not getattr(switch, "is_deprecated", False) and not id_block.use_nodes:
        id_block.use_nodes = True  # 4.x only: in 5.x every material and world has its tree, always on
    return id_block.node_tree


def set_material_blend(material: bpy.types.Material) -> None:
    """See-through surfaces in EEVEE that converge to ordered alpha blending (dithered / hashed, no
    sorting to go wrong with millions of overlapping splats)."""
    props = material.bl_rna.properties
    if "surface_render_method" in props:
        material.surface_render_method = "DITHERED"
    elif "blend_method" in props:
        material.blend_method = "HASHED"
