"""Ground truth for camera tracking: a shot rendered by Cycles from a known camera path and lens.

The scene (metres, Z up, floor at Z = 0) is ``tests/engine/synthetic_shot``'s: a checker-textured
ground plane, a textured wall at Y = 7 and three textured boxes standing on the floor. The camera
dollies along that module's arc with fx = fy = 80 px at 96×64 (a 30 mm lens on a 36 mm sensor). Each
frame is rendered with Cycles on the CPU (16 samples, fixed seed, emission shaders so light plays no
part), and its planar depth comes from the Z pass through a compositor File Output EXR.

(a) The exact depth and cameras, cut into overlapping chunks, each chunk moved into its own random
    similarity frame and noised (1 % depth noise, 2 % outlier pixels, 2 mrad pose jitter), are joined by
    ``engine.geometry.streaming.StreamingJoiner``: the joined camera path matches the truth with an ATE
    below 1 % of the path length.
(b) The floor fitted to the joined cloud (``fit_floor``) and the resulting ``world_alignment`` put the
    true ground plane at Z = 0 with +Z up and the cameras above it.
(c) The joined cameras written as a shot bundle and imported (``scene.shot``) reproduce the plate: the
    imported animated camera, rendered at sampled frames, gives the rendered plate back (thresholds in
    the test's docstring).
"""

from __future__ import annotations

import os

import bpy
import numpy as np
import pytest

from engine.formats.bundle import write_bundle
from engine.geometry.floor import fit_floor, up_from_cameras, world_alignment
from engine.geometry.streaming import ChunkStore, StreamingJoiner, plan_chunks
from engine.geometry.trajectory import absolute_trajectory_error, path_length
from tests.engine.synthetic_shot import BOXES, WALL_Y, Shot, camera_path, random_sim3, to_chunk
from tools.synthetic_scene import DepthOutput, read_image

from .render_utils import centroids, emissive_material, setup_cycles

N_FRAMES, H, W, FOCAL = 24, 64, 96, 80.0
CHUNK, OVERLAP = 8, 4
FPS = 24.0


def _box(name, lo, hi, material):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=tuple((lo + hi) / 2))
    obj = bpy.context.active_object
    obj.name = name
    obj.scale = tuple(hi - lo)
    obj.data.materials.append(material)
    return obj


def build_scene(scene) -> None:
    """The textured ground truth scene (see the module docstring); Cycles set up for tiny renders."""
    setup_cycles(scene, samples=16)
    scene.render.resolution_x, scene.render.resolution_y = W, H
    bpy.ops.mesh.primitive_plane_add(size=30.0)
    bpy.context.active_object.data.materials.append(emissive_material("Ground", (0.8, 0.7, 0.4), checker=9.0))
    bpy.ops.mesh.primitive_plane_add(size=30.0, location=(0.0, WALL_Y, 10.0), rotation=(np.pi / 2, 0, 0))
    bpy.context.active_object.data.materials.append(emissive_material("Wall", (0.4, 0.6, 0.9), checker=12.0))
    colours = ((0.9, 0.2, 0.1), (0.2, 0.8, 0.3), (0.9, 0.8, 0.1))
    for i, ((lo, hi), colour) in enumerate(zip(BOXES, colours, strict=True)):
        _box(f"Box {i}", lo, hi, emissive_material(f"Box {i}", colour, checker=4.0))


def _gt_camera(scene, sub) -> bpy.types.Object:
    convert = sub("scene.convert")
    params = convert.lens_params(_K(), np.array([[H, W]]))
    data = bpy.data.cameras.new("Truth")
    data.sensor_fit, data.sensor_width, data.lens = "HORIZONTAL", params.sensor_width, float(params.lens[0])
    cam = bpy.data.objects.new("Truth", data)
    scene.collection.objects.link(cam)
    return cam


def _K() -> np.ndarray:
    return np.array([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1]])


def _render(scene, camera, path: str) -> np.ndarray:
    scene.camera = camera
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    return read_image(path)[:, :, :3]


