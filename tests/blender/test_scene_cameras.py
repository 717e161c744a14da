"""Cameras the scene already has as input (issue 11), end to end with the real engine process.

Scene Cameras: three cameras (different sensor fits, shifts, one with a photo as its background, two
rendered by Cycles) go through a real job on a random checkpoint. The cameras come back unchanged under a
root that is the identity, and the geometry lands where the cameras see it: points unprojected from
pixels of each view, marked by small emissive spheres, show up on those pixels in Cycles renders through
the *original* cameras. Use Camera Track: an animated camera keyed over a movie's frames conditions a shot
job; the shot camera's keys are the track's and its points lie in the track's frame.
"""

from __future__ import annotations

import os

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from engine.formats.bundle import read_bundle
from tests.engine.media import write_test_video

from .conftest import ENGINE_PYTHON, draw
from .render_utils import add_mesh, emissive_material, render, setup_cycles
from .test_reconstruct import ESC, FakeOperator, drive

W, H = 64, 48  # the render size of the rendered views
PHOTO = (80, 60)  # the background photo of camera A (same aspect, other size)


def _look_at(obj, target) -> None:
    obj.rotation_euler = (Vector(target) - obj.location).to_track_quat("-Z", "Y").to_euler()


def _camera(scene, name, location, fit, lens, shift=(0.0, 0.0)):
    data = bpy.data.cameras.new(name)
    data.sensor_fit, data.lens = fit, lens
    data.shift_x, data.shift_y = shift
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    obj.location = location
    _look_at(obj, (0.0, 0.0, 0.6))
    return obj


@pytest.fixture
def camera_scene(clean_scene, prefs, checkpoint, tmp_path):
    scene = clean_scene
    setup_cycles(scene, samples=4)
    r = scene.render
    r.resolution_x, r.resolution_y = W, H
    add_mesh("plane", emissive_material("Floor", (0.85, 0.8, 0.7), 4.0), size=8.0)
    add_mesh("cube", emissive_material("Box", (0.2, 0.45, 0.85), 3.0), size=1.2, location=(0, 0.5, 0.6))
    cams = [
        _camera(scene, "A", (0.0, -5.0, 2.0), "AUTO", 40.0),
        _camera(scene, "B", (2.5, -4.5, 2.5), "VERTICAL", 30.0, (0.1, -0.05)),
        _camera(scene, "C", (-2.5, -4.0, 1.5), "HORIZONTAL", 35.0, (-0.08, 0.06)),
    ]
    bpy.context.view_layer.update()
    # camera A shows a photo: a render of itself at another size, as its background image
    r.resolution_x, r.resolution_y = PHOTO
    photo = os.path.join(tmp_path, "photo_A.png")
    render(scene, cams[0], photo)
    r.resolution_x, r.resolution_y = W, H
    bg = cams[0].data.background_images.new()
    bg.image = bpy.data.images.load(photo)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in cams)
    s = scene.da3
    s.input_mode = "CAMERAS"
    s.model, s.custom_model, s.process_res = "CUSTOM", str(checkpoint), 56
    s.max_points = 20000
    s.set_render = False
    prefs.engine_python, prefs.device = ENGINE_PYTHON, "cpu"
    prefs.results_folder = str(tmp_path / "results")
    return cams


def _k_of(scene, sub, obj, size):
    return sub("scene.known_cameras").camera_intrinsics(obj.data, scene, size)


