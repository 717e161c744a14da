"""Small Cycles renders for ground-truth tests: a deterministic scene and a render → numpy helper."""

from __future__ import annotations

import os

import bpy
import numpy as np


def setup_cycles(scene: bpy.types.Scene, samples: int = 16) -> None:
    """CPU Cycles, fixed seed, no denoiser, 'Standard' view transform: the same camera gives the same
    pixels every time, so two renders differ only where the cameras differ."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.seed = 0
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    scene.render.film_transparent = False
    world = bpy.data.worlds.new("Black")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    scene.world = world


def emissive_material(name: str, color=(1.0, 1.0, 1.0), checker: float | None = None) -> bpy.types.Material:
    """Unlit colour (lights do not matter), optionally a checker pattern with ``checker`` squares per unit."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    tree = mat.node_tree
    tree.nodes.clear()
    emit = tree.nodes.new("ShaderNodeEmission")
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    if checker is None:
        emit.inputs["Color"].default_value = (*color, 1.0)
    else:
        tex = tree.nodes.new("ShaderNodeTexChecker")
        tex.inputs["Scale"].default_value = checker
        tex.inputs["Color1"].default_value = (*color, 1.0)
        tex.inputs["Color2"].default_value = (0.05, 0.05, 0.05, 1.0)
        coords = tree.nodes.new("ShaderNodeTexCoord")
        tree.links.new(coords.outputs["Object"], tex.inputs["Vector"])
        tree.links.new(tex.outputs["Color"], emit.inputs["Color"])
    return mat


def add_mesh(primitive: str, material: bpy.types.Material, **kwargs) -> bpy.types.Object:
    getattr(bpy.ops.mesh, f"primitive_{primitive}_add")(**kwargs)
    obj = bpy.context.active_object
    obj.data.materials.append(material)
    return obj


def render(scene: bpy.types.Scene, camera: bpy.types.Object, path: str) -> np.ndarray:
    """Render through ``camera`` to ``path`` (PNG) and return it as (H, W, 3) float in [0, 1], row 0 = top."""
    scene.camera = camera
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(path)
    try:
        w, h = image.size
        pixels = np.empty(w * h * image.channels, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(h, w, -1)[::-1, :, :3]


def render_to(tmp_path: os.PathLike, name: str) -> str:
    return os.path.join(os.fspath(tmp_path), f"{name}.png")
