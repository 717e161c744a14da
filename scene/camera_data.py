"""Camera datablocks from ``convert.LensParams``, the camera object under the root, its background, and
the scene's render settings from the camera they were built for.

Every importer's cameras go through here (one per view, one animated over a video, a shot's plate
camera), so a camera reproduces its input image the same way whichever importer made it: sensor fit,
sensor width, lens and shift from ``convert.lens_params``, and the render resolution and pixel aspect
stored on the object (``da3_resolution``, ``da3_pixel_aspect``) for ``apply_render_settings``.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from .convert import LensParams

__all__ = [
    "add_background",
    "apply_render_settings",
    "new_camera_data",
    "new_camera_object",
    "set_frame_range",
    "store_render_size",
]


def new_camera_data(name: str, lens: LensParams, index: int = 0, extent: float = 1.0) -> bpy.types.Camera:
    """A camera datablock with view ``index`` of ``lens``; clipping and display size follow the scene's
    size ``extent``."""
    cam = bpy.data.cameras.new(name)
    cam.sensor_fit = lens.sensor_fit
    cam.sensor_width = lens.sensor_width
    cam.lens = float(lens.lens[index])
    cam.shift_x = float(lens.shift_x[index])
    cam.shift_y = float(lens.shift_y[index])
    cam.clip_start = max(1e-4, 0.001 * extent)
    cam.clip_end = max(100.0, 100.0 * extent)
    cam.display_size = 0.04 * extent
    return cam


def new_camera_object(
    name: str,
    data: bpy.types.Camera,
    collection: bpy.types.Collection,
    parent: bpy.types.Object | None,
    matrix: np.ndarray,
) -> bpy.types.Object:
    """The camera object in ``collection`` under ``parent`` with ``matrix (4, 4)`` as its basis (the
    camera-to-world matrix in the engine's world)."""
    obj = bpy.data.objects.new(name, data)
    collection.objects.link(obj)
    obj.parent = parent
    obj.matrix_basis = Matrix(np.asarray(matrix).tolist())
    return obj


def store_render_size(obj: bpy.types.Object, lens: LensParams, index: int = 0) -> None:
    """Remember the render resolution and pixel aspect of view ``index`` on the camera object."""
    obj["da3_resolution"] = [int(lens.width[index]), int(lens.height[index])]
    obj["da3_pixel_aspect"] = [float(lens.pixel_aspect_x[index]), float(lens.pixel_aspect_y[index])]


def add_background(data: bpy.types.Camera, source: bpy.types.Image | bpy.types.MovieClip | None) -> None:
    """Show an image or a movie clip behind the camera's view, filling the camera frame exactly (the
    frame is the image); nothing without a source."""
    if source is None:
        return
    data.show_background_images = True
    background = data.background_images.new()
    if isinstance(source, bpy.types.MovieClip):
        background.source = "MOVIE_CLIP"
        background.clip = source
        background.use_camera_clip = False
    else:
        background.image = source
    background.frame_method = "STRETCH"
    background.alpha = 1.0


def apply_render_settings(scene: bpy.types.Scene, camera: bpy.types.Object) -> None:
    """Make ``camera`` the scene camera and set the render resolution and pixel aspect it was built for."""
    render = scene.render
    width, height = camera.get("da3_resolution", (render.resolution_x, render.resolution_y))
    aspect_x, aspect_y = camera.get("da3_pixel_aspect", (1.0, 1.0))
    render.resolution_x, render.resolution_y = int(width), int(height)
    render.resolution_percentage = 100
    render.pixel_aspect_x, render.pixel_aspect_y = float(aspect_x), float(aspect_y)
    scene.camera = camera


def set_frame_range(scene: bpy.types.Scene, first: int, last: int) -> None:
    """The scene's frame range (end first: a start after the old end would move it)."""
    scene.frame_end = int(last)
    scene.frame_start = int(first)
    scene.frame_end = int(last)
