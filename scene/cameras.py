"""Cameras: one Blender camera per view, or one animated camera for a shot, with exact intrinsics.

Matrices and lens values come from ``convert`` (the one OpenCV↔Blender conversion); this module only
builds datablocks. Cameras are children of the reconstruction root and carry the engine's coordinates
(their ``matrix_basis`` is the camera-to-world matrix in the engine's world frame).
"""

from __future__ import annotations

import os

import bpy
import numpy as np
from mathutils import Matrix

from ..engine.geometry.cameras import matrix_to_quaternion_wxyz
from . import animation
from .convert import LensParams, blender_camera_matrices, continuous_quaternions, lens_params

__all__ = ["apply_render_settings", "create_animated_camera", "create_view_cameras", "view_image"]


def _camera_data(name: str, lens: LensParams, i: int, extent: float) -> bpy.types.Camera:
    cam = bpy.data.cameras.new(name)
    cam.sensor_fit = lens.sensor_fit
    cam.sensor_width = lens.sensor_width
    cam.lens = float(lens.lens[i])
    cam.shift_x = float(lens.shift_x[i])
    cam.shift_y = float(lens.shift_y[i])
    cam.clip_start = max(1e-4, 0.001 * extent)
    cam.clip_end = max(100.0, 100.0 * extent)
    cam.display_size = 0.04 * extent
    return cam


def view_image(name: str, source: str, pixels: np.ndarray | None) -> bpy.types.Image | None:
    """The image of a view: its source file when it still exists, else the processed pixels (packed)."""
    if source and os.path.isfile(source):
        try:
            return bpy.data.images.load(source, check_existing=True)
        except RuntimeError:  # a format Blender cannot read: fall back to the pixels
            pass
    if pixels is None:
        return None
    h, w = pixels.shape[:2]
    image = bpy.data.images.new(name, w, h, alpha=False)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = pixels[::-1] / np.float32(255.0)  # Blender rows go bottom-up
    image.pixels.foreach_set(rgba.ravel())
    image.pack()
    return image


def _set_background(cam: bpy.types.Camera, image: bpy.types.Image | None) -> None:
    if image is None:
        return
    cam.show_background_images = True
    background = cam.background_images.new()
    background.image = image
    background.frame_method = "STRETCH"  # the camera frame is the image: fill it exactly
    background.alpha = 1.0


def create_view_cameras(
    prefix: str,
    w2c: np.ndarray,
    K: np.ndarray,
    sizes: np.ndarray,
    collection: bpy.types.Collection,
    parent: bpy.types.Object | None,
    *,
    extent: float = 1.0,
    images: list[bpy.types.Image | None] | None = None,
    names: list[str] | None = None,
) -> list[bpy.types.Object]:
    """One camera object per view. w2c (N, 3, 4) OpenCV; K (N, 3, 3) in pixels of images of ``sizes``
    (N, 2) (height, width); ``images`` become the camera backgrounds."""
    matrices = blender_camera_matrices(w2c)  # (N, 4, 4)
    lens = lens_params(K, sizes)
    cameras = []
    for i in range(len(matrices)):
        label = names[i] if names else f"{i:03d}"
        cam = _camera_data(f"{prefix} {label}", lens, i, extent)
        _set_background(cam, images[i] if images else None)
        obj = bpy.data.objects.new(cam.name, cam)
        collection.objects.link(obj)
        obj.parent = parent
        obj.matrix_basis = Matrix(matrices[i].tolist())
        fx, fy, cx, cy = K[i, 0, 0], K[i, 1, 1], K[i, 0, 2], K[i, 1, 2]
        obj["da3_view"] = i
        obj["da3_intrinsics"] = [float(fx), float(fy), float(cx), float(cy)]
        obj["da3_resolution"] = [int(lens.width[i]), int(lens.height[i])]
        obj["da3_pixel_aspect"] = [float(lens.pixel_aspect_x[i]), float(lens.pixel_aspect_y[i])]
        cameras.append(obj)
    return cameras


def create_animated_camera(
    name: str,
    w2c: np.ndarray,
    K: np.ndarray,
    sizes: np.ndarray,
    frames: np.ndarray,
    collection: bpy.types.Collection,
    parent: bpy.types.Object | None,
    *,
    extent: float = 1.0,
    per_frame_lens: bool = False,
) -> bpy.types.Object:
    """One camera keyed at ``frames (F,)`` with location and quaternion keys (sign continuity fixed).

    The lens is the median over frames (a steady focal length, what a solve should give) unless
    ``per_frame_lens``, which also keys lens and shift per frame.
    """
    matrices = blender_camera_matrices(w2c)  # (F, 4, 4)
    lens = lens_params(K, sizes)
    median = LensParams(
        lens=np.array([np.median(lens.lens)]),
        sensor_width=lens.sensor_width,
        shift_x=np.array([np.median(lens.shift_x)]),
        shift_y=np.array([np.median(lens.shift_y)]),
        width=lens.width[:1],
        height=lens.height[:1],
        pixel_aspect_x=lens.pixel_aspect_x[:1],
        pixel_aspect_y=lens.pixel_aspect_y[:1],
    )
    cam = _camera_data(name, median, 0, extent)
    obj = bpy.data.objects.new(name, cam)
    collection.objects.link(obj)
    obj.parent = parent
    obj.rotation_mode = "QUATERNION"
    obj.matrix_basis = Matrix(matrices[0].tolist())
    quats = continuous_quaternions(matrix_to_quaternion_wxyz(matrices[:, :3, :3]))
    new_fcurve = animation.fcurve_factory(obj)
    animation.set_keys(new_fcurve, "location", frames, matrices[:, :3, 3])
    animation.set_keys(new_fcurve, "rotation_quaternion", frames, quats)
    if per_frame_lens:
        cam_fcurve = animation.fcurve_factory(cam)
        animation.set_keys(cam_fcurve, "lens", frames, lens.lens)
        animation.set_keys(cam_fcurve, "shift_x", frames, lens.shift_x)
        animation.set_keys(cam_fcurve, "shift_y", frames, lens.shift_y)
    obj["da3_frames"] = [int(frames[0]), int(frames[-1])]
    obj["da3_resolution"] = [int(lens.width[0]), int(lens.height[0])]
    obj["da3_pixel_aspect"] = [float(median.pixel_aspect_x[0]), float(median.pixel_aspect_y[0])]
    return obj


def apply_render_settings(scene: bpy.types.Scene, camera: bpy.types.Object) -> None:
    """Make ``camera`` the scene camera and set the render resolution and pixel aspect it was built for."""
    render = scene.render
    width, height = camera.get("da3_resolution", (render.resolution_x, render.resolution_y))
    aspect_x, aspect_y = camera.get("da3_pixel_aspect", (1.0, 1.0))
    render.resolution_x, render.resolution_y = int(width), int(height)
    render.resolution_percentage = 100
    render.pixel_aspect_x, render.pixel_aspect_y = float(aspect_x), float(aspect_y)
    scene.camera = camera