def test_scene_cameras_come_back_unchanged_and_the_geometry_lands_on_their_pixels(
    camera_scene, sub, tmp_path
):
    scene, cams = bpy.context.scene, camera_scene
    reconstruct, panels = sub("operators.reconstruct"), sub("panels.reconstruct")
    texts = draw(panels.VIEW3D_PT_da3_inputs).texts()
    assert "3 cameras selected" in texts and "A: its background image" in texts and "B: rendered" in texts
    assert any("rendered" in t for t in texts) and any("waits for each render" in t for t in texts)
    originals = {
        c.name: (np.array(c.matrix_world), _k_of(scene, sub, c, PHOTO if c.name == "A" else (W, H)))
        for c in cams
    }

    op = FakeOperator()
    op._steps = reconstruct.begin_steps(bpy.context)
    seen = []
    while (done := reconstruct.advance(op, bpy.context)) is None:
        seen.append(sub("operators.runtime").last_report()[1])
    assert done is True, op.reports
    assert seen == ["Rendering camera B (1/2)", "Rendering camera C (2/2)"]  # one per timer tick
    job = sub("operators.runtime").service().job
    assert drive(sub, op, timeout=240) == {"FINISHED"}, op.reports

    bundle = read_bundle(job.bundle)
    assert bundle.units == "input" and bundle.source_paths[0].endswith("photo_A.png")
    root = next(o for o in bpy.data.objects if o.get("da3_job") == job.job)
    np.testing.assert_allclose(np.array(root.matrix_world), np.eye(4), atol=1e-9)  # the scene's frame
    imported = sorted((c for c in root.children if c.type == "CAMERA"), key=lambda c: c.name)
    assert len(imported) == 3
    for cam, original in zip(imported, cams, strict=True):
        matrix, K = originals[original.name]
        rigid = matrix.copy()
        rigid[:3, :3] /= np.linalg.norm(rigid[:3, :3], axis=0)
        np.testing.assert_allclose(np.array(cam.matrix_world), rigid, atol=2e-5)  # the same camera
        fx, fy, cx, cy = cam["da3_intrinsics"]
        np.testing.assert_allclose([fx, fy, cx, cy], K[[0, 1, 0, 1], [0, 1, 2, 2]], rtol=1e-5, atol=1e-4)

    # Points from pixels of each view → markers → Cycles renders through the original cameras.
    for obj in list(scene.objects):
        if obj.type == "MESH":
            obj.hide_render = True
    marker = emissive_material("Marker", (1.0, 0.0, 0.0))
    depth, k_proc, w2c = bundle.depth, bundle.intrinsics, bundle.extrinsics
    h, w = bundle.image_hw
    rng = np.random.default_rng(3)
    for i, original in enumerate(cams):
        ow, oh = PHOTO if original.name == "A" else (W, H)
        r = scene.render
        r.resolution_x, r.resolution_y = ow, oh
        u, v = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
        cam_point = depth[i, v, u] * np.linalg.solve(k_proc[i], [u + 0.5, v + 0.5, 1.0])
        world = w2c[i, :, :3].T @ (cam_point - w2c[i, :, 3])
        expected = np.array([(u + 0.5) * ow / w, (v + 0.5) * oh / h])  # the same pixel, original size
        ndc = world_to_camera_view(scene, original, Vector(world))
        np.testing.assert_allclose([ndc.x * ow, (1 - ndc.y) * oh], expected, atol=1e-2)
        sphere = add_mesh("uv_sphere", marker, radius=0.012 * float(ndc.z), location=tuple(world))
        image = render(scene, original, os.path.join(tmp_path, f"marker_{i}.png"))
        bpy.data.objects.remove(sphere)
        weight = image[:, :, 0] * (image[:, :, 0] > 0.05)
        assert weight.sum() > 0, f"the marker of view {i} is not in its camera's render"
        centre = [
            (weight.sum(0) * (np.arange(ow) + 0.5)).sum() / weight.sum(),
            (weight.sum(1) * (np.arange(oh) + 0.5)).sum() / weight.sum(),
        ]
        np.testing.assert_allclose(centre, expected, atol=0.35)


