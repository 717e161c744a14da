"""Geometry Nodes: the "DA3 Gaussians" group that turns a mesh of splat centres into renderable splats.

The mesh holds one vertex per splat with the values the PLY stores (``gaussians.py``); this group
activates them live (``exp`` of the log scales, the quaternion normalised, the opacity through the
sigmoid) and, for renders (and the viewport when "Viewport Splats" is on), builds what 3DGS rasterises:

* each splat becomes one triangle through its centre, parallel to the scene camera's image plane, so
  the splats are composited in the order of their centres' depth, as 3DGS sorts them;
* on that plane the splat's footprint is the Gaussian's shadow along the viewing ray (the 2D Gaussian
  3DGS projects, up to its local-affine approximation): with the splat's whitened basis
  ``E_i = S⁻¹ Rᵀ e_i`` (e₁, e₂ the camera's right and up axes) and ``W = S⁻¹ Rᵀ v`` (v the ray to the
  centre), its precision is ``Q_ij = E_i·E_j − (E_i·W)(E_j·W)/|W|²``; the triangle is the circle of
  radius 3.33 (where even an opaque splat falls under 1/255) in whitened 2D coordinates, mapped by the
  Cholesky factor of ``Q⁻¹`` — so the whitened coordinates, stored per corner in ``splat_uv`` with the
  opacity, interpolate exactly across it, and the material needs only ``exp(−½|uv|²)``;
* splats behind the camera are dropped.

Everything is computed in the object's own space (the camera through Object Info, relative), so the
splats follow any transform of the object and its parents. In the viewport it is otherwise one coloured
point per splat, so a scene of millions stays interactive. "Min Opacity" hides faint splats in both.
"""

from __future__ import annotations

import math

import bpy

from .compat import set_modifier_input
from .node_math import NodeMath
from .nodes import group_to_build
from .splat_material import UV_ATTRIBUTE, pack_attribute, pack_count, sh_attribute

__all__ = [
    "GAUSSIANS_GROUP",
    "LOG_SCALE_ATTRIBUTE",
    "MODIFIER_NAME",
    "OPACITY_ATTRIBUTE",
    "ROTATION_ATTRIBUTE",
    "UV_ATTRIBUTE",
    "add_gaussians_modifier",
    "gaussians_group",
]

GAUSSIANS_GROUP = "DA3 Gaussians"  # + " (SH d)": one group per SH degree
MODIFIER_NAME = "DA3 Gaussians"
LOG_SCALE_ATTRIBUTE = "log_scale"  # FLOAT_VECTOR: the file's scale_0..2
ROTATION_ATTRIBUTE = "rotation"  # QUATERNION: the file's rot_0..3 (w, x, y, z) as stored
OPACITY_ATTRIBUTE = "opacity"  # FLOAT: the file's opacity logit
_CENTRE = "splat_centre"  # working attribute: the splat's centre, carried to its triangle's corners
_VERSION = 3
_CUTOFF = math.sqrt(2.0 * math.log(255.0))  # 3.33 σ: beyond it even an opaque splat is under 1/255

SOCKETS = {
    "Viewport Splats": ("NodeSocketBool", False, None, None, "Show full splats in the viewport, not points"),
    "Point Size": ("NodeSocketFloat", 1.0, 0.0, 100.0, "Viewport point radius, in each splat's largest σ"),
    "Min Opacity": ("NodeSocketFloat", 0.0, 0.0, 1.0, "Hide splats fainter than this"),
}


def gaussians_group(degree: int) -> bpy.types.GeometryNodeTree:
    """The shared node group for splats of SH ``degree`` (built once per file, rebuilt when old)."""
    materials = ("Splat Material", "Point Material")
    group, build = group_to_build(f"{GAUSSIANS_GROUP} (SH {degree})", _VERSION, SOCKETS, materials)
    if not build:
        return group
    _build(group, degree)
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


def _remove(g: NodeMath, geometry, names: tuple[str, ...]):
    for name in names:
        node = g.node("GeometryNodeRemoveAttribute")
        g.feed(node.inputs["Geometry"], geometry)
        node.inputs["Name"].default_value = name
        geometry = node.outputs["Geometry"]
    return geometry


def _turn(g: NodeMath, vector, rotation):
    node = g.node("FunctionNodeRotateVector")
    g.feed(node.inputs["Vector"], vector)
    g.feed(node.inputs["Rotation"], rotation)
    return node.outputs[0]


