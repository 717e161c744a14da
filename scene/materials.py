"""Materials: the point colour material that shows each point's own colour in Cycles and EEVEE."""

from __future__ import annotations

import bpy

from .compat import ensure_node_tree

__all__ = ["POINT_MATERIAL", "material_to_build", "point_color_material"]

POINT_MATERIAL = "DA3 Point Color"
_VERSION = 1


def material_to_build(name: str, version: int) -> tuple[bpy.types.Material, bpy.types.NodeTree | None]:
    """The shared material ``name`` and, when it is missing or older than ``version``, its emptied node
    tree to build (None: it is up to date). One material per purpose per file, rebuilt in place."""
    mat = bpy.data.materials.get(name)
    if mat is not None and mat.get("da3_version") == version:
        return mat, None
    if mat is None:
        mat = bpy.data.materials.new(name)
    mat["da3_version"] = version
    tree = ensure_node_tree(mat)
    tree.nodes.clear()
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat, tree


def point_color_material(color_attribute: str = "Color") -> bpy.types.Material:
    """An unlit material that emits the point's ``color_attribute`` (so the cloud looks like the photos
    whatever the scene's lights); shared by every imported cloud, rebuilt if its version is old."""
    mat, tree = material_to_build(POINT_MATERIAL, _VERSION)
    if tree is None:
        return mat
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
    return mat
