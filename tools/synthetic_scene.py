"""A small procedural scene rendered with Cycles from known cameras (for the demo and README pictures).

Emissive, textured objects (so lights do not matter and renders are deterministic) on a checker floor,
seen by cameras on an arc. ``render_views`` returns each view's image file, its OpenCV intrinsics and
world-to-camera extrinsics (from Blender's own projection), and its z-depth from the Cycles depth pass.
Needs bpy (Blender 4.2–5.x as a module); used by tools/demo.py and tools/readme_images.py.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector


def _extension_compat():
    """The extension's Blender 4.x/5.x compatibility module (bpy only), loaded from its file."""
    path = Path(__file__).resolve().parents[1] / "scene" / "compat.py"
    spec = importlib.util.spec_from_file_location("_da3_tools_compat", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


ensure_node_tree = _extension_compat().ensure_node_tree

__all__ = ["RenderedView", "build_scene", "render_views"]


@dataclass
class RenderedView:
    path: str  # PNG file
    K: np.ndarray  # (3, 3) OpenCV intrinsics in pixels (continuous coordinates)
    w2c: np.ndarray  # (3, 4) world-to-camera, OpenCV axes, Blender world
    depth: np.ndarray | None  # (H, W) z-depth, or None when not asked for


def emissive_material(name: str, color, checker: float | None = None, dark=None) -> bpy.types.Material:
    """Unlit colour (lights do not matter), optionally a checker with ``checker`` squares per unit whose
    dark squares are ``dark`` (default: 35 % of the colour)."""
    mat = bpy.data.materials.new(name)
    tree = ensure_node_tree(mat)
    tree.nodes.clear()
    emit = tree.nodes.new("ShaderNodeEmission")
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    if checker is None:
        emit.inputs["Color"].default_value = (*color, 1.0)
        return mat
    coords = tree.nodes.new("ShaderNodeTexCoord")
    tex = tree.nodes.new("ShaderNodeTexChecker")
    tex.inputs["Scale"].default_value = checker
    tex.inputs["Color1"].default_value = (*color, 1.0)
    tex.inputs["Color2"].default_value = (*(dark or tuple(0.35 * c for c in color)), 1.0)
    tree.links.new(coords.outputs["Object"], tex.inputs["Vector"])
    tree.links.new(tex.outputs["Color"], emit.inputs["Color"])
    return mat


def add_mesh(primitive: str, material: bpy.types.Material, **kwargs) -> bpy.types.Object:
    getattr(bpy.ops.mesh, f"primitive_{primitive}_add")(**kwargs)
    obj = bpy.context.active_object
    obj.data.materials.append(material)
    return obj


def build_scene(scene: bpy.types.Scene, samples: int = 32) -> None:
    """Fill an empty scene: checker floor and wall, a cube, a sphere, a cone; Cycles on the CPU."""
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.seed = 0
    scene.cycles.use_denoising = False
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    world = bpy.data.worlds.new("Sky")
    ensure_node_tree(world).nodes["Background"].inputs["Color"].default_value = (0.55, 0.7, 0.9, 1.0)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 1.0
    scene.world = world
    add_mesh("plane", emissive_material("Floor", (0.85, 0.8, 0.7), 8.0), size=10.0)
    wall = add_mesh("cube", emissive_material("Wall", (0.8, 0.4, 0.3), 2.5), size=1.0, location=(0, 3.0, 1.5))
    wall.scale = (6.0, 0.3, 3.0)
    add_mesh("cube", emissive_material("Box", (0.2, 0.45, 0.85), 6.0), size=1.2, location=(-1.3, 0.6, 0.6))
    add_mesh(
        "uv_sphere", emissive_material("Ball", (0.95, 0.75, 0.15), 10.0), radius=0.7, location=(1.1, 0.2, 0.7)
    )
    add_mesh(
        "cone",
        emissive_material("Cone", (0.25, 0.75, 0.35), 12.0),
        radius1=0.5,
        depth=1.4,
        location=(0.0, -1.2, 0.7),
    )


def _look_at(obj: bpy.types.Object, target) -> None:
    direction = Vector(target) - obj.location
    obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()


def opencv_camera(scene: bpy.types.Scene, cam: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """K (3, 3) from Blender's own projection matrix, w2c (3, 4) from the camera's world matrix (OpenCV
    axes)."""
    w, h = scene.render.resolution_x, scene.render.resolution_y
    depsgraph = bpy.context.evaluated_depsgraph_get()
    P = np.array(cam.calc_matrix_camera(depsgraph, x=w, y=h, scale_x=1.0, scale_y=1.0))
    # ndc_x = P00 x/z_cv − P02 → u = W/2 (ndc_x + 1); v = H/2 (1 − ndc_y) with y_cv = −y, z_cv = −z.
    K = np.array(
        [[w / 2 * P[0, 0], 0, w / 2 * (1 - P[0, 2])], [0, h / 2 * P[1, 1], h / 2 * (1 + P[1, 2])], [0, 0, 1]]
    )
    world_to_cam = np.linalg.inv(np.array(cam.matrix_world))[:3, :]
    w2c = np.diag([1.0, -1.0, -1.0]) @ world_to_cam  # Blender camera axes → OpenCV axes
    return K, w2c


class DepthOutput:
    """A compositor File Output node writing the Z pass (planar camera depth; the background is 1e10) as
    one 32-bit EXR per rendered frame: ``path(frame)``. Works with the 4.x compositor (``scene.node_tree``,
    file slots) and the 5.x one (a compositing node group, ``directory``/``file_name``/output items)."""

    def __init__(self, scene: bpy.types.Scene, folder: str, prefix: str = "depth_") -> None:
        scene.view_layers[0].use_pass_z = True
        scene.render.use_compositing = True
        self.folder = folder
        if "compositing_node_group" in scene.bl_rna.properties:  # 5.x: the compositor is a node group
            tree = bpy.data.node_groups.new("Depth Output", "CompositorNodeTree")
            scene.compositing_node_group = tree
        else:
            scene.use_nodes = True
            tree = scene.node_tree
            tree.nodes.clear()
        layers = tree.nodes.new("CompositorNodeRLayers")
        self.node = tree.nodes.new("CompositorNodeOutputFile")
        self._items = "file_output_items" in self.node.bl_rna.properties
        if self._items:
            self.node.format.media_type = "IMAGE"  # before the file format (5.x)
            self.node.format.file_format, self.node.format.color_depth = "OPEN_EXR", "32"
            self.node.directory = folder
            self.node.file_output_items.new("FLOAT", "Depth")
            tree.links.new(layers.outputs["Depth"], self.node.inputs["Depth"])
        else:
            composite = tree.nodes.new("CompositorNodeComposite")
            tree.links.new(layers.outputs["Image"], composite.inputs["Image"])
            self.node.format.file_format, self.node.format.color_depth = "OPEN_EXR", "32"
            self.node.base_path = folder
            tree.links.new(layers.outputs["Depth"], self.node.inputs[0])
        self.set_prefix(prefix)

    def set_prefix(self, prefix: str) -> None:
        self.prefix = prefix
        if self._items:  # 5.x: "<file name><item>.exr", frame numbers only where the name has #
            self.node.file_name = f"{prefix}####_"
        else:
            self.node.file_slots[0].path = prefix

    def path(self, frame: int) -> str:
        name = f"{self.prefix}{frame:04d}_Depth.exr" if self._items else f"{self.prefix}{frame:04d}.exr"
        return os.path.join(self.folder, name)


def read_image(path: str) -> np.ndarray:
    """An image file as (H, W, C) float32, row 0 at the top (Blender's rows go bottom-up)."""
    image = bpy.data.images.load(path)
    try:
        pixels = np.empty(len(image.pixels), np.float32)
        image.pixels.foreach_get(pixels)
        return pixels.reshape(image.size[1], image.size[0], image.channels)[::-1].copy()
    finally:
        bpy.data.images.remove(image)


def render_views(
    scene: bpy.types.Scene,
    folder: str,
    count: int = 6,
    size: tuple[int, int] = (320, 240),
    *,
    depth: bool = False,
    lens: float = 30.0,
) -> list[RenderedView]:
    """Render ``count`` views from cameras on an arc around the scene into ``folder`` (PNG files)."""
    os.makedirs(folder, exist_ok=True)
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    output = DepthOutput(scene, folder) if depth else None
    views = []
    for i in range(count):
        angle = math.radians(-125 + 70 * i / max(1, count - 1))
        cam_data = bpy.data.cameras.new(f"View {i}")
        cam_data.lens = lens
        cam = bpy.data.objects.new(f"View {i}", cam_data)
        scene.collection.objects.link(cam)
        cam.location = (7.0 * math.cos(angle), 7.0 * math.sin(angle), 3.2 + 0.4 * math.sin(3 * angle))
        _look_at(cam, (0.0, 0.5, 0.8))
        bpy.context.view_layer.update()
        scene.camera = cam
        path = os.path.join(folder, f"view_{i:03d}.png")
        scene.render.filepath = path
        if output is not None:
            output.set_prefix(f"depth_{i:03d}_")
            scene.frame_set(1)
        bpy.ops.render.render(write_still=True)
        K, w2c = opencv_camera(scene, cam)
        z = read_image(output.path(1))[:, :, 0] if output is not None else None
        views.append(RenderedView(path, K, w2c, z))
    return views


def render_views_in(scene: bpy.types.Scene, folder: str, count: int = 6) -> list[RenderedView]:
    """Build the scene in ``scene`` and render ``count`` 320×240 views of it into ``folder``."""
    build_scene(scene)
    return render_views(scene, folder, count)