def _activations(g: NodeMath):
    """(σ, unit rotation, alpha) fields from the stored values."""
    sigma = g.combine(*(g.exp(c) for c in g.separate(_named(g, "FLOAT_VECTOR", LOG_SCALE_ATTRIBUTE))))
    parts = g.node("FunctionNodeRotationToQuaternion")
    g.feed(parts.inputs[0], _named(g, "QUATERNION", ROTATION_ATTRIBUTE))
    wxyz = [parts.outputs[i] for i in range(4)]
    length = g.math("MAXIMUM", g.math("SQRT", g.total([g.mul(c, c) for c in wxyz])), 1e-30)
    unit = g.node("FunctionNodeQuaternionToRotation")
    for i, c in enumerate(wxyz):
        g.feed(unit.inputs[i], g.div(c, length))
    alpha = g.div(1.0, g.add(1.0, g.exp(g.mul(_named(g, "FLOAT", OPACITY_ATTRIBUTE), -1.0))))
    return sigma, unit.outputs[0], alpha


def _pack_sh(g: NodeMath, geometry, degree: int):
    """Store the SH as ``pack_count`` float4 attributes (what the material reads) and drop the
    per-coefficient vectors, so the triangles carry each value once."""
    k = (degree + 1) ** 2
    floats = []
    for i in range(k):
        floats += list(g.separate(_named(g, "FLOAT_VECTOR", sh_attribute(i))))
    floats += [0.0] * (4 * pack_count(degree) - len(floats))
    for j in range(pack_count(degree)):
        colour = g.node("FunctionNodeCombineColor")
        for c in range(4):
            g.feed(colour.inputs[c], floats[4 * j + c])
        node = g.node("GeometryNodeStoreNamedAttribute", data_type="FLOAT_COLOR", domain="POINT")
        node.inputs["Name"].default_value = pack_attribute(j)
        g.feed(node.inputs["Geometry"], geometry)
        g.feed(node.inputs["Value"], colour.outputs[0])
        geometry = node.outputs["Geometry"]
    return _remove(g, geometry, tuple(sh_attribute(i) for i in range(k)))


