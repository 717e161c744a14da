"""Materials for imported meshes, in Cycles and EEVEE alike.

- The fused mesh: one shared material, "DA3 Mesh Color", whose base colour is the mesh's byte colour
  attribute (Color Attribute node → Principled BSDF, matte): the surface takes the scene's lights, so its
  shape reads in any lighting.
- A per-view mesh: its own material that shows the view's processed photo through the mesh's UV map
  (Image Texture → Emission): a photo already holds its lighting, so it is emitted as it is, like the
  point cloud, and looks like the photo whatever the scene's lights.
"""

from __future__ import annotations

import bpy
import numpy as np

from .compat import ensure_node_tree
from .materials import material_to_build

__all__ = [
    "MESH_MATERIAL",
    "image_from_pixels",
    "mesh_color_material",
    "view_texture_material",
]

MESH_MATERIAL = "DA3 Mesh Color"
MESH_ROUGHNESS = 0.8  # matte, like most surfaces a photogrammetry mesh shows
_VERSION = 1


def mesh_color_material(color_attribute: str) -> bpy.types.Material:
    """The shared lit material whose base colour is the geometry's ``color_attribute`` (rebuilt in place
    when it is missing or older)."""
    mat, tree = material_to_build(MESH_MATERIAL, _VERSION)
    if tree is None:
        return mat
    colour = tree.nodes.new("ShaderNodeVertexColor")
    colour.layer_name = color_attribute
    colour.location = (-400, 0)
    bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
    bsdf.inputs["Roughness"].default_value = MESH_ROUGHNESS
    bsdf.location = (-150, 0)
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    out.location = (200, 0)
    tree.links.new(colour.outputs["Color"], bsdf.inputs["Base Color"])
    tree.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    return mat


def image_from_pixels(name: str, rgb: np.ndarray) -> bpy.types.Image:
    """A packed 8-bit sRGB image from ``rgb (H, W, 3)`` uint8 (row 0 = top), written in one
    ``foreach_set``; packed so it is saved inside the .blend file."""
    rgb = np.asarray(rgb, np.uint8)
    h, w = rgb.shape[:2]
    image = bpy.data.images.new(name, w, h, alpha=False)
    rgba = np.empty((h, w, 4), np.float32)
    np.multiply(rgb[::-1], np.float32(1.0 / 255.0), out=rgba[..., :3])  # Blender's rows go bottom-up
    rgba[..., 3] = 1.0
    image.pixels.foreach_set(rgba.ravel())
    image.pack()
    return image


def view_texture_material(name: str, image: bpy.types.Image, uv_map: str) -> bpy.types.Material:
    """A view's own material: ``image`` through the UV map ``uv_map``, emitted unchanged."""
    mat = bpy.data.materials.new(name)
    tree = ensure_node_tree(mat)
    tree.nodes.clear()
    uv = tree.nodes.new("ShaderNodeUVMap")
    uv.uv_map = uv_map
    uv.location = (-650, 0)
    tex = tree.nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Linear"
    tex.extension = "EXTEND"  # the border pixels' halves stay the border's colour, never the far side's
    tex.location = (-450, 0)
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0
    emit.location = (-150, 0)
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    out.location = (100, 0)
    tree.links.new(uv.outputs["UV"], tex.inputs["Vector"])
    tree.links.new(tex.outputs["Color"], emit.inputs["Color"])
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat
