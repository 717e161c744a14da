"""Small Cycles renders for ground-truth tests: a deterministic scene and a render → numpy helper."""

from __future__ import annotations

import os

import bpy
import numpy as np

from tools import synthetic_scene
from tools.synthetic_scene import add_mesh  # noqa: F401 (re-exported for the tests)


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
    """The demo scene's unlit material with high-contrast (near-black) dark squares: sharp edges make a
    half-pixel camera error visible in the ground-truth renders."""
    return synthetic_scene.emissive_material(name, color, checker, dark=(0.05, 0.05, 0.05))


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


def centroids(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the red, green and blue blobs ``(3, 2)``, in continuous pixel
    coordinates (pixel (u, v) covers [u, u+1) × [v, v+1))."""
    h, w = image.shape[:2]
    u, v = np.arange(w) + 0.5, np.arange(h) + 0.5
    out = []
    for channel in range(3):
        weight = image[:, :, channel] * (image[:, :, channel] > 0.05)
        total = weight.sum()
        out.append([(weight.sum(0) * u).sum() / total, (weight.sum(1) * v).sum() / total])
    return np.array(out)
