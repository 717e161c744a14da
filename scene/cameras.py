"""Cameras of a still reconstruction: one Blender camera per view, or one animated camera over a video's
frames, with exact intrinsics.

Matrices and lens values come from ``convert`` (the one OpenCV↔Blender conversion) and the datablocks
from ``camera_data`` (shared with the shot camera); this module decides which cameras a bundle's views
become. Cameras are children of the reconstruction root and carry the engine's coordinates (their
``matrix_basis`` is the camera-to-world matrix in the engine's world frame).
"""

from __future__ import annotations

import os

import bpy
import numpy as np

from . import animation
from .camera_data import add_background, new_camera_data, new_camera_object, store_render_size
from .convert import LensParams, blender_camera_matrices, lens_params

__all__ = ["create_animated_camera", "create_view_cameras", "view_image"]


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
        cam = new_camera_data(f"{prefix} {label}", lens, i, extent)
        add_background(cam, images[i] if images else None)
        obj = new_camera_object(cam.name, cam, collection, parent, matrices[i])
        fx, fy, cx, cy = K[i, 0, 0], K[i, 1, 1], K[i, 0, 2], K[i, 1, 2]
        obj["da3_view"] = i
        obj["da3_intrinsics"] = [float(fx), float(fy), float(cx), float(cy)]
        store_render_size(obj, lens, i)
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
    cam = new_camera_data(name, median, 0, extent)
    obj = new_camera_object(name, cam, collection, parent, matrices[0])
    animation.key_camera_path(obj, frames, matrices, "QUATERNION")
    if per_frame_lens:
        cam_fcurve = animation.fcurve_factory(cam)
        animation.set_keys(cam_fcurve, "lens", frames, lens.lens)
        animation.set_keys(cam_fcurve, "shift_x", frames, lens.shift_x)
        animation.set_keys(cam_fcurve, "shift_y", frames, lens.shift_y)
    obj["da3_frames"] = [int(frames[0]), int(frames[-1])]
    store_render_size(obj, median)
    return obj
