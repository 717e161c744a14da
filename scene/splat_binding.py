"""Splats that follow a mesh: SuGaR's refined Gaussians bound to the faces of its refined mesh.

``bind_to_mesh`` finds each splat's nearest face with Blender's own BVH (a Sample Nearest node evaluated
once on a scratch object: C++, threaded, no per-splat Python), binds it in numpy
(``engine.geometry.splat_binding``: face, barycentric foot, height, rotation in the face frame) and adds
the "DA3 Bind to Mesh" modifier before the splat modifier. That group reads the mesh object's evaluated
geometry (edits, sculpting, shape keys, armatures included), rebuilds each face's frame and writes the
splat centres and the ``rotation`` attribute the splat modifier draws from, so the splats move with
their faces. The stored splat values stay as imported (the export writes those).
"""

from __future__ import annotations

import bpy
import numpy as np

from ..engine.geometry.splat_binding import bind_splats
from .compat import modifier_input_value, set_modifier_input
from .node_math import NodeMath
from .splat_nodes import ROTATION_ATTRIBUTE

__all__ = ["BIND_GROUP", "BIND_MODIFIER", "bind_to_mesh", "bound_mesh", "nearest_faces"]

BIND_GROUP = "DA3 Bind to Mesh"
BIND_MODIFIER = "DA3 Bind to Mesh"
FACE, BARY, HEIGHT, LOCAL_ROTATION = "bind_face", "bind_bary", "bind_height", "bind_rotation"
_VERSION = 1


def _named(g: NodeMath, data_type: str, name: str):
    node = g.node("GeometryNodeInputNamedAttribute", data_type=data_type)
    node.inputs["Name"].default_value = name
    return node.outputs["Attribute"]


def _new_group(name: str) -> bpy.types.GeometryNodeTree:
    group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Mesh", in_out="INPUT", socket_type="NodeSocketObject")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    return group


def _mesh_geometry(g: NodeMath, g_in):
    info = g.node("GeometryNodeObjectInfo", transform_space="RELATIVE")
    g.feed(info.inputs["Object"], g_in.outputs["Mesh"])
    return info.outputs["Geometry"]


def bind_group() -> bpy.types.GeometryNodeTree:
    """The shared group that places bound splats on the mesh given as its "Mesh" input."""
    group = bpy.data.node_groups.get(BIND_GROUP)
    if group is not None and group.get("da3_version") == _VERSION:
        return group
    if group is not None:
        bpy.data.node_groups.remove(group)
    group = _new_group(BIND_GROUP)
    group["da3_version"] = _VERSION
    g = NodeMath(group, x=-1400.0)
    g_in, g_out = g.node("NodeGroupInput"), g.node("NodeGroupOutput")
    mesh = _mesh_geometry(g, g_in)
    first = g.mul(_named(g, "INT", FACE), 3.0)
    corners = []
    for k in range(3):
        sample = g.node("GeometryNodeSampleIndex", data_type="FLOAT_VECTOR", domain="CORNER")
        g.feed(sample.inputs["Geometry"], mesh)
        g.feed(sample.inputs["Value"], g.node("GeometryNodeInputPosition").outputs[0])
        g.feed(sample.inputs["Index"], g.add(first, float(k)))
        corners.append(sample.outputs[0])
    p0, p1, p2 = corners
    a, b = g.vmath("SUBTRACT", p1, p0), g.vmath("SUBTRACT", p2, p0)
    normal = g.vmath("NORMALIZE", g.vmath("CROSS_PRODUCT", a, b))
    b0, b1, b2 = g.separate(_named(g, "FLOAT_VECTOR", BARY))
    foot = g.vtotal([g.scale(p0, b0), g.scale(p1, b1), g.scale(p2, b2)])
    position = g.vadd(foot, g.scale(normal, _named(g, "FLOAT", HEIGHT)))
    frame = g.node("FunctionNodeAxesToRotation", primary_axis="Z", secondary_axis="X")
    g.feed(frame.inputs["Primary Axis"], normal)
    g.feed(frame.inputs["Secondary Axis"], a)
    turned = g.node("FunctionNodeRotateRotation", rotation_space="GLOBAL")
    g.feed(turned.inputs["Rotation"], _named(g, "QUATERNION", LOCAL_ROTATION))
    g.feed(turned.inputs["Rotate By"], frame.outputs[0])
    moved = g.node("GeometryNodeSetPosition")
    g.feed(moved.inputs["Geometry"], g_in.outputs["Geometry"])
    g.feed(moved.inputs["Position"], position)
    store = g.node("GeometryNodeStoreNamedAttribute", data_type="QUATERNION", domain="POINT")
    store.inputs["Name"].default_value = ROTATION_ATTRIBUTE
    g.feed(store.inputs["Geometry"], moved.outputs["Geometry"])
    g.feed(store.inputs["Value"], turned.outputs[0])
    g.feed(g_out.inputs[0], store.outputs["Geometry"])
    return group


