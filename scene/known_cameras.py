"""Cameras the scene already has → the engine's known cameras: OpenCV ``K`` and world-to-camera poses in
the scene's own frame and units (``convert.intrinsics_from_blender`` and ``w2c_from_blender_matrices``,
the inverses of what the importer builds), and the image each camera sees.

A still camera's image is its first background image (a file as it is; a packed, generated or movie
image and a Movie Clip frame saved as a PNG), else a render from that camera with the scene's render
engine (``render_view``: one camera per call, so the operator renders one per timer tick and Blender
redraws between them). Each function raises ``CameraInputError`` with a message that says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import bpy
import numpy as np

from ..engine.io.inputs import IMAGE_EXTENSIONS
from .convert import intrinsics_from_blender, scale_intrinsics, w2c_from_blender_matrices

__all__ = [
    "CameraInputError",
    "CameraView",
    "camera_intrinsics",
    "camera_w2c",
    "check_perspective",
    "plan_views",
    "render_size",
    "render_view",
    "selected_cameras",
    "write_view_image",
]


class CameraInputError(ValueError):
    """A scene camera cannot be used as a view; the message says what to change."""


def selected_cameras(context: bpy.types.Context) -> list[bpy.types.Object]:
    """The selected camera objects of the view layer, by name (the views' order)."""
    cams = [o for o in context.view_layer.objects if o.type == "CAMERA" and o.select_get()]
    return sorted(cams, key=lambda o: o.name)


def render_size(scene: bpy.types.Scene) -> tuple[int, int]:
    """(width, height) in pixels of a render of ``scene`` (the resolution percentage applied)."""
    r = scene.render
    return (
        max(1, int(r.resolution_x * r.resolution_percentage / 100)),
        max(1, int(r.resolution_y * r.resolution_percentage / 100)),
    )


def check_perspective(obj: bpy.types.Object) -> None:
    if obj.data.type != "PERSP":
        raise CameraInputError(
            f"The camera '{obj.name}' is {obj.data.type.lower()}: only perspective cameras can be views. "
            "Set its type to Perspective, or leave it out of the selection."
        )


def camera_intrinsics(
    cam: bpy.types.Camera, scene: bpy.types.Scene, size: tuple[int, int] | None = None, **animated
) -> np.ndarray:
    """K ``(..., 3, 3)`` of ``cam`` in pixels of an image of ``size`` (width, height; default: the render
    size) showing the camera's frame; ``animated`` overrides lens, shift_x, shift_y with per-frame arrays."""
    r = scene.render
    w, h = render_size(scene)
    K = intrinsics_from_blender(
        animated.get("lens", cam.lens),
        cam.sensor_width,
        cam.sensor_height,
        cam.sensor_fit,
        animated.get("shift_x", cam.shift_x),
        animated.get("shift_y", cam.shift_y),
        w,
        h,
        r.pixel_aspect_x,
        r.pixel_aspect_y,
    )
    if size is not None and tuple(size) != (w, h):
        flat = K.reshape(-1, 3, 3)
        flat = scale_intrinsics(flat, np.tile([h, w], (len(flat), 1)), np.tile(size[::-1], (len(flat), 1)))
        K = flat.reshape(K.shape)
    return K


def camera_w2c(matrix_world) -> np.ndarray:
    """World-to-camera ``(4, 4)`` OpenCV of a camera object's world matrix (scale left out)."""
    w2c = np.eye(4)
    w2c[:3] = w2c_from_blender_matrices(np.asarray(matrix_world, np.float64)[None])[0]
    return w2c


# --- a still camera's image -------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraView:
    """One scene camera as a view: where its image comes from, and what it is."""

    camera: str  # the camera object's name
    kind: str  # "FILE" (used as it is), "IMAGE" (saved as PNG), "MOVIE" (a frame saved), "RENDER"
    path: str  # the image file the engine reads (to be written for all but FILE)
    size: tuple[int, int]  # (width, height) of that image
    source: str = ""  # the image or clip datablock's name (IMAGE, MOVIE)
    frame: int = 1  # 1-based movie frame (MOVIE)


def _background(cam: bpy.types.Camera):
    """The camera's first enabled background with an image or a clip, or None."""
    for bg in cam.background_images:
        if not getattr(bg, "show_background_image", True):
            continue
        if bg.source == "IMAGE" and bg.image is not None:
            return bg
        if bg.source == "MOVIE_CLIP" and (bg.clip is not None or bg.use_camera_clip):
            return bg
    return None


def _image_view(obj, bg, scene, folder: str, index: int) -> CameraView:
    image = bg.image
    out = os.path.join(folder, f"view_{index:03d}.png")
    if image.source == "FILE" and image.packed_file is None:
        path = os.path.abspath(bpy.path.abspath(image.filepath, library=image.library))
        if not os.path.isfile(path):
            raise CameraInputError(
                f"The background image of the camera '{obj.name}' is missing: {path}. Relink it, or remove "
                "the background to render the view instead."
            )
        if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS:
            return CameraView(obj.name, "FILE", path, tuple(image.size))
    if image.source in ("MOVIE", "SEQUENCE"):
        user = bg.image_user
        frame = scene.frame_current - user.frame_start + 1 + user.frame_offset
        return CameraView(obj.name, "MOVIE", out, tuple(image.size), image.name, int(frame))
    if image.size[0] == 0 or image.size[1] == 0:
        raise CameraInputError(
            f"The background image '{image.name}' of the camera '{obj.name}' has no pixels: reload it."
        )
    return CameraView(obj.name, "IMAGE", out, tuple(image.size), image.name)


def _clip_view(obj, bg, scene, folder: str, index: int) -> CameraView:
    clip = scene.active_clip if bg.use_camera_clip else bg.clip
    if clip is None:
        raise CameraInputError(
            f"The camera '{obj.name}' shows the scene's active clip, but the scene has none: pick its clip."
        )
    frame = scene.frame_current - clip.frame_start + 1 + clip.frame_offset
    path = os.path.abspath(bpy.path.abspath(clip.filepath, library=clip.library))
    if not os.path.isfile(path):
        raise CameraInputError(f"The movie of the clip '{clip.name}' is missing: {path}. Relink it.")
    out = os.path.join(folder, f"view_{index:03d}.png")
    return CameraView(obj.name, "MOVIE", out, tuple(clip.size), clip.name, int(frame))


def plan_views(scene: bpy.types.Scene, cameras: list[bpy.types.Object], folder: str) -> list[CameraView]:
    """Where each camera's image comes from (nothing is written yet; see ``write_view_image``)."""
    if not cameras:
        raise CameraInputError("No camera selected: select the scene cameras to reconstruct from.")
    views = []
    for i, obj in enumerate(cameras):
        check_perspective(obj)
        bg = _background(obj.data)
        if bg is None:
            out = os.path.join(folder, f"view_{i:03d}.png")
            views.append(CameraView(obj.name, "RENDER", out, render_size(scene)))
        elif bg.source == "IMAGE":
            views.append(_image_view(obj, bg, scene, folder, i))
        else:
            views.append(_clip_view(obj, bg, scene, folder, i))
    if any(v.kind == "RENDER" for v in views) and not _has_anything_to_render(scene):
        missing = ", ".join(v.camera for v in views if v.kind == "RENDER")
        raise CameraInputError(
            f"The camera(s) {missing} have no background image and the scene has nothing visible to render: "
            "give each camera a background image (Camera properties > Background Images), or add objects."
        )
    return views


def _has_anything_to_render(scene: bpy.types.Scene) -> bool:
    kinds = {"MESH", "CURVE", "SURFACE", "META", "FONT", "POINTCLOUD", "VOLUME", "CURVES", "GPENCIL"}
    return any(o.type in kinds and not o.hide_render for o in scene.objects)


def _save_pixels(pixels: np.ndarray, width: int, height: int, path: str) -> None:
    """RGBA floats ``(H·W·4,)`` (Blender's bottom-up rows, display values) → an 8-bit PNG at ``path``."""
    image = bpy.data.images.new("DA3 view", width, height, alpha=False)
    try:
        image.pixels.foreach_set(np.asarray(pixels, np.float32))
        image.filepath_raw = path
        image.file_format = "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)


def _movie_frame(image: bpy.types.Image, frame: int) -> np.ndarray:
    """Pixels of movie frame ``frame`` (1-based) of a movie ``image`` (an image texture reads it)."""
    texture = bpy.data.textures.new("DA3 frame", "IMAGE")
    try:
        texture.image = image
        user = texture.image_user
        user.frame_duration = max(image.frame_duration, frame)
        user.frame_start, user.frame_offset = 1, 0
        user.frame_current = frame
        texture.evaluate((0.5, 0.5, 0.0))  # loads the frame's buffer into image.pixels
        pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
        image.pixels.foreach_get(pixels)
        return pixels
    finally:
        bpy.data.textures.remove(texture)


def write_view_image(scene: bpy.types.Scene, view: CameraView) -> None:
    """Write the image of one view into its ``path`` (a render for ``RENDER``: blocks for that render)."""
    os.makedirs(os.path.dirname(view.path), exist_ok=True)
    if view.kind == "FILE":
        return
    if view.kind == "RENDER":
        render_view(scene, bpy.data.objects[view.camera], view.path)
        return
    w, h = view.size
    if view.kind == "IMAGE":
        image = bpy.data.images[view.source]
        pixels = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(pixels)
        _save_pixels(pixels, w, h, view.path)
        return
    image = bpy.data.images.get(view.source)
    if image is None or image.source not in ("MOVIE", "SEQUENCE"):  # a Movie Clip: read its file
        clip = bpy.data.movieclips[view.source]
        path = bpy.path.abspath(clip.filepath, library=clip.library)
        image = bpy.data.images.load(path, check_existing=True)
    _save_pixels(_movie_frame(image, view.frame), w, h, view.path)


def render_view(scene: bpy.types.Scene, camera: bpy.types.Object, path: str) -> None:
    """Render ``scene`` through ``camera`` with its own render engine into a PNG at ``path`` (the scene's
    camera, output path and file format are put back afterwards)."""
    r, fmt = scene.render, scene.render.image_settings
    saved = (scene.camera, r.filepath, fmt.file_format, fmt.color_mode, fmt.color_depth)
    saved_media = getattr(fmt, "media_type", None)
    try:
        scene.camera = camera
        if saved_media is not None:
            fmt.media_type = "IMAGE"
        fmt.file_format, fmt.color_mode, fmt.color_depth = "PNG", "RGB", "8"
        r.filepath = path
        bpy.ops.render.render(write_still=True, scene=scene.name)
    finally:
        scene.camera, r.filepath = saved[0], saved[1]
        if saved_media is not None:
            fmt.media_type = saved_media
        fmt.file_format, fmt.color_mode, fmt.color_depth = saved[2:]
    if not os.path.isfile(path):
        raise CameraInputError(f"Rendering the camera '{camera.name}' wrote no image ({path}).")