@pytest.fixture(scope="module")
def rendered(ext, tmp_path_factory):
    """The Cycles shot: plates (N, H, W, 3) float, exact depth (N, H, W), w2c (N, 3, 4), K (3, 3)."""
    import importlib

    sub = lambda name: importlib.import_module(f"{ext.__name__}.{name}")  # noqa: E731
    folder = str(tmp_path_factory.mktemp("cycles_shot"))
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    build_scene(scene)
    depth_output = DepthOutput(scene, folder)
    cam = _gt_camera(scene, sub)
    w2c = camera_path(N_FRAMES)
    matrices = sub("scene.convert").blender_camera_matrices(w2c)
    plates, depth = [], []
    for i in range(N_FRAMES):
        scene.frame_set(i + 1)  # movie frame i shows on scene frame i + 1
        cam.matrix_world = _matrix(matrices[i])
        plates.append(_render(scene, cam, os.path.join(folder, f"plate_{i:03d}.png")))
        z = read_image(depth_output.path(i + 1))[:, :, 0]
        depth.append(np.where(z < 1e9, z, np.nan))  # the background is 1e10
    return np.stack(plates), np.stack(depth).astype(np.float32), w2c, _K()


def _matrix(m):
    from mathutils import Matrix

    return Matrix(np.asarray(m).tolist())


