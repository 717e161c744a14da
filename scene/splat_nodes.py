"""Geometry Nodes: the "DA3 Gaussians" group that turns a mesh of splat centres into renderable splats.

The mesh holds one vertex per splat with the values the PLY stores (``gaussians.py``); this group
activates them live: ``exp`` of the log scales, the quaternion normalised, the opacity through the
sigmoid. In renders (and in the viewport when "Viewport Splats" is on) every splat becomes an
instance of a small ico-sphere shell, turned and scaled to the splat's 3.33 σ ellipsoid, with the
values the splat material reads (``splat_material``). In the viewport it is otherwise one coloured
point per splat, so a scene of millions stays interactive. "Min Opacity" hides faint splats in both.
"""

from __future__ import annotations

import math

import bpy

from .compat import set_modifier_input
from .node_math import NodeMath
from .splat_material import ALPHA_ATTRIBUTE, AXIS_ATTRIBUTES

__all__ = [
    "GAUSSIANS_GROUP",
    "LOG_SCALE_ATTRIBUTE",
    "MODIFIER_NAME",
    "OPACITY_ATTRIBUTE",
    "ROTATION_ATTRIBUTE",
    "SHELL_RADIUS",
    "add_gaussians_modifier",
    "gaussians_group",
]

GAUSSIANS_GROUP = "DA3 Gaussians"
MODIFIER_NAME = "DA3 Gaussians"
LOG_SCALE_ATTRIBUTE = "log_scale"  # FLOAT_VECTOR: the file's scale_0..2
ROTATION_ATTRIBUTE = "rotation"  # QUATERNION: the file's rot_0..3 (w, x, y, z) as stored
OPACITY_ATTRIBUTE = "opacity"  # FLOAT: the file's opacity logit
_VERSION = 1
_CUTOFF = math.sqrt(2.0 * math.log(255.0))  # 3.33 σ: beyond it even an opaque splat is under 1/255
_SHELL_SUBDIVISIONS = 2
_SHELL_INRADIUS = 0.9341  # an ico sphere of 2 subdivisions holds a sphere of this share of its radius
SHELL_RADIUS = _CUTOFF / _SHELL_INRADIUS * 1.001

SOCKETS = {
    "Viewport Splats": ("NodeSocketBool", False, None, None, "Show full splats in the viewport, not points"),
    "Point Size": ("NodeSocketFloat", 1.0, 0.0, 100.0, "Viewport point radius, in each splat's largest σ"),
    "Min Opacity": ("NodeSocketFloat", 0.0, 0.0, 1.0, "Hide splats fainter than this"),
}


def gaussians_group() -> bpy.types.GeometryNodeTree:
    """The shared node group (built once per file, rebuilt when its version is old)."""
    group = bpy.data.node_groups.get(GAUSSIANS_GROUP)
    if group is not None and group.get("da3_version") == _VERSION:
        return group
    if group is None:
        group = bpy.data.node_groups.new(GAUSSIANS_GROUP, "GeometryNodeTree")
    group["da3_version"] = _VERSION
    group.nodes.clear()
    group.interface.clear()
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    for name, (kind, default, low, high, description) in SOCKETS.items():
        socket = group.interface.new_socket(name, in_out="INPUT", socket_type=kind)
        socket.default_value = default
        if low is not None:
            socket.min_value, socket.max_value = low, high
        socket.description = description
    group.interface.new_socket("Splat Material", in_out="INPUT", socket_type="NodeSocketMaterial")
    group.interface.new_socket("Point Material", in_out="INPUT", socket_type="NodeSocketMaterial")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    _build(group)
    return group


def _named(g: NodeMath, data_type: str, name: str):
    node = g.node("GeometryNodeInputNamedAttribute", data_type=data_type)
    node.inputs["Name"].default_value = name
    return node.outputs["Attribute"]


def _store(g: NodeMath, geometry, data_type: str, name: str, value):
    node = g.node("GeometryNodeStoreNamedAttribute", data_type=data_type, domain="POINT")
    node.inputs["Name"].default_value = name
    g.feed(node.inputs["Geometry"], geometry)
    g.feed(node.inputs["Value"], value)
    return node.outputs["Geometry"]


def _build(group: bpy.types.GeometryNodeTree) -> None:
    g = NodeMath(group, x=-1800.0)
    g_in = g.node("NodeGroupInput")
    g_out = g.node("NodeGroupOutput")

    # activations of the stored values
    sigma = g.combine(*(g.exp(c) for c in g.separate(_named(g, "FLOAT_VECTOR", LOG_SCALE_ATTRIBUTE))))
    parts = g.node("FunctionNodeRotationToQuaternion")
    g.feed(parts.inputs[0], _named(g, "QUATERNION", ROTATION_ATTRIBUTE))
    wxyz = [parts.outputs[i] for i in range(4)]
    length = g.math("MAXIMUM", g.math("SQRT", g.total([g.mul(c, c) for c in wxyz])), 1e-30)
    unit = g.node("FunctionNodeQuaternionToRotation")
    for i, c in enumerate(wxyz):
        g.feed(unit.inputs[i], g.div(c, length))
    rotation = unit.outputs[0]
    alpha = g.div(1.0, g.add(1.0, g.exp(g.mul(_named(g, "FLOAT", OPACITY_ATTRIBUTE), -1.0))))
    visible = g.node("FunctionNodeCompare", data_type="FLOAT", operation="GREATER_EQUAL")
    g.feed(visible.inputs["A"], alpha)
    g.feed(visible.inputs["B"], g_in.outputs["Min Opacity"])

    # what the material reads on each instance: alpha and the splat's axes (columns of R·S)
    geometry = _store(g, g_in.outputs["Geometry"], "FLOAT", ALPHA_ATTRIBUTE, alpha)
    sx, sy, sz = g.separate(sigma)
    for name, axis in zip(
        AXIS_ATTRIBUTES, (g.combine(sx, 0, 0), g.combine(0, sy, 0), g.combine(0, 0, sz)), strict=True
    ):
        turn = g.node("FunctionNodeRotateVector")
        g.feed(turn.inputs["Vector"], axis)
        g.feed(turn.inputs["Rotation"], rotation)
        geometry = _store(g, geometry, "FLOAT_VECTOR", name, turn.outputs[0])

    shell = g.node("GeometryNodeMeshIcoSphere")
    shell.inputs["Radius"].default_value = SHELL_RADIUS
    shell.inputs["Subdivisions"].default_value = _SHELL_SUBDIVISIONS
    shell_material = g.node("GeometryNodeSetMaterial")
    g.feed(shell_material.inputs["Geometry"], shell.outputs["Mesh"])
    g.feed(shell_material.inputs["Material"], g_in.outputs["Splat Material"])
    splats = g.node("GeometryNodeInstanceOnPoints")
    g.feed(splats.inputs["Points"], geometry)
    g.feed(splats.inputs["Selection"], visible.outputs["Result"])
    g.feed(splats.inputs["Instance"], shell_material.outputs["Geometry"])
    g.feed(splats.inputs["Rotation"], rotation)
    g.feed(splats.inputs["Scale"], sigma)

    # the viewport's points: one per splat, its largest σ times "Point Size"
    points = g.node("GeometryNodeMeshToPoints", mode="VERTICES")
    g.feed(points.inputs["Mesh"], g_in.outputs["Geometry"])
    g.feed(points.inputs["Selection"], visible.outputs["Result"])
    largest = g.math("MAXIMUM", g.math("MAXIMUM", sx, sy), sz)
    g.feed(points.inputs["Radius"], g.mul(largest, g_in.outputs["Point Size"]))
    point_material = g.node("GeometryNodeSetMaterial")
    g.feed(point_material.inputs["Geometry"], points.outputs["Points"])
    g.feed(point_material.inputs["Material"], g_in.outputs["Point Material"])

    as_points = g.node("FunctionNodeBooleanMath", operation="NIMPLY")  # viewport and not "Viewport Splats"
    g.feed(as_points.inputs[0], g.node("GeometryNodeIsViewport").outputs[0])
    g.feed(as_points.inputs[1], g_in.outputs["Viewport Splats"])
    switch = g.node("GeometryNodeSwitch", input_type="GEOMETRY")
    g.feed(switch.inputs["Switch"], as_points.outputs[0])
    g.feed(switch.inputs["False"], splats.outputs["Instances"])
    g.feed(switch.inputs["True"], point_material.outputs["Geometry"])
    g.feed(g_out.inputs[0], switch.outputs[0])
    g_in.location, g_out.location = (-2200.0, 0.0), (g._x + 400.0, 0.0)


def add_gaussians_modifier(
    obj: bpy.types.Object, splat_material: bpy.types.Material, point_material: bpy.types.Material
) -> bpy.types.NodesModifier:
    """Add the "DA3 Gaussians" modifier to ``obj`` with its two materials."""
    modifier = obj.modifiers.new(MODIFIER_NAME, "NODES")
    modifier.node_group = gaussians_group()
    set_modifier_input(modifier, "Splat Material", splat_material)
    set_modifier_input(modifier, "Point Material", point_material)
    return modifier
