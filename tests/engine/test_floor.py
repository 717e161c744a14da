"""Floor, origin and scale: the floor of a joined synthetic shot lands at Z = 0 with +Z up."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.cameras import camera_centers, quaternion_wxyz_to_matrix
from engine.geometry.floor import (
    Floor,
    NoFloorFound,
    fit_floor,
    root_transform,
    scale_from_distance,
    up_from_cameras,
    world_alignment,
)
from engine.geometry.streaming import ChunkStore, StreamingJoiner, plan_chunks
from tests.engine import synthetic_shot as shot


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:3, :3].T + m[:3, 3]


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """A 90-frame shot joined from noisy chunks, and chunk 0's world (true world → joined world)."""
    chunks, worlds = shot.make_chunks(
        90, plan_chunks(90, 30, 10), seed=21, depth_noise=0.01, outlier_fraction=0.01
    )
    joiner = StreamingJoiner(ChunkStore(tmp_path_factory.mktemp("floor")), points_per_frame=400)
    for c in chunks:
        joiner.add(c)
    return joiner.finish(), worlds[0]


def test_the_floor_of_a_joined_shot_comes_out_at_z0_with_up_right(joined):
    result, world = joined
    cloud = result.points()
    centers = camera_centers(result.extrinsics)
    floor = fit_floor(cloud["xyz"], cloud["conf"], centers, up_hint=up_from_cameras(result.extrinsics))
    first_view = result.extrinsics[0, 2, :3]  # optical axis of the first camera in world
    m = world_alignment(floor, centers[0], forward=first_view)
    assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3)) and np.linalg.det(m[:3, :3]) > 0  # rigid

    # True floor points (Z = 0 in the true world) land at Z ≈ 0; true up becomes +Z.
    rng = np.random.default_rng(0)
    truth_floor = np.c_[rng.uniform(-4, 4, (500, 2)) + [0, 3], np.zeros(500)]
    z = apply(m, world.apply(truth_floor))[:, 2]
    assert np.abs(z).max() < 0.01 * world.s  # within 1 cm over an 8 m patch (measured: 4.6 mm)
    true_up = world.R @ np.array([0.0, 0.0, 1.0])
    assert m[:3, :3] @ true_up == pytest.approx([0, 0, 1], abs=2e-3)
    # Every camera is above the floor at its true height (× the joined world's scale).
    heights = apply(m, centers)[:, 2] / world.s
    np.testing.assert_allclose(heights, shot.render(90).centers[:, 2], atol=0.01)
    # The origin is on the floor straight below the first camera, which looks along +Y.
    first = apply(m, centers[:1])[0]
    assert first[:2] == pytest.approx([0, 0], abs=1e-9) and first[2] > 0
    look = m[:3, :3] @ first_view
    assert look[0] == pytest.approx(0, abs=1e-9) and look[1] > 0
    assert floor.inlier_fraction > 0.3  # the floor is a large share of what the camera sees


def test_nothing_is_baked_the_transform_scales_about_the_origin(joined):
    result, world = joined
    cloud = result.points()
    centers = camera_centers(result.extrinsics)
    floor = fit_floor(cloud["xyz"], camera_centers=centers, up_hint=up_from_cameras(result.extrinsics))
    m = world_alignment(floor, centers[0])
    # Set Scale: the first and last camera are a known distance apart in the real world.
    truth = shot.render(90).centers
    metres = float(np.linalg.norm(truth[-1] - truth[0]))
    s = scale_from_distance(centers[0], centers[-1], metres)
    assert s == pytest.approx(1 / world.s, rel=1e-3)
    root = root_transform(m, s)
    heights = apply(root, centers)[:, 2]
    np.testing.assert_allclose(heights, truth[:, 2], atol=0.01)  # metres, floor still at Z = 0
    assert np.linalg.norm(apply(root, centers[-1:]) - apply(root, centers[:1])) == pytest.approx(metres)


