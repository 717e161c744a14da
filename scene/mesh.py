"""Triangle meshes (``engine.geometry.mesh.Mesh``) → Blender mesh objects: the fused mesh of a bundle
(``mesh.ply``) and one mesh per view made from its depth grid (``engine.geometry.view_mesh``).

Bulk writes only: positions through the ``position`` attribute, the corners' vertices through the
``.corner_vert`` attribute where Blender has it (4.x and 5.x: about 100× faster than
``loops.foreach_set('vertex_index')``), face starts with one ``foreach_set``; Blender then derives the
edges. Colours go to a byte colour attribute on the points (sRGB, what the file holds), UVs to a UV map.
Objects keep the engine's coordinates under the reconstruction root, like the point cloud.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import bpy
import numpy as np

from ..engine.formats.bundle import Bundle
from ..engine.formats.mesh_ply import read_mesh_ply
from ..engine.geometry.mesh import Mesh
from ..engine.geometry.view_mesh import view_mesh
from .mesh_material import image_from_pixels, mesh_color_material, view_texture_material

__all__ = [
    "COLOR_ATTRIBUTE",
    "MESH_FILE",
    "MESH_KIND_KEY",
    "UV_MAP",
    "create_fused_mesh",
    "create_mesh_object",
    "create_view_meshes",
    "fill_triangle_mesh",
    "import_mesh_file",
]

COLOR_ATTRIBUTE = "Color"  # BYTE_COLOR on the points, sRGB (the same name as the point cloud's colour)
UV_MAP = "UVMap"
MESH_FILE = "mesh.ply"  # the fused mesh in a bundle
MESH_KIND_KEY = "da3_mesh"  # "fused" or "view" on the objects this module makes


def fill_triangle_mesh(me: bpy.types.Mesh, mesh: Mesh) -> None:
    """Write ``mesh`` into the empty Blender mesh ``me``: vertices, triangles, the byte colour attribute
    ``COLOR_ATTRIBUTE`` (when the mesh has colours) and the UV map ``UV_MAP`` (when it has UVs).

    Raises ``ValueError`` for a face that names a vertex the mesh does not have (Blender would crash).
    """
    nv, nf = mesh.num_vertices, mesh.num_faces
    corners = mesh.faces.ravel()
    if nf and (int(corners.min()) < 0 or int(corners.max()) >= nv):
        raise ValueError(f"the mesh's faces name vertices outside 0..{nv - 1}")
    me.vertices.add(nv)
    me.attributes["position"].data.foreach_set("vector", mesh.vertices.ravel())
    me.loops.add(3 * nf)
    corner_vert = me.attributes.get(".corner_vert")
    if corner_vert is not None:
        corner_vert.data.foreach_set("value", corners)
    else:
        me.loops.foreach_set("vertex_index", corners)
    me.polygons.add(nf)
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * nf, 3, dtype=np.int32))
    if corner_vert is None:  # face sizes are kept apart from the offsets only before 4.0
        me.polygons.foreach_set("loop_total", np.full(nf, 3, np.int32))
    if mesh.colors is not None:
        rgba = np.empty((nv, 4), np.float32)
        np.multiply(mesh.colors, np.float32(1.0 / 255.0), out=rgba[:, :3])
        rgba[:, 3] = 1.0
        color = me.color_attributes.new(COLOR_ATTRIBUTE, "BYTE_COLOR", "POINT")
        color.data.foreach_set("color_srgb", rgba.ravel())  # bytes as they are: sRGB in, sRGB stored
        me.color_attributes.active_color = color
        me.color_attributes.render_color_index = me.color_attributes.active_color_index
    if mesh.uv is not None:
        uv = me.uv_layers.new(name=UV_MAP)
        uv.uv.foreach_set("vector", mesh.uv[mesh.faces].ravel())  # one UV per face corner
    me.update(calc_edges=True)
    if "sharp_face" in me.attributes:  # smooth shading: the faces sample a smooth surface
        me.attributes.remove(me.attributes["sharp_face"])


def create_mesh_object(
    name: str,
    mesh: Mesh,
    collection: bpy.types.Collection,
    *,
    parent: bpy.types.Object | None = None,
    material: bpy.types.Material | None = None,
    kind: str = "fused",
) -> bpy.types.Object:
    """A mesh object ``name`` in ``collection`` under ``parent`` holding ``mesh``, with ``material``."""
    me = bpy.data.meshes.new(name)
    fill_triangle_mesh(me, mesh)
    if material is not None:
        me.materials.append(material)
    obj = bpy.data.objects.new(name, me)
    collection.objects.link(obj)
    obj.parent = parent
    obj[MESH_KIND_KEY] = kind
    return obj


def create_fused_mesh(
    name: str, mesh: Mesh, collection: bpy.types.Collection, *, parent: bpy.types.Object | None = None
) -> bpy.types.Object:
    """The fused mesh object: its vertex colours shown by the shared lit material (``mesh_color_material``)."""
    material = mesh_color_material(COLOR_ATTRIBUTE) if mesh.colors is not None else None
    return create_mesh_object(name, mesh, collection, parent=parent, material=material, kind="fused")


def import_mesh_file(
    path: str | os.PathLike,
    name: str,
    collection: bpy.types.Collection,
    *,
    parent: bpy.types.Object | None = None,
) -> bpy.types.Object:
    """Read a triangle PLY (``formats.mesh_ply``, memory-mapped) and make its fused mesh object."""
    return create_fused_mesh(name, read_mesh_ply(path, mapped=True), collection, parent=parent)


def create_view_meshes(
    prefix: str,
    bundle: Bundle,
    collection: bpy.types.Collection,
    *,
    parent: bpy.types.Object | None = None,
    names: Sequence[str] | None = None,
    stride: int = 1,
    conf_percentile: float = 10.0,
) -> list[bpy.types.Object]:
    """One mesh object per view of a still bundle, in ``collection`` under ``parent``: the view's depth
    grid (``view_mesh``: cut at depth steps, sky and the least confident pixels left out), textured with
    its processed image. The next view's mesh is computed in a worker thread while this one is built.

    Raises ``ValueError`` for a bundle without depth or images (a shot bundle keeps neither).
    """
    if bundle.depth is None or bundle.images is None:
        raise ValueError(
            f"{bundle.folder} holds no depth maps and images (a tracked shot keeps only its cameras and "
            "points), so there are no per-view meshes to make: reconstruct the frames as images instead"
        )
    count = bundle.num_views

    def compute(i: int) -> Mesh:
        return view_mesh(
            bundle.depth[i],
            bundle.intrinsics[i],
            bundle.extrinsics[i],
            image=bundle.images[i],
            conf=bundle.conf[i] if bundle.conf is not None else None,
            sky=bundle.sky[i] if bundle.sky is not None else None,
            conf_percentile=conf_percentile,
            stride=stride,
        )

    objects = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(compute, 0) if count else None
        for i in range(count):
            mesh = pending.result()
            pending = pool.submit(compute, i + 1) if i + 1 < count else None
            label = names[i] if names else f"{i:03d}"
            image = image_from_pixels(f"{prefix} {label}", bundle.images[i])
            material = view_texture_material(f"{prefix} {label}", image, UV_MAP)
            obj = create_mesh_object(
                f"{prefix} {label}", mesh, collection, parent=parent, material=material, kind="view"
            )
            obj["da3_view"] = i
            objects.append(obj)
    return objects
