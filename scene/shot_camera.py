"""The shot camera: one camera keyed over the shot, with a steady lens, and the scene set up for the plate.

Poses come from ``convert.blender_camera_matrices`` (the one OpenCV↔Blender conversion) and are keyed
in bulk by ``animation.key_camera_path`` (quaternions with sign continuity by default, or filtered
Euler angles); the datablocks come from ``camera_data``, shared with the still importer's cameras. The
lens is one focal length for the whole shot (a robust estimate, not DA3's per-frame jitter) unless the
user asks for an animated focal length (zoom shots).
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..engine.geometry.trajectory import robust_focal
from ..session.shot import exact_fps
from . import animation
from .camera_data import (
    apply_render_settings,
    new_camera_data,
    new_camera_object,
    set_frame_range,
    store_render_size,
)
from .convert import DEFAULT_SENSOR_WIDTH, blender_camera_matrices, lens_params

__all__ = ["ShotLens", "create_shot_camera", "set_scene_for_shot", "shot_lens"]


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
    cam = new_camera_data(name, params, 0, extent)
    obj = new_camera_object(
        name, cam, collection, parent, matrices[0]
    )  # right before the animation is evaluated
    animation.key_camera_path(obj, frames, matrices, rotation_mode)
    if focal_per_frame is not None:
        fx = np.asarray(focal_per_frame, np.float64).reshape(-1)
        animation.set_keys(animation.fcurve_factory(cam), "lens", frames, fx * sensor_width / lens.width)

    obj["da3_frames"] = [int(frames[0]), int(frames[-1])]
    store_render_size(obj, params)
    obj["da3_intrinsics"] = [lens.fx, lens.fy, lens.cx, lens.cy]
    return obj


def set_scene_for_shot(
    scene: bpy.types.Scene, camera: bpy.types.Object, frame_range: tuple[int, int], fps: float | None
) -> None:
    """Scene camera, render size and pixel aspect of the plate, the shot's frame range and its frame rate
    (the exact rational: 29.97 becomes 30 / 1.001)."""
    apply_render_settings(scene, camera)
    if fps:
        scene.render.fps, scene.render.fps_base = exact_fps(fps)
    set_frame_range(scene, *frame_range)