def _mesh_arrays(mesh_obj: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64 in the object's space, triangles (F, 3)); ``ValueError`` unless every face
    is a triangle whose corners start at 3·f (how the importer builds it)."""
    me = mesh_obj.data
    nv, nf, nc = len(me.vertices), len(me.polygons), len(me.loops)
    if nf == 0 or nc != 3 * nf:
        raise ValueError(f"'{mesh_obj.name}' is not a triangle mesh: triangulate it (Ctrl+T) to bind splats")
    starts = np.empty(nf, np.int32)
    me.polygons.foreach_get("loop_start", starts)
    if not np.array_equal(starts, np.arange(0, 3 * nf, 3, dtype=np.int32)):
        raise ValueError(f"'{mesh_obj.name}' has reordered faces: triangulate it (Ctrl+T) to bind splats")
    verts = np.empty(nv * 3, np.float32)
    me.attributes["position"].data.foreach_get("vector", verts)
    corners = np.empty(nc, np.int32)
    me.loops.foreach_get("vertex_index", corners)
    return verts.reshape(-1, 3).astype(np.float64), corners.reshape(-1, 3)


def nearest_faces(
    context: bpy.types.Context, points: np.ndarray, mesh_obj: bpy.types.Object, space
) -> np.ndarray:
    """(M,) the index of the face of ``mesh_obj`` nearest to each of ``points`` (M, 3), given in the space
    whose world matrix is ``space``: a Sample Nearest node on a scratch object, evaluated once."""
    scratch_mesh = bpy.data.meshes.new("DA3 bind scratch")
    scratch_mesh.vertices.add(len(points))
    scratch_mesh.attributes["position"].data.foreach_set(
        "vector", np.ascontiguousarray(points, np.float32).ravel()
    )
    scratch = bpy.data.objects.new("DA3 bind scratch", scratch_mesh)
    group = _new_group("DA3 bind scratch")
    try:
        context.scene.collection.objects.link(scratch)
        scratch.matrix_world = space
        g = NodeMath(group)
        g_in, g_out = g.node("NodeGroupInput"), g.node("NodeGroupOutput")
        nearest = g.node("GeometryNodeSampleNearest", domain="FACE")
        g.feed(nearest.inputs["Geometry"], _mesh_geometry(g, g_in))
        store = g.node("GeometryNodeStoreNamedAttribute", data_type="INT", domain="POINT")
        store.inputs["Name"].default_value = FACE
        g.feed(store.inputs["Geometry"], g_in.outputs["Geometry"])
        g.feed(store.inputs["Value"], nearest.outputs[0])
        g.feed(g_out.inputs[0], store.outputs["Geometry"])
        modifier = scratch.modifiers.new("bind", "NODES")
        modifier.node_group = group
        set_modifier_input(modifier, "Mesh", mesh_obj)
        depsgraph = context.evaluated_depsgraph_get()
        depsgraph.update()
        evaluated = scratch.evaluated_get(depsgraph).data
        face = np.empty(len(points), np.int32)
        evaluated.attributes[FACE].data.foreach_get("value", face)
        return face
    finally:
        bpy.data.objects.remove(scratch)
        bpy.data.meshes.remove(scratch_mesh)
        bpy.data.node_groups.remove(group)


def bind_to_mesh(context: bpy.types.Context, splat_obj: bpy.types.Object, mesh_obj: bpy.types.Object) -> int:
    """Bind every splat of ``splat_obj`` to its nearest face of ``mesh_obj`` (in their current places) and
    add the modifier that makes them follow it; returns the number of splats bound."""
    context.view_layer.update()
    splat_world = np.asarray(splat_obj.matrix_world, np.float64)
    mesh_to_splat = np.linalg.solve(splat_world, np.asarray(mesh_obj.matrix_world, np.float64))
    verts, faces = _mesh_arrays(mesh_obj)
    verts = verts @ mesh_to_splat[:3, :3].T + mesh_to_splat[:3, 3]
    me = splat_obj.data
    if splat_obj.mode == "EDIT":
        splat_obj.update_from_editmode()
    count = len(me.vertices)
    means, quats = np.empty(count * 3, np.float32), np.empty(count * 4, np.float32)
    me.attributes["position"].data.foreach_get("vector", means)
    me.attributes[ROTATION_ATTRIBUTE].data.foreach_get("value", quats)  # only what the binding needs
    means, quats = means.reshape(-1, 3), quats.reshape(-1, 4)
    face = nearest_faces(context, means, mesh_obj, splat_obj.matrix_world)
    binding = bind_splats(verts, faces, face, means, quats)
    for name in (FACE, BARY, HEIGHT, LOCAL_ROTATION):
        if name in me.attributes:
            me.attributes.remove(me.attributes[name])
    me.attributes.new(FACE, "INT", "POINT").data.foreach_set("value", binding.face)
    me.attributes.new(BARY, "FLOAT_VECTOR", "POINT").data.foreach_set("vector", binding.bary.ravel())
    me.attributes.new(HEIGHT, "FLOAT", "POINT").data.foreach_set("value", binding.height)
    me.attributes.new(LOCAL_ROTATION, "QUATERNION", "POINT").data.foreach_set(
        "value", binding.rotation.ravel()
    )
    modifier = splat_obj.modifiers.get(BIND_MODIFIER) or splat_obj.modifiers.new(BIND_MODIFIER, "NODES")
    modifier.node_group = bind_group()
    set_modifier_input(modifier, "Mesh", mesh_obj)
    splat_obj.modifiers.move(splat_obj.modifiers.find(BIND_MODIFIER), 0)  # the splat modifier draws from it
    splat_obj["da3_bound_to"] = mesh_obj.name
    me.update()
    return count


def bound_mesh(splat_obj: bpy.types.Object) -> bpy.types.Object | None:
    """The mesh object ``splat_obj``'s splats follow, or None."""
    modifier = splat_obj.modifiers.get(BIND_MODIFIER) if splat_obj is not None else None
    return None if modifier is None else modifier_input_value(modifier, "Mesh")
