"""The shot camera: one camera keyed over the shot, with a steady lens, and the scene set up for the plate.

Poses come from ``convert.blender_camera_matrices`` (the one OpenCV↔Blender conversion) and are keyed
in bulk: location, and rotation either as quaternions with sign continuity (the default: no flips, no
gimbal lock) or as Blender ``XYZ`` Euler angles run through the Euler filter (no ±360° jumps). The lens
is one focal length for the whole shot (a robust estimate, not DA3's per-frame jitter) unless the user
asks for an animated focal length (zoom shots).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from ..core.shot import exact_fps
from ..engine.geometry.trajectory import (
    euler_filter,
    matrix_to_euler_xyz,
    quaternions_with_continuity,
    robust_focal,
)
from . import animation
from .convert import DEFAULT_SENSOR_WIDTH, blender_camera_matrices, lens_params

__all__ = ["ShotLens", "add_clip_background", "create_shot_camera", "set_scene_for_shot", "shot_lens"]


@dataclass(frozen=True)
class ShotLens:
    """The plate camera's constant intrinsics in plate pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int  # plate size in pixels
    height: int

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def shot_lens(K_plate: np.ndarray, plate_hw: tuple[int, int], shot: dict | None = None) -> ShotLens:
    """One lens for the shot: the bundle's robust focal (``shot["focal_px"]``, ``["focal_y_px"]``) when it
    has one, else the median over the frames; the principal point is the median over the frames.
    ``K_plate (N, 3, 3)`` in plate pixels."""
    K = np.asarray(K_plate, np.float64).reshape(-1, 3, 3)
    fx = (shot or {}).get("focal_px") or robust_focal(K[:, 0, 0])[0]
    fy = (shot or {}).get("focal_y_px") or robust_focal(K[:, 1, 1])[0]
    h, w = int(plate_hw[0]), int(plate_hw[1])
    return ShotLens(float(fx), float(fy), float(np.median(K[:, 0, 2])), float(np.median(K[:, 1, 2])), w, h)


def create_shot_camera(
    name: str,
    w2c: np.ndarray,
    lens: ShotLens,
    frames: np.ndarray,
    collection: bpy.types.Collection,
    parent: bpy.types.Object | None,
    *,
    rotation_mode: str = "QUATERNION",
    focal_per_frame: np.ndarray | None = None,
    sensor_width: float = DEFAULT_SENSOR_WIDTH,
    extent: float = 1.0,
) -> bpy.types.Object:
    """A camera keyed at scene ``frames (F,)`` with the poses ``w2c (F, 3, 4)`` (engine world, OpenCV).

    ``rotation_mode``: "QUATERNION" or "EULER" (Blender's XYZ, Euler-filtered). ``focal_per_frame (F,)``
    (fx in plate pixels) keys the lens too; otherwise the lens is ``lens.fx`` on every frame.
    """
    frames = np.asarray(frames, np.float64).reshape(-1)
    matrices = blender_camera_matrices(w2c)  # (F, 4, 4) camera-to-world in the engine's world
    params = lens_params(lens.K, np.array([[lens.height, lens.width]]), sensor_width)
    cam = bpy.data.cameras.new(name)
    cam.sensor_fit = params.sensor_fit
    cam.sensor_width = params.sensor_width
    cam.lens = float(params.lens[0])
    cam.shift_x, cam.shift_y = float(params.shift_x[0]), float(params.shift_y[0])
    cam.clip_start = max(1e-4, 0.001 * extent)
    cam.clip_end = max(100.0, 100.0 * extent)
    cam.display_size = 0.04 * extent
    obj = bpy.data.objects.new(name, cam)
    collection.objects.link(obj)
    obj.parent = parent
    obj.matrix_basis = Matrix(matrices[0].tolist())  # right before the animation is evaluated, too

    new_fcurve = animation.fcurve_factory(obj)
    animation.set_keys(new_fcurve, "location", frames, matrices[:, :3, 3])
    if rotation_mode == "EULER":
        obj.rotation_mode = "XYZ"
        eulers = euler_filter(matrix_to_euler_xyz(matrices[:, :3, :3]))
        animation.set_keys(new_fcurve, "rotation_euler", frames, eulers)
    elif rotation_mode == "QUATERNION":
        obj.rotation_mode = "QUATERNION"
        animation.set_keys(
            new_fcurve, "rotation_quaternion", frames, quaternions_with_continuity(matrices[:, :3, :3])
        )
    else:
        raise ValueError(f"rotation_mode must be QUATERNION or EULER, got {rotation_mode!r}")
    if focal_per_frame is not None:
        fx = np.asarray(focal_per_frame, np.float64).reshape(-1)
        animation.set_keys(animation.fcurve_factory(cam), "lens", frames, fx * sensor_width / lens.width)

    obj["da3_frames"] = [int(frames[0]), int(frames[-1])]
    obj["da3_resolution"] = [lens.width, lens.height]
    obj["da3_pixel_aspect"] = [float(params.pixel_aspect_x[0]), float(params.pixel_aspect_y[0])]
    obj["da3_intrinsics"] = [lens.fx, lens.fy, lens.cx, lens.cy]
    return obj


def add_clip_background(camera: bpy.types.Object, clip: bpy.types.MovieClip) -> None:
    """Show ``clip`` behind the camera's view, filling the camera frame (the frame is the plate)."""
    data = camera.data
    data.show_background_images = True
    background = data.background_images.new()
    background.source = "MOVIE_CLIP"
    background.clip = clip
    background.use_camera_clip = False
    background.frame_method = "STRETCH"
    background.alpha = 1.0


def set_scene_for_shot(
    scene: bpy.types.Scene, camera: bpy.types.Object, frame_range: tuple[int, int], fps: float | None
) -> None:
    """Scene camera, render size and pixel aspect of the plate, the shot's frame range and its frame rate
    (the exact rational: 29.97 becomes 30 / 1.001)."""
    render = scene.render
    width, height = camera["da3_resolution"]
    aspect_x, aspect_y = camera["da3_pixel_aspect"]
    render.resolution_x, render.resolution_y = int(width), int(height)
    render.resolution_percentage = 100
    render.pixel_aspect_x, render.pixel_aspect_y = float(aspect_x), float(aspect_y)
    if fps:
        render.fps, render.fps_base = exact_fps(fps)
    scene.frame_end = int(frame_range[1])  # end first: a start after the old end would move it
    scene.frame_start = int(frame_range[0])
    scene.frame_end = int(frame_range[1])
    scene.camera = camera
