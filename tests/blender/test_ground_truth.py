"""Ground truth: cameras imported through our OpenCV → Blender conversion reproduce Cycles renders.

Two independent references:

1. **Renders of known Blender cameras.** A textured scene is rendered by three cameras set up with
   Blender's own controls (landscape and portrait frames, different lenses, shifted principal points,
   Blender's default AUTO sensor fit). Each camera's OpenCV intrinsics come from Blender's projection
   matrix (``calc_matrix_camera``) and its extrinsics from its world matrix; those go into a result bundle,
   the bundle is imported (root Empty, camera, render resolution) and the scene rendered again from the
   imported camera. Same renderer, same seed, same samples: identical cameras give identical pixels.

   Threshold: the mean absolute difference must stay below 0.002 (about half a grey level of 8-bit
   output). A camera that is off by half a pixel — the smallest error a user would see on a plate —
   already moves the mean difference of this checker scene to more than 0.01 (the test measures that
   too, so the threshold is shown to catch it), five times the threshold.

2. **Projection of known points.** Small emissive spheres at known 3D positions are rendered through
   cameras built from OpenCV K and w2c written by hand (fx ≠ fy would need a non-square pixel aspect and
   is covered in test_convert; here fx = fy with an off-centre principal point). Each sphere's centroid
   in the render must land within 0.15 px of ``K [R | t] X`` computed in numpy (continuous pixel
   coordinates: the centre of pixel (0, 0) is (0.5, 0.5)).
"""

from __future__ import annotations

import math

import bpy
import numpy as np
import pytest
from mathutils import Euler

from engine.formats.bundle import write_bundle
from tools.synthetic_scene import opencv_camera

from .render_utils import add_mesh, centroids, emissive_material, render, render_to, setup_cycles

MAD_THRESHOLD = 0.002
HALF_PIXEL_MIN_MAD = 0.01


def _textured_scene(scene):
    setup_cycles(scene, samples=16)
    add_mesh("plane", emissive_material("Floor", (0.9, 0.8, 0.6), checker=6.0), size=8.0)
    add_mesh(
        "cube", emissive_material("Red", (0.9, 0.15, 0.1), checker=10.0), size=1.0, location=(0.5, 1.0, 0.5)
    )
    add_mesh(
        "uv_sphere",
        emissive_material("Blue", (0.1, 0.3, 0.9), checker=8.0),
        radius=0.6,
        location=(-1.2, 0.2, 0.6),
    )
    add_mesh("cone", emissive_material("Green", (0.2, 0.8, 0.3), checker=12.0), location=(1.6, -1.0, 0.5))


def _import_camera(sub, tmp_path, name, K, w2c_blender_world, size_hw, image):
    """Write a one-view bundle in the engine's world frame and import its camera."""
    convert = sub("scene.convert")
    importer = sub("scene.importer")
    h, w = size_hw
    # X_blender = E · X_engine, so the camera sees the engine's world through w2c · E.
    w2c_engine = w2c_blender_world @ convert.ENGINE_TO_BLENDER
    arrays = {
        "images": (np.clip(image, 0, 1) * 255).astype(np.uint8)[None],
        "depth": np.ones((1, h, w), np.float32),
        "extrinsics": w2c_engine[None].astype(np.float32),
        "intrinsics": K[None].astype(np.float32),
    }
    folder = write_bundle(tmp_path / name, arrays, {"model_id": "ground-truth"})
    options = importer.ImportOptions(points=False, backgrounds=False, set_render=True)
    result = importer.import_bundle(bpy.context, folder, options)
    return result.cameras[0]


CAMERAS = [
    # (name, resolution (w, h), lens mm, sensor fit, shift (x, y), location, rotation in degrees)
    ("wide", (64, 48), 24.0, "AUTO", (0.0, 0.0), (6.0, -6.0, 4.5), (62.0, 0.0, 45.0)),
    ("shifted", (64, 48), 42.0, "AUTO", (0.12, -0.07), (-5.5, -7.0, 3.0), (72.0, 0.0, -35.0)),
    ("portrait", (48, 64), 30.0, "AUTO", (-0.06, 0.09), (0.5, -8.0, 6.0), (55.0, 0.0, 3.0)),
]


@pytest.mark.parametrize("name,size,lens,fit,shift,location,rotation", CAMERAS, ids=[c[0] for c in CAMERAS])
def test_imported_camera_reproduces_the_render(
    clean_scene, sub, tmp_path, name, size, lens, fit, shift, location, rotation
):
    scene = clean_scene
    _textured_scene(scene)
    cam_data = bpy.data.cameras.new(f"orig {name}")
    cam_data.lens, cam_data.sensor_fit = lens, fit
    cam_data.shift_x, cam_data.shift_y = shift
    original = bpy.data.objects.new(f"orig {name}", cam_data)
    scene.collection.objects.link(original)
    original.location = location
    original.rotation_euler = Euler([math.radians(a) for a in rotation])
    scene.render.resolution_x, scene.render.resolution_y = size
    bpy.context.view_layer.update()

    plate = render(scene, original, render_to(tmp_path, "plate"))
    K, w2c = opencv_camera(scene, original)
    h, w = size[1], size[0]

    imported = _import_camera(sub, tmp_path, "exact", K, w2c, (h, w), plate)
    assert (scene.render.resolution_x, scene.render.resolution_y) == size
    again = render(scene, imported, render_to(tmp_path, "again"))
    mad = float(np.abs(again - plate).mean())
    assert mad < MAD_THRESHOLD, f"{name}: mean absolute difference {mad:.4f}"

    K_off = K.copy()
    K_off[0, 2] += 0.5  # principal point half a pixel off
    shifted = _import_camera(sub, tmp_path, "half_pixel", K_off, w2c, (h, w), plate)
    off = render(scene, shifted, render_to(tmp_path, "off"))
    off_mad = float(np.abs(off - plate).mean())
    assert off_mad > HALF_PIXEL_MIN_MAD, f"{name}: half a pixel off gives only {off_mad:.4f}"


def test_imported_camera_projects_known_points_where_opencv_does(clean_scene, sub, tmp_path):
    scene = clean_scene
    setup_cycles(scene, samples=64)
    centres = np.array([[0.4, 0.2, 0.1], [-0.5, -0.3, 0.4], [0.1, 0.5, -0.4]])  # Blender world
    for centre, color in zip(centres, ((1, 0, 0), (0, 1, 0), (0, 0, 1)), strict=True):
        add_mesh(
            "uv_sphere",
            emissive_material(f"c{color}", color),
            radius=0.04,
            location=tuple(centre),
            segments=32,
        )
    w, h = 160, 120
    K = np.array([[150.0, 0.0, 86.25], [0.0, 150.0, 55.5], [0.0, 0.0, 1.0]])  # off-centre principal point
    # A camera 4 m away looking at the origin, in OpenCV terms: C, and R with rows = camera axes in world.
    C = np.array([1.0, -3.5, 1.5])
    z = -C / np.linalg.norm(C)
    x = np.cross(z, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    w2c = np.concatenate([R, (-R @ C)[:, None]], 1)
    cam = _import_camera(sub, tmp_path, "known", K, w2c, (h, w), np.zeros((h, w, 3)))
    image = render(scene, cam, render_to(tmp_path, "spheres"))
    cam_points = centres @ R.T + w2c[:, 3]
    expected = (cam_points @ K.T)[:, :2] / cam_points[:, 2:3]
    assert np.abs(centroids(image) - expected).max() < 0.15
