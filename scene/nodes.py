"""Geometry Nodes: the "DA3 Points" group that draws a vertex cloud as renderable points.

Vertices whose ``confidence_rank`` is below "Min Confidence" are deleted (live: drag the slider in the
modifier or the N-panel), the rest become points of radius "Point Size" × "Scene Size" (the point size
is relative, so metric and unit-less scenes look alike), and get the colour material.
"""

from __future__ import annotations

import bpy

from .compat import set_modifier_input

__all__ = [
    "MODIFIER_NAME",
    "POINTS_GROUP",
    "SOCKETS",
    "add_point_cloud_modifier",
    "group_to_build",
    "point_cloud_group",
]

POINTS_GROUP = "DA3 Points"
MODIFIER_NAME = "DA3 Points"
_VERSION = 1
# socket name → (type, default, min, max, description)
SOCKETS = {
    "Point Size": ("NodeSocketFloat", 0.002, 0.0, 1.0, "Point radius as a fraction of the scene size"),
    "Scene Size": ("NodeSocketFloat", 1.0, 0.0, 1e9, "Size of the scene (set on import)"),
    "Min Confidence": ("NodeSocketFloat", 0.0, 0.0, 1.0, "Hide this share of the least confident points"),
}


def group_to_build(
    name: str, version: int, sockets: dict, materials: tuple[str, ...]
) -> tuple[bpy.types.GeometryNodeTree, bool]:
    """The shared Geometry Nodes group ``name`` and whether it must be built (missing or older than
    ``version``: then emptied, with its interface made anew: Geometry in, the ``sockets`` inputs
    (name → (type, default, min or None, max, description)), one material input per name in
    ``materials``, Geometry out)."""
    group = bpy.data.node_groups.get(name)
    if group is not None and group.get("da3_version") == version:
        return group, False
    if group is None:
        group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group["da3_version"] = version
    group.nodes.clear()
    group.interface.clear()
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    for socket_name, (kind, default, low, high, description) in sockets.items():
        socket = group.interface.new_socket(socket_name, in_out="INPUT", socket_type=kind)
        socket.default_value = default
        if low is not None:
            socket.min_value, socket.max_value = low, high
        socket.description = description
    for material in materials:
        group.interface.new_socket(material, in_out="INPUT", socket_type="NodeSocketMaterial")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    return group, True


def point_cloud_group(rank_attribute: str = "confidence_rank") -> bpy.types.GeometryNodeTree:
    """The shared node group (built once per file, rebuilt when its version is old)."""
    group, build = group_to_build(POINTS_GROUP, _VERSION, SOCKETS, ("Material",))
    if not build:
        return group

    n, link = group.nodes, group.links.new
    g_in, g_out = n.new("NodeGroupInput"), n.new("NodeGroupOutput")
    rank = n.new("GeometryNodeInputNamedAttribute")
    rank.data_type = "FLOAT"
    rank.inputs["Name"].default_value = rank_attribute
    below = n.new("FunctionNodeCompare")
    below.data_type, below.operation = "FLOAT", "LESS_THAN"
    delete = n.new("GeometryNodeDeleteGeometry")
    delete.domain = "POINT"
    radius = n.new("ShaderNodeMath")
    radius.operation = "MULTIPLY"
    to_points = n.new("GeometryNodeMeshToPoints")
    to_points.mode = "VERTICES"
    set_material = n.new("GeometryNodeSetMaterial")

    link(rank.outputs["Attribute"], below.inputs["A"])
    link(g_in.outputs["Min Confidence"], below.inputs["B"])
    link(g_in.outputs["Geometry"], delete.inputs["Geometry"])
    link(below.outputs["Result"], delete.inputs["Selection"])
    link(g_in.outputs["Point Size"], radius.inputs[0])
    link(g_in.outputs["Scene Size"], radius.inputs[1])
    link(delete.outputs["Geometry"], to_points.inputs["Mesh"])
    link(radius.outputs["Value"], to_points.inputs["Radius"])
    link(to_points.outputs["Points"], set_material.inputs["Geometry"])
    link(g_in.outputs["Material"], set_material.inputs["Material"])
    link(set_material.outputs["Geometry"], g_out.inputs["Geometry"])
    for i, node in enumerate((g_in, rank, below, delete, radius, to_points, set_material, g_out)):
        node.location = (200 * i - 800, 0 if node not in (rank, below, radius) else -220)
    return group


def add_point_cloud_modifier(
    obj: bpy.types.Object, material: bpy.types.Material, *, scene_size: float, point_size: float
) -> bpy.types.NodesModifier:
    """Add the "DA3 Points" modifier to ``obj`` with this cloud's scene size and point size."""
    modifier = obj.modifiers.new(MODIFIER_NAME, "NODES")
    modifier.node_group = point_cloud_group()
    set_modifier_input(modifier, "Scene Size", float(scene_size))
    set_modifier_input(modifier, "Point Size", float(point_size))
    set_modifier_input(modifier, "Min Confidence", 0.0)
    set_modifier_input(modifier, "Material", material)
    return modifier
