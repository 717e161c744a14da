"""The OpenCV ↔ Blender conversion against Blender's own camera projection (``calc_matrix_camera``)."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
from mathutils import Matrix

CASES = [
    # (fx, fy, cx, cy, W, H)
    (400.0, 400.0, 320.0, 240.0, 640, 480),  # DA3: principal point at the image centre
    (500.0, 500.0, 301.5, 262.25, 640, 480),  # off-centre principal point
    (300.0, 300.0, 250.0, 330.0, 480, 640),  # portrait
    (420.0, 380.0, 330.0, 230.0, 640, 480),  # fx > fy: non-square pixels
    (350.0, 410.0, 240.0, 330.0, 480, 640),  # fy > fx, portrait
]


def _projection(scene, cam_obj, w, h):
    depsgraph = bpy.context.evaluated_depsgraph_get()
    render = scene.render
    return np.array(
        cam_obj.calc_matrix_camera(
            depsgraph, x=w, y=h, scale_x=render.pixel_aspect_x, scale_y=render.pixel_aspect_y
        )
    )


@pytest.mark.parametrize("fx,fy,cx,cy,w,h", CASES)
def test_lens_params_reproduce_the_pinhole(clean_scene, sub, fx, fy, cx, cy, w, h):
    convert = sub("scene.convert")
    cameras, camera_data = sub("scene.cameras"), sub("scene.camera_data")
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    objs = cameras.create_view_cameras(
        "t", np.eye(3, 4)[None], K[None], np.array([[h, w]]), clean_scene.collection, None
    )
    camera_data.apply_render_settings(clean_scene, objs[0])
    P = _projection(clean_scene, objs[0], w, h)
    # Project camera-space points with Blender's matrix and with K; compare in pixels.
    rng = np.random.default_rng(0)
    cv = np.column_stack([rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50), rng.uniform(2, 6, 50)])
    blender_cam = cv * [1, -1, -1]
    clip = np.column_stack([blender_cam, np.ones(50)]) @ P.T
    ndc = clip[:, :2] / clip[:, 3:4]
    uv_blender = np.column_stack([(ndc[:, 0] + 1) * w / 2, (1 - ndc[:, 1]) * h / 2])
    uv_opencv = (cv @ K.T)[:, :2] / cv[:, 2:3]
    assert np.abs(uv_blender - uv_opencv).max() < 1e-3
    # And back: the Blender settings give the same K.
    cam = objs[0].data
    r = clean_scene.render
    back = convert.intrinsics_from_lens(
        cam.lens, cam.sensor_width, cam.shift_x, cam.shift_y, w, h, r.pixel_aspect_x, r.pixel_aspect_y
    )
    assert np.allclose(back, K, atol=1e-3)


def test_extrinsics_round_trip_and_axes(sub):
    convert = sub("scene.convert")
    rng = np.random.default_rng(1)
    q = rng.normal(size=(20, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rot = sub("engine.geometry.cameras").quaternion_wxyz_to_matrix(q)
    w2c = np.concatenate([rot, rng.normal(size=(20, 3, 1))], 2)
    m = convert.blender_camera_matrices(w2c)
    assert np.allclose(convert.w2c_from_blender_matrices(m), w2c)
    # The camera centre maps to the origin of the camera; Blender's -Z is OpenCV's +z (forward).
    for i in range(3):
        centre = m[i, :3, 3]
        assert np.allclose(w2c[i, :, :3] @ centre + w2c[i, :, 3], 0, atol=1e-9)
        forward = -m[i, :3, 2]
        assert np.allclose(forward, w2c[i, 2, :3])


def test_engine_frame_is_turned_so_z_is_up(sub):
    E = sub("scene.convert").ENGINE_TO_BLENDER
    down, forward = np.array([0, 1.0, 0, 0]), np.array([0, 0, 1.0, 0])  # OpenCV +y is down
    assert np.allclose(E @ down, [0, 0, -1, 0]) and np.allclose(E @ forward, [0, 1, 0, 0])
    assert np.isclose(np.linalg.det(E[:3, :3]), 1.0)  # a rotation, not a mirror
    assert Matrix(E.tolist()).is_orthogonal


def test_quaternion_keys_keep_one_hemisphere(sub):
    """The camera keys' quaternions (``engine.geometry.trajectory``, the one sign-continuity rule): a turn
    about x through 180° keeps going, although the w ≥ 0 quaternion of each matrix flips sign there."""
    trajectory, cameras = sub("engine.geometry.trajectory"), sub("engine.geometry.cameras")
    half = np.radians([0.0, 170.0, 182.0, 350.0]) / 2
    q = np.stack([np.cos(half), np.sin(half), 0 * half, 0 * half], 1)  # w < 0 from 180° on
    fixed = trajectory.quaternions_with_continuity(cameras.quaternion_wxyz_to_matrix(q))
    assert np.all(np.sum(fixed[1:] * fixed[:-1], axis=1) > 0)
    assert np.allclose(np.abs(fixed), np.abs(q))


def test_scaled_intrinsics_follow_the_pixel_centre_convention(sub):
    convert = sub("scene.convert")
    K = np.array([[[28.0, 0, 28.0], [0, 28.0, 21.0], [0, 0, 1]]])  # 56×42 processed, centred
    big = convert.scale_intrinsics(K, [[42, 56]], [[480, 640]])
    assert np.allclose(big[0], [[320, 0, 320], [0, 320, 240], [0, 0, 1]])