def test_bad_scene_camera_input_says_what_to_do(camera_scene, sub):
    reconstruct = sub("operators.reconstruct")
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    assert reconstruct.why_not_ready(bpy.context) == "Select the scene cameras to reconstruct from"
    camera_scene[1].select_set(True)
    for obj in list(bpy.context.scene.objects):
        if obj.type == "MESH":
            bpy.data.objects.remove(obj)
    with pytest.raises(RuntimeError, match="no background image and the scene has nothing visible"):
        bpy.ops.da3.reconstruct()
    bpy.context.scene.da3.metric = True
    with pytest.raises(RuntimeError, match="turn off Metric Scale"):
        bpy.ops.da3.reconstruct()


def test_esc_while_views_render_submits_nothing(camera_scene, sub):
    reconstruct, runtime = sub("operators.reconstruct"), sub("operators.runtime")
    before = runtime.service().job
    op = FakeOperator()
    op._steps = reconstruct.begin_steps(bpy.context)
    assert reconstruct.advance(op, bpy.context) is None  # about to render B
    assert reconstruct.modal_step(op, bpy.context, ESC) == {"CANCELLED"}
    assert runtime.service().job is before and op._steps is None  # no job was submitted


# --- a camera track ---------------------------------------------------------------------------------

FRAMES = 12


@pytest.fixture
def tracked_clip(clean_scene, prefs, checkpoint, tmp_path):
    """A 12-frame movie of a scene rendered by an animated camera (keys on frames 1 and 12), the clip."""
    scene = clean_scene
    setup_cycles(scene, samples=2)
    scene.render.resolution_x, scene.render.resolution_y = W, H
    add_mesh("plane", emissive_material("Floor", (0.85, 0.8, 0.7), 4.0), size=8.0)
    add_mesh("cube", emissive_material("Box", (0.2, 0.45, 0.85), 3.0), size=1.2, location=(0, 0.5, 0.6))
    cam = _camera(scene, "Track", (0.0, -5.0, 2.0), "AUTO", 35.0)
    cam.keyframe_insert("location", frame=1)
    cam.keyframe_insert("rotation_euler", frame=1)
    cam.data.keyframe_insert("lens", frame=1)
    cam.location = (1.5, -4.5, 2.2)
    _look_at(cam, (0.2, 0.0, 0.6))
    cam.data.lens = 40.0
    cam.keyframe_insert("location", frame=FRAMES)
    cam.keyframe_insert("rotation_euler", frame=FRAMES)
    cam.data.keyframe_insert("lens", frame=FRAMES)
    frames = []
    for f in range(1, FRAMES + 1):
        scene.frame_set(f)
        frames.append(
            (render(scene, cam, os.path.join(tmp_path, f"f{f}.png")) * 255).round().astype(np.uint8)
        )
    movie = str(write_test_video(tmp_path / "track.mkv", frames, fps=24))
    clip = bpy.data.movieclips.load(movie)
    scene.active_clip = clip
    s = scene.da3
    s.input_mode = "CLIP"
    s.chunk_size, s.chunk_overlap = 6, 3
    s.model, s.custom_model, s.process_res = "CUSTOM", str(checkpoint), 56
    s.max_points = 5000
    prefs.engine_python, prefs.device = ENGINE_PYTHON, "cpu"
    prefs.results_folder = str(tmp_path / "results")
    return cam


def test_the_track_is_read_from_fcurves_as_the_depsgraph_shows_it(tracked_clip, sub):
    track = sub("scene.camera_track")
    scene, cam = bpy.context.scene, tracked_clip
    frames = np.arange(1, FRAMES + 1)
    K, w2c = track.track_cameras(scene, cam, frames, (W, H))
    parent = bpy.data.objects.new("Rig", None)  # a parent: the depsgraph path, frame by frame
    scene.collection.objects.link(parent)
    K2, w2c2 = track.track_cameras(scene, cam, frames, (W, H))
    cam.parent = parent
    K3, w2c3 = track.track_cameras(scene, cam, frames, (W, H))
    np.testing.assert_allclose(K, K2) and np.testing.assert_allclose(w2c, w2c2)
    np.testing.assert_allclose(K, K3, atol=1e-4)
    np.testing.assert_allclose(w2c, w2c3, atol=1e-5)
    assert K[0, 0, 0] < K[-1, 0, 0]  # the zoom is read per frame
    with pytest.raises(track.CameraInputError, match="keyed on frames 1–12 but the shot covers frames 1–20"):
        cam.parent = None
        track.track_cameras(scene, cam, np.arange(1, 21), (W, H))
    still = bpy.data.objects.new("Still", bpy.data.cameras.new("Still"))
    with pytest.raises(track.CameraInputError, match="has no animation"):
        track.track_cameras(scene, still, frames, (W, H))