def _build(group: bpy.types.GeometryNodeTree, degree: int) -> None:
    g = NodeMath(group, x=-2400.0)
    g_in = g.node("NodeGroupInput")
    g_out = g.node("NodeGroupOutput")

    camera = g.node("GeometryNodeObjectInfo", transform_space="RELATIVE")
    g.feed(camera.inputs["Object"], g.node("GeometryNodeInputActiveCamera").outputs[0])
    eye, turn = camera.outputs["Location"], camera.outputs["Rotation"]
    right, up = _turn(g, (1.0, 0.0, 0.0), turn), _turn(g, (0.0, 1.0, 0.0), turn)
    forward = _turn(g, (0.0, 0.0, -1.0), turn)

    # per splat (mesh vertices): visible = in front of the camera and at least "Min Opacity"
    sigma, rotation, alpha = _activations(g)
    centre = g.node("GeometryNodeInputPosition").outputs[0]
    in_front = g.math("GREATER_THAN", g.dot(g.vmath("SUBTRACT", centre, eye), forward), 1e-6)
    opaque = g.math("GREATER_THAN", alpha, g.sub(g_in.outputs["Min Opacity"], 1e-9))
    hidden = g.math("LESS_THAN", g.mul(in_front, opaque), 0.5)
    culled = g.node("GeometryNodeDeleteGeometry", domain="POINT")
    g.feed(culled.inputs["Geometry"], g_in.outputs["Geometry"])
    g.feed(culled.inputs["Selection"], hidden)
    points = _store(g, culled.outputs["Geometry"], "FLOAT_VECTOR", _CENTRE, centre)
    points = _pack_sh(g, points, degree)

    # one triangle per splat: the circle of radius 3.33 in whitened 2D coordinates, circumscribed
    triangle = g.node("GeometryNodeMeshCircle", fill_type="NGON")
    triangle.inputs["Vertices"].default_value = 3
    triangle.inputs["Radius"].default_value = 2.0 * _CUTOFF * 1.001
    shaded = g.node("GeometryNodeSetMaterial")
    g.feed(shaded.inputs["Geometry"], triangle.outputs["Mesh"])
    g.feed(shaded.inputs["Material"], g_in.outputs["Splat Material"])
    placed = g.node("GeometryNodeInstanceOnPoints")
    g.feed(placed.inputs["Points"], points)
    g.feed(placed.inputs["Instance"], shaded.outputs["Geometry"])
    corners = g.node("GeometryNodeRealizeInstances")
    g.feed(corners.inputs["Geometry"], placed.outputs["Instances"])

    # per corner (realized triangles carry their splat's attributes): map the whitened 2D corner
    # (t_x, t_y) onto the image-parallel plane through the centre
    centre_c = _named(g, "FLOAT_VECTOR", _CENTRE)
    tx, ty, _ = g.separate(g.vmath("SUBTRACT", g.node("GeometryNodeInputPosition").outputs[0], centre_c))
    inverse = g.node("FunctionNodeInvertRotation")
    g.feed(inverse.inputs[0], rotation)

    def whiten(vector):
        return g.vmath("DIVIDE", _turn(g, vector, inverse.outputs[0]), sigma)

    e1, e2 = whiten(right), whiten(up)
    w = whiten(g.vmath("SUBTRACT", centre_c, eye))
    ww = g.math("MAXIMUM", g.dot(w, w), 1e-30)
    e1w, e2w = g.dot(e1, w), g.dot(e2, w)
    q11 = g.sub(g.dot(e1, e1), g.div(g.mul(e1w, e1w), ww))
    q12 = g.sub(g.dot(e1, e2), g.div(g.mul(e1w, e2w), ww))
    q22 = g.sub(g.dot(e2, e2), g.div(g.mul(e2w, e2w), ww))
    det = g.math("MAXIMUM", g.sub(g.mul(q11, q22), g.mul(q12, q12)), 1e-30)
    c11, c12, c22 = g.div(q22, det), g.div(g.mul(q12, -1.0), det), g.div(q11, det)  # covariance = Q⁻¹
    l11 = g.math("SQRT", g.math("MAXIMUM", c11, 1e-30))
    l21 = g.div(c12, l11)
    l22 = g.math("SQRT", g.math("MAXIMUM", g.sub(c22, g.mul(l21, l21)), 0.0))
    offset = g.vadd(g.scale(right, g.mul(l11, tx)), g.scale(up, g.add(g.mul(l21, tx), g.mul(l22, ty))))
    # fields read the geometry they are evaluated on: store (u, v) before the corners move
    with_uv = _store(g, corners.outputs["Geometry"], "FLOAT_VECTOR", UV_ATTRIBUTE, g.combine(tx, ty, alpha))
    moved = g.node("GeometryNodeSetPosition")
    g.feed(moved.inputs["Geometry"], with_uv)
    g.feed(moved.inputs["Position"], g.vadd(centre_c, offset))
    splats = moved.outputs["Geometry"]
    splats = _remove(
        g, splats, (_CENTRE, LOG_SCALE_ATTRIBUTE, ROTATION_ATTRIBUTE, OPACITY_ATTRIBUTE, "Color")
    )

    # the viewport's points: one per splat, its largest σ times "Point Size"
    dots = g.node("GeometryNodeMeshToPoints", mode="VERTICES")
    g.feed(dots.inputs["Mesh"], g_in.outputs["Geometry"])
    g.feed(dots.inputs["Selection"], opaque)
    sx, sy, sz = g.separate(sigma)
    g.feed(
        dots.inputs["Radius"],
        g.mul(g.math("MAXIMUM", g.math("MAXIMUM", sx, sy), sz), g_in.outputs["Point Size"]),
    )
    dot_material = g.node("GeometryNodeSetMaterial")
    g.feed(dot_material.inputs["Geometry"], dots.outputs["Points"])
    g.feed(dot_material.inputs["Material"], g_in.outputs["Point Material"])

    as_points = g.node("FunctionNodeBooleanMath", operation="NIMPLY")  # viewport and not "Viewport Splats"
    g.feed(as_points.inputs[0], g.node("GeometryNodeIsViewport").outputs[0])
    g.feed(as_points.inputs[1], g_in.outputs["Viewport Splats"])
    switch = g.node("GeometryNodeSwitch", input_type="GEOMETRY")
    g.feed(switch.inputs["Switch"], as_points.outputs[0])
    g.feed(switch.inputs["False"], splats)
    g.feed(switch.inputs["True"], dot_material.outputs["Geometry"])
    g.feed(g_out.inputs[0], switch.outputs[0])
    g_in.location, g_out.location = (-2800.0, 0.0), (g._x + 400.0, 0.0)


def add_gaussians_modifier(
    obj: bpy.types.Object, degree: int, splat_material: bpy.types.Material, point_material: bpy.types.Material
) -> bpy.types.NodesModifier:
    """Add the "DA3 Gaussians" modifier for splats of SH ``degree`` to ``obj`` with its two materials."""
    modifier = obj.modifiers.new(MODIFIER_NAME, "NODES")
    modifier.node_group = gaussians_group(int(degree))
    set_modifier_input(modifier, "Splat Material", splat_material)
    set_modifier_input(modifier, "Point Material", point_material)
    return modifier