def planes_scene(seed: int = 0):
    """Cameras at 1.6 m looking at a big wall (Y = 5) and a ceiling (Z = 3), with a smaller floor."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(-3, 3, (2000, 2)), np.zeros(2000)]
    wall = np.c_[rng.uniform(-5, 5, 6000), np.full(6000, 5.0), rng.uniform(0, 3, 6000)]
    ceiling = np.c_[rng.uniform(-5, 5, (4000, 2)), np.full(4000, 3.0)]
    noise = rng.normal(scale=0.005, size=(12000, 3))
    outliers = rng.uniform(-5, 5, (600, 3))
    cams = np.c_[np.linspace(-1, 1, 10), np.full(10, -3.0), np.full(10, 1.6)]
    return np.r_[np.r_[floor, wall, ceiling] + noise, outliers], cams


def test_the_up_hint_picks_the_floor_over_a_bigger_wall_and_ceiling():
    points, cams = planes_scene()
    floor = fit_floor(points, camera_centers=cams, up_hint=[0, 0.2, 1])
    assert floor.normal == pytest.approx([0, 0, 1], abs=5e-3)
    assert floor.offset == pytest.approx(0.0, abs=5e-3)
    assert floor.signed_distance(cams) == pytest.approx(np.full(10, 1.6), abs=0.01)
    # without a hint the best supported plane with the cameras on one side wins: the wall
    wall = fit_floor(points, camera_centers=cams)
    assert wall.normal == pytest.approx([0, -1, 0], abs=5e-3)  # pointing to the cameras


def test_the_floor_fit_is_deterministic_and_tilt_invariant():
    points, cams = planes_scene(1)
    rot = quaternion_wxyz_to_matrix([0.9, 0.2, -0.3, 0.1])
    a = fit_floor(points @ rot.T, camera_centers=cams @ rot.T, up_hint=rot @ [0, 0, 1])
    b = fit_floor(points @ rot.T, camera_centers=cams @ rot.T, up_hint=rot @ [0, 0, 1])
    np.testing.assert_array_equal(a.normal, b.normal)
    assert a.normal == pytest.approx(rot @ [0, 0, 1], abs=5e-3)


def test_no_floor_below_the_cameras_is_an_explained_error():
    rng = np.random.default_rng(2)
    ceiling_only = np.c_[rng.uniform(-3, 3, (500, 2)), np.full(500, 3.0)]
    with pytest.raises(NoFloorFound, match="set the floor by hand"):
        fit_floor(ceiling_only, camera_centers=[[0, 0, 1.6]], up_hint=[0, 0, 1])
    with pytest.raises(NoFloorFound, match="at least 3 points"):
        fit_floor(np.zeros((2, 3)))


def test_world_alignment_for_a_tilted_floor():
    normal = quaternion_wxyz_to_matrix([0.8, 0.3, 0.1, -0.2]) @ [0, 0, 1]
    floor = Floor(normal, 2.0, 1.0, 0.01)
    camera = 2.0 * normal + 1.5 * normal + [0.3, -0.2, 0.1] - ([0.3, -0.2, 0.1] @ normal) * normal
    m = world_alignment(floor, camera)
    assert apply(m, camera[None])[0] == pytest.approx([0, 0, 1.5], abs=1e-12)
    on_floor = floor.project(np.random.default_rng(3).normal(size=(20, 3)) * 5)
    assert apply(m, on_floor)[:, 2] == pytest.approx(np.zeros(20), abs=1e-12)


def test_scale_from_distance_validates_input():
    assert scale_from_distance([0, 0, 0], [0, 3, 4], 10.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        scale_from_distance([0, 0, 0], [1, 0, 0], 0)
    with pytest.raises(ValueError, match="same place"):
        scale_from_distance([1, 1, 1], [1, 1, 1], 2.0)
    with pytest.raises(ValueError, match="positive"):
        root_transform(np.eye(4), -1)
