"""Materials: the point colour material that shows each point's own colour in Cycles and EEVEE."""

from __future__ import annotations

import bpy

from .compat import ensure_node_tree

__all__ = ["POINT_MATERIAL", "point_color_material"]

POINT_MATERIAL = "DA3 Point Color"
_VERSION = 1


def point_color_material(color_attribute: str = "Color") -> bpy.types.Material:
    """An unlit material that emits the point's ``color_attribute`` (so the cloud looks like the photos
    whatever the scene's lights); shared by every imported cloud, rebuilt if its version is old."""
    mat = bpy.data.materials.get(POINT_MATERIAL)
    if mat is not None and mat.get("da3_version") == _VERSION:
        return mat
    if mat is None:
        mat = bpy.data.materials.new(POINT_MATERIAL)
    mat["da3_version"] = _VERSION
    tree = ensure_node_tree(mat)
    tree.nodes.clear()
    attr = tree.nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = color_attribute
    attr.location = (-400, 0)
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0
    emit.location = (-150, 0)
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    out.location = (100, 0)
    tree.links.new(attr.outputs["Color"], emit.inputs["Color"])
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat
