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


# --- Blender cameras → OpenCV (the scene's own cameras as known cameras) ----------------------------

BLENDER_CASES = [
    # (sensor_fit, sensor_width, sensor_height, lens, shift_x, shift_y, W, H, pixel aspect x, y)
    ("AUTO", 36.0, 24.0, 50.0, 0.0, 0.0, 640, 480, 1.0, 1.0),
    ("AUTO", 36.0, 24.0, 35.0, 0.1, -0.05, 480, 640, 1.0, 1.0),  # portrait: AUTO fits the height
    ("HORIZONTAL", 32.0, 18.0, 28.0, -0.2, 0.15, 1280, 720, 1.0, 1.0),
    ("HORIZONTAL", 36.0, 24.0, 40.0, 0.05, 0.1, 480, 640, 1.0, 1.0),  # portrait, horizontal fit
    ("VERTICAL", 36.0, 20.0, 60.0, 0.12, -0.08, 640, 480, 1.0, 1.0),
    ("VERTICAL", 30.0, 24.0, 24.0, -0.1, 0.2, 480, 640, 1.0, 1.0),
    ("AUTO", 36.0, 24.0, 50.0, 0.07, 0.03, 640, 480, 1.0, 1.3),  # non-square pixels (pay > pax)
    ("AUTO", 36.0, 24.0, 50.0, -0.07, 0.1, 400, 480, 1.4, 1.0),  # pax·W > pay·H although W < H
    ("VERTICAL", 25.0, 30.0, 45.0, 0.2, 0.2, 720, 576, 1.0, 1.09),
    ("HORIZONTAL", 36.0, 24.0, 85.0, -0.3, -0.2, 576, 720, 1.2, 1.0),
]


def _camera(scene, fit, sw, sh, lens, sx, sy, w, h, pax, pay):
    data = bpy.data.cameras.new("known")
    data.sensor_fit, data.sensor_width, data.sensor_height = fit, sw, sh
    data.lens, data.shift_x, data.shift_y = lens, sx, sy
    obj = bpy.data.objects.new("known", data)
    scene.collection.objects.link(obj)
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = w, h, 100
    r.pixel_aspect_x, r.pixel_aspect_y = pax, pay
    return obj


def _pixels(P, cv, w, h):
    """OpenCV camera points → pixels through Blender's projection matrix ``P``."""
    clip = np.column_stack([cv * [1, -1, -1], np.ones(len(cv))]) @ P.T
    ndc = clip[:, :2] / clip[:, 3:4]
    return np.column_stack([(ndc[:, 0] + 1) * w / 2, (1 - ndc[:, 1]) * h / 2])


def _cv_points(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-1, 1, n), rng.uniform(-1, 1, n), rng.uniform(2, 6, n)])


@pytest.mark.parametrize("case", BLENDER_CASES)
def test_blender_cameras_to_opencv_and_back(clean_scene, sub, case):
    """Blender → OpenCV: K projects like Blender's own camera matrix (every sensor fit, shift, pixel
    aspect, portrait); → Blender again (the importer's conversion): the new camera projects the same."""
    known, cameras, camera_data = sub("scene.known_cameras"), sub("scene.cameras"), sub("scene.camera_data")
    w, h = case[6], case[7]
    obj = _camera(clean_scene, *case)
    K = known.camera_intrinsics(obj.data, clean_scene)
    cv = _cv_points()
    truth = _pixels(_projection(clean_scene, obj, w, h), cv, w, h)
    np.testing.assert_allclose((cv @ K.T)[:, :2] / cv[:, 2:3], truth, atol=1e-3)
    # back to Blender, as the importer builds cameras: the same pixels
    back = cameras.create_view_cameras(
        "b", np.eye(3, 4)[None], K[None], np.array([[h, w]]), clean_scene.collection, None
    )[0]
    camera_data.apply_render_settings(clean_scene, back)
    np.testing.assert_allclose(_pixels(_projection(clean_scene, back, w, h), cv, w, h), truth, atol=1e-3)


@pytest.mark.parametrize("fx,fy,cx,cy,w,h", CASES)
def test_opencv_to_blender_and_back(clean_scene, sub, fx, fy, cx, cy, w, h):
    """OpenCV → Blender (the importer) → OpenCV (the scene camera reader): the same K, and the same pose."""
    known, cameras, camera_data = sub("scene.known_cameras"), sub("scene.cameras"), sub("scene.camera_data")
    convert = sub("scene.convert")
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    rng = np.random.default_rng(int(fx))
    rot = sub("engine.geometry.cameras").quaternion_wxyz_to_matrix(rng.normal(size=(1, 4)))[0]
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = rot, rng.normal(size=3) * 5
    obj = cameras.create_view_cameras(
        "c", w2c[None, :3], K[None], np.array([[h, w]]), clean_scene.collection, None
    )[0]
    camera_data.apply_render_settings(clean_scene, obj)
    bpy.context.view_layer.update()
    np.testing.assert_allclose(known.camera_intrinsics(obj.data, clean_scene), K, atol=1e-4)
    np.testing.assert_allclose(known.camera_w2c(obj.matrix_world), w2c, atol=2e-5)  # float32 matrices
    # a scaled camera object sees the same: its scale is left out
    obj.scale = (2.0, 2.0, 2.0)
    bpy.context.view_layer.update()
    np.testing.assert_allclose(known.camera_w2c(obj.matrix_world), w2c, atol=2e-5)  # float32 matrices
    # the image of another size (a background bigger than the render) scales K like a resize
    big = known.camera_intrinsics(obj.data, clean_scene, (2 * w, 2 * h))
    np.testing.assert_allclose(
        big, convert.scale_intrinsics(K[None], [[h, w]], [[2 * h, 2 * w]])[0], atol=1e-4
    )