def _plates_to_uint8(plates: np.ndarray) -> np.ndarray:
    return (np.clip(plates, 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def joined(rendered, tmp_path_factory):
    """(a)'s join: chunks of the exact shot, each in a random noised world, joined by the streaming joiner."""
    plates, depth, w2c, K = rendered
    rng = np.random.default_rng(11)
    store = ChunkStore(tmp_path_factory.mktemp("chunks"))
    joiner = StreamingJoiner(store, points_per_frame=600, seed=1)
    worlds = []
    images = _plates_to_uint8(plates)
    for r in plan_chunks(N_FRAMES, CHUNK, OVERLAP):
        frames = np.arange(r.start, r.stop)
        exact = Shot(frames, depth[frames], w2c[frames], np.tile(K, (len(frames), 1, 1)), images[frames])
        world = random_sim3(rng)
        worlds.append(world)
        joiner.add(to_chunk(exact, world, rng, depth_noise=0.01, outlier_fraction=0.02, pose_noise=0.002))
    return joiner.finish(), worlds


def _centres(w2c: np.ndarray) -> np.ndarray:
    return -np.einsum("nji,nj->ni", w2c[:, :, :3], w2c[:, :, 3])


def test_a_the_chunk_joiner_recovers_the_rendered_camera_path(rendered, joined):
    """ATE (Umeyama Sim(3) alignment, RMSE of the centres) below 1 % of the path length."""
    _, depth, w2c, _ = rendered
    assert np.isfinite(depth).mean() > 0.99  # the renders hit geometry everywhere: depth is exact
    result, _ = joined
    assert np.array_equal(result.frames, np.arange(N_FRAMES)) and len(result.joints) == 4
    ate, _ = absolute_trajectory_error(_centres(result.extrinsics), _centres(w2c))
    length = path_length(_centres(w2c))
    print(f"\nATE {ate * 1000:.2f} mm over a {length:.2f} m path ({100 * ate / length:.3f} %)")
    assert ate < 0.01 * length


def test_b_the_floor_comes_out_at_z0_with_the_right_up(rendered, joined):
    """The joined cloud's floor and the alignment built from it map the true ground to Z = 0 and the true
    up to +Z, and the cameras' heights above it keep their proportions.

    Thresholds: the true up within 0.5° of +Z; the true ground within 1 % of the camera height of Z = 0
    on average and 3 % at worst (200 ground points up to 10 m away, where a 0.17° tilt is 3 cm). The
    tilt comes from the injected per-frame pose jitter, which the chunk joints pass on (with exact poses
    it is 0.03°); it is printed.
    """
    _, _, w2c, _ = rendered
    result, worlds = joined
    points = result.points()
    floor = fit_floor(
        points["xyz"], points["conf"], _centres(result.extrinsics), up_hint=up_from_cameras(result.extrinsics)
    )
    centres = _centres(result.extrinsics)
    forward = result.extrinsics[0, 2, :3]  # the first camera's viewing direction
    alignment = world_alignment(floor, centres[0], forward=forward)
    to_joined = worlds[0]  # the truth → chunk 0's world, which is the joined world
    rng = np.random.default_rng(5)
    ground = np.column_stack([rng.uniform(-3, 3, 200), rng.uniform(-1, 6, 200), np.zeros(200)])
    ground = ground[~_inside_boxes(ground)]
    aligned = _apply(alignment, to_joined.apply(ground))
    cams = _apply(alignment, centres)
    scale = cams[0, 2] / _centres(w2c)[0, 2]  # joined units per metre, seen through the camera height
    up = alignment[:3, :3] @ (to_joined.R @ np.array([0.0, 0.0, 1.0]))
    tilt = np.degrees(np.arccos(np.clip(up[2] / np.linalg.norm(up), -1, 1)))
    heights = np.abs(aligned[:, 2]) / cams[:, 2].mean()
    print(
        f"\nfloor tilt {tilt:.3f} deg; true ground off Z = 0 by {100 * heights.mean():.3f} % of the camera "
        f"height on average, {100 * heights.max():.3f} % at worst"
    )
    assert tilt < 0.5
    assert heights.mean() < 0.01 and heights.max() < 0.03
    assert np.all(cams[:, 2] > 0)
    assert np.allclose(cams[:, 2] / scale, _centres(w2c)[:, 2], rtol=0.01)
    assert np.allclose(cams[0, :2], 0.0, atol=1e-9)  # the origin sits on the floor below the first camera


def _inside_boxes(p: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(p), bool)
    for lo, hi in BOXES:
        inside |= np.all(
            (p[:, :2] >= np.array(lo[:2]) - 0.05) & (p[:, :2] <= np.array(hi[:2]) + 0.05), axis=1
        )
    return inside


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ m[:3, :3].T + m[:3, 3]


SAMPLED = (0, 7, 13, 23)
MAD_EXACT = 0.002  # half an 8-bit grey level
MARKER_PX = 0.5  # mean marker distance in plate pixels
MARKERS = (((-0.6, 2.5, 1.0), (1, 0, 0)), ((1.7, 1.5, 0.6), (0, 1, 0)), ((-2.3, 4.5, 1.5), (0, 0, 1)))
MARKER_ZOOM = 4  # marker renders at 4× the plate size, for sub-pixel centroids


def _shot_bundle(folder, w2c, K, alignment, points=None):
    n = len(w2c)
    arrays = {
        "extrinsics": w2c,
        "intrinsics": np.tile(K, (n, 1, 1)),
        "source_paths": ["/nowhere/cycles_shot.mov"] * n,
        "frame_indices": np.arange(n),
        "timestamps_s": np.arange(n) / FPS,
        "original_sizes": np.tile([H, W], (n, 1)),
        "image_hw": np.array([H, W]),
        "world_alignment": alignment,
    }
    if points is None:
        points = {"xyz": np.zeros((1, 3)), "rgb": np.zeros((1, 3), np.uint8), "conf": np.ones(1)}
        points["frame"] = np.zeros(1, int)
    arrays.update(
        points_xyz=points["xyz"],
        points_rgb=points["rgb"],
        points_conf=points["conf"],
        points_view=np.asarray(points["frame"], np.int32),
    )
    shot = {
        "fps": FPS,
        "frame_count": n,
        "focal_px": FOCAL,
        "focal_y_px": FOCAL,
        "focal_spread_px": 0.0,
        "chunk_size": CHUNK,
        "overlap": OVERLAP,
        "chunks": [[r.start, r.stop - 1] for r in plan_chunks(n, CHUNK, OVERLAP)],
    }
    return write_bundle(folder, arrays, {"model_id": "cycles-ground-truth", "shot": shot})


def _centroids(image: np.ndarray) -> np.ndarray:
    """Centres of the red, green and blue markers in continuous plate pixel coordinates."""
    return centroids(image) / MARKER_ZOOM


def test_c_the_imported_shot_camera_reproduces_the_plate(clean_scene, sub, tmp_path, rendered, joined):
    """Render the imported camera on sampled frames and compare with what the true camera renders.

    1. **Exact cameras** through a shot bundle and the import, rendered over the textured scene: the mean
       absolute difference to the plate stays below 0.002 (half an 8-bit grey level). Same renderer, seed
       and samples, so only a different camera changes pixels: this checks the keys sit on the right
       frames, the steady lens, the render size and the OpenCV → Blender conversion. (Half a pixel off
       already gives about 0.06 on this fine checker, thirty times the threshold; it is printed.)
    2. **Joined cameras** (test (a): chunks in random worlds, 1 % depth noise, 2 % outliers, 2 mrad pose
       jitter per frame, joined by the streaming joiner), placed by chunk 0's known world (no fit to the
       truth): three small emissive markers in the scene land within 0.5 plate pixels on average of
       where the true camera renders them (centroids of 4× renders). Blender's solver calls 0.3 px
       "accurate" and up to 3 px "usable"; half a pixel is below what a matchmover sees slip on a plate.
       The injected 2 mrad jitter per axis alone moves the image by about 0.2-0.3 px at this focal
       length. Control: the same camera one frame late (the markers move about a pixel a frame here)
       must miss the threshold.
    """
    plates, _, w2c, K = rendered
    result, worlds = joined
    scene = clean_scene
    build_scene(scene)
    shot = sub("scene.shot")
    options = shot.ShotImportOptions(background=False)

    def render_frames(cam, frames, tag):
        out = []
        for i in frames:
            scene.frame_set(i + 1)
            out.append(_render(scene, cam, str(tmp_path / f"{tag}_{i}.png")))
        return np.stack(out)

    exact = shot.import_shot(bpy.context, _shot_bundle(tmp_path / "exact", w2c, K, np.eye(4)), options)
    exact.points.hide_render = True
    assert (scene.render.resolution_x, scene.render.resolution_y, scene.frame_start) == (W, H, 1)
    mad_exact = float(
        np.abs(render_frames(exact.cameras[0], SAMPLED, "exact") - plates[list(SAMPLED)]).mean()
    )
    K_half = K.copy()
    K_half[0, 2] += 0.5
    half = shot.import_shot(bpy.context, _shot_bundle(tmp_path / "half", w2c, K_half, np.eye(4)), options)
    half.points.hide_render = True
    mad_half = float(np.abs(render_frames(half.cameras[0], SAMPLED, "half") - plates[list(SAMPLED)]).mean())

    to_truth = worlds[0].inverse().matrix()  # the joined world is chunk 0's: its world → the truth
    bundle = _shot_bundle(tmp_path / "joined", result.extrinsics, K, to_truth, result.points())
    joined_shot = shot.import_shot(bpy.context, bundle, options)
    joined_shot.points.hide_render = True
    cam = joined_shot.cameras[0]
    mad_joined = float(np.abs(render_frames(cam, SAMPLED, "joined") - plates[list(SAMPLED)]).mean())

    # Markers only (the textured scene hidden), at 4× the plate size, through the true and the joined camera.
    for obj in scene.objects:
        obj.hide_render = True
    for i, (centre, colour) in enumerate(MARKERS):
        bpy.ops.mesh.primitive_uv_sphere_add(radius=0.06, location=centre, segments=24, ring_count=12)
        bpy.context.active_object.data.materials.append(emissive_material(f"Marker {i}", colour))
    scene.render.resolution_percentage = 100 * MARKER_ZOOM
    scene.cycles.samples = 32
    truth_cam = _gt_camera(scene, sub)
    matrices = sub("scene.convert").blender_camera_matrices(w2c)
    truth_px, joined_px, late_px = [], [], []
    for i in SAMPLED:
        scene.frame_set(i + 1)
        truth_cam.matrix_world = _matrix(matrices[i])
        truth_px.append(_centroids(_render(scene, truth_cam, str(tmp_path / f"mt_{i}.png"))))
        joined_px.append(_centroids(_render(scene, cam, str(tmp_path / f"mj_{i}.png"))))
        if i > 0:
            scene.frame_set(i)  # the joined camera one frame late
            late_px.append(_centroids(_render(scene, cam, str(tmp_path / f"ml_{i}.png"))) - truth_px[-1])
    marker_error = np.linalg.norm(np.array(joined_px) - np.array(truth_px), axis=-1)
    late_error = np.linalg.norm(np.array(late_px), axis=-1)
    print(
        f"\nplate MAD: exact cameras {mad_exact:.4f} (half a pixel off: {mad_half:.4f}), joined {mad_joined:.4f}; "
        f"markers through the joined camera {marker_error.mean():.3f} px mean, {marker_error.max():.3f} px max "
        f"(one frame late: {late_error.mean():.2f} px)"
    )
    assert mad_exact < MAD_EXACT < mad_half
    assert marker_error.mean() < MARKER_PX
    assert late_error.mean() > MARKER_PX