def test_a_tracked_camera_gives_a_shot_in_its_frame(tracked_clip, sub):
    scene, cam = bpy.context.scene, tracked_clip
    reconstruct = sub("operators.reconstruct")
    s = scene.da3
    s.use_camera_track = True
    assert "Pick the track camera" in reconstruct.why_not_ready(bpy.context)
    s.track_camera = cam
    s.import_mesh = True  # and a fused mesh, which must lie in the track's frame too
    assert reconstruct.why_not_ready(bpy.context) is None
    expected = {}
    for f in range(1, FRAMES + 1):
        scene.frame_set(f)
        expected[f] = np.array(cam.matrix_world)
    job = reconstruct.begin(bpy.context)
    op = FakeOperator()
    assert drive(sub, op, timeout=300) == {"FINISHED"}, op.reports
    bundle = read_bundle(job.bundle)
    assert bundle.kind == "shot" and bundle.units == "input" and bundle.world_alignment is None
    root = next(o for o in bpy.data.objects if o.get("da3_job") == job.job)
    np.testing.assert_allclose(np.array(root.matrix_world), np.eye(4), atol=1e-9)
    shot_cam = next(c for c in root.children if c.type == "CAMERA")
    for f in range(1, FRAMES + 1):
        scene.frame_set(f)
        np.testing.assert_allclose(np.array(shot_cam.matrix_world), expected[f], atol=1e-4)
    # the shot's points lie in the track's frame: in front of their view's camera, inside its plate
    p, K, w2c = bundle.points, bundle.intrinsics_original, bundle.extrinsics
    cam_pts = np.einsum("mij,mj->mi", w2c[p.view, :, :3], p.xyz) + w2c[p.view, :, 3]
    uv = np.einsum("mij,mj->mi", K[p.view], cam_pts)
    uv = uv[:, :2] / uv[:, 2:]
    assert (cam_pts[:, 2] > 0).all() and (uv > -1e-2).all() and (uv < [W + 1e-2, H + 1e-2]).all()
    # the fused mesh is under the identity root, in the same frame: each vertex lies in front of the
    # cameras that saw its region and near the shot's points (within a few voxels of the cloud)
    mesh_obj = next(c for c in root.children if c.type == "MESH")
    np.testing.assert_allclose(np.array(mesh_obj.matrix_world), np.eye(4), atol=1e-9)
    verts = np.empty(len(mesh_obj.data.vertices) * 3, np.float32)
    mesh_obj.data.vertices.foreach_get("co", verts)
    verts = verts.reshape(-1, 3).astype(np.float64)
    assert len(verts) > 100
    extent = np.linalg.norm(np.ptp(p.xyz, axis=0))
    some = verts[:: max(1, len(verts) // 1000), None, :]
    near = np.linalg.norm(some - p.xyz[None, :: max(1, len(p.xyz) // 2000)], axis=2).min(1)
    assert np.median(near) < 0.02 * extent
    centres = -np.einsum("nji,nj->ni", w2c[:, :, :3], w2c[:, :, 3])  # camera centres C = -R^T t
    np.testing.assert_allclose(centres[0], expected[1][:3, 3], atol=1e-3)  # the track's own frame
