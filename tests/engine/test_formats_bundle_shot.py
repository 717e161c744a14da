"""Shot bundles (issue 5, notes/SHOT_SCHEMA.md): cameras + a reduced cloud, no per-frame depth or images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.formats.bundle import (
    ARRAYS_FILE,
    MANIFEST_FILE,
    BundleError,
    BundlePoints,
    is_complete,
    read_bundle,
    write_bundle,
)

N, H, W, M = 5, 6, 8, 40


def shot_arrays(seed: int = 0) -> dict:
    """What a shot job writes: per-frame cameras, the reduced cloud, image_hw and the alignment."""
    rng = np.random.default_rng(seed)
    turn = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # a quarter turn about x
    alignment = np.eye(4)
    alignment[:3, :3] = 2.5 * turn
    alignment[:3, 3] = [0.1, -0.2, 0.3]
    return {
        "extrinsics": np.tile(np.eye(3, 4), (N, 1, 1)) + rng.normal(0, 0.01, (N, 3, 4)),
        "intrinsics": np.repeat(np.array([[9.0, 0, 4], [0, 9, 3], [0, 0, 1]])[None], N, 0),
        "intrinsics_original": np.repeat(np.array([[90.0, 0, 40], [0, 90, 30], [0, 0, 1]])[None], N, 0),
        "source_paths": ["/clips/shot.mov"] * N,
        "frame_indices": np.arange(10, 10 + 2 * N, 2),
        "timestamps_s": np.arange(10, 10 + 2 * N, 2) / 24.0,
        "original_sizes": np.array([[60, 80]] * N),
        "points_xyz": rng.normal(size=(M, 3)).astype(np.float32),
        "points_rgb": rng.integers(0, 256, (M, 3), dtype=np.uint8),
        "points_conf": rng.uniform(1, 3, M).astype(np.float32),
        "points_view": rng.integers(0, N, M).astype(np.int32),
        "image_hw": np.array([H, W]),
        "world_alignment": alignment,
        "floor_plane": np.array([0.0, -1.0, 0.0, 1.5]),
    }


def shot_meta() -> dict:
    report = {
        "frames": list(range(N)),
        "frame_error_px": [0.5, 0.4, None, 0.7, 0.6],
        "median_error_px": 0.55,
        "worst_frames": [[3, 0.7]],
        "joints": [],
        "method": "reprojection",
    }
    shot = {
        "fps": 24.0,
        "frame_count": 40,
        "focal_px": 90.0,
        "focal_y_px": 90.5,
        "focal_spread_px": 0.25,
        "chunk_size": 4,
        "overlap": 2,
        "chunks": [[0, 3], [1, 4]],
    }
    return {"units": "relative", "model_id": "da3-small", "report": report, "shot": shot}


def test_a_shot_bundle_round_trips_without_images_or_depth(tmp_path):
    src, meta = shot_arrays(), shot_meta()
    folder = write_bundle(tmp_path / "shot", src, meta)
    b = read_bundle(folder)
    assert b.images is None and b.depth is None and b.conf is None and b.sky is None
    assert b.num_views == N and b.image_hw == (H, W) and b.image_size == (H, W)
    assert isinstance(b.points, BundlePoints) and len(b.points) == M
    for field, key, dtype in (
        ("xyz", "points_xyz", np.float32),
        ("rgb", "points_rgb", np.uint8),
        ("conf", "points_conf", np.float32),
        ("view", "points_view", np.int32),
    ):
        value = getattr(b.points, field)
        assert value.dtype == dtype
        np.testing.assert_array_equal(value, src[key])
    assert b.world_alignment.dtype == np.float64 and b.floor_plane.dtype == np.float64
    np.testing.assert_array_equal(b.world_alignment, src["world_alignment"])
    np.testing.assert_array_equal(b.floor_plane, src["floor_plane"])
    assert b.report == meta["report"] and b.shot == meta["shot"]
    assert b.frame_indices.tolist() == list(range(10, 20, 2))
    np.testing.assert_allclose(b.timestamps_s, np.arange(10, 20, 2) / 24.0)
    np.testing.assert_allclose(b.intrinsics_original[0, 0, 0], 90.0)
    summary = json.loads((folder / MANIFEST_FILE).read_text())["summary"]
    assert summary["num_views"] == N and (summary["height"], summary["width"]) == (H, W)
    assert summary["num_points"] == M and summary["shot"] is True
    assert summary["has_images"] is False and summary["has_depth"] is False
    # plain numpy reads every member without pickle, and the report is strict JSON (no NaN)
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:
        assert "images" not in npz.files and "depth" not in npz.files
        assert "NaN" not in str(npz["report_json"])


def test_the_shot_bundle_memory_maps_too(tmp_path):
    src = shot_arrays()
    src["points_xyz"] = np.random.default_rng(1).normal(size=(20_000, 3)).astype(np.float32)
    src["points_rgb"] = np.zeros((20_000, 3), np.uint8)
    src["points_conf"] = np.ones(20_000, np.float32)
    src["points_view"] = np.zeros(20_000, np.int32)
    b = read_bundle(write_bundle(tmp_path / "shot", src, shot_meta()), mmap=True)
    assert isinstance(b.points.xyz, np.memmap) and len(b.points) == 20_000
    assert b.image_hw == (H, W) and b.shot["fps"] == 24.0


def test_a_still_bundle_reads_as_before_with_the_new_fields_empty(tmp_path):
    rng = np.random.default_rng(0)
    src = {
        "images": rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8),
        "depth": rng.uniform(1, 2, (N, H, W)).astype(np.float32),
        "extrinsics": np.tile(np.eye(3, 4), (N, 1, 1)),
        "intrinsics": np.repeat(np.array([[9.0, 0, 4], [0, 9, 3], [0, 0, 1]])[None], N, 0),
    }
    folder = write_bundle(tmp_path / "stills", src)
    b = read_bundle(folder)
    np.testing.assert_array_equal(b.images, src["images"])
    np.testing.assert_array_equal(b.depth, src["depth"])
    assert b.num_views == N and b.image_hw == (H, W) and b.image_size == (H, W)
    assert b.points is None and b.world_alignment is None and b.floor_plane is None
    assert b.report is None and b.shot is None
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:
        assert not {"image_hw", "points_xyz", "report_json", "shot_json"} & set(npz.files)
    summary = json.loads((folder / MANIFEST_FILE).read_text())["summary"]
    assert summary["has_images"] and summary["has_depth"] and summary["num_points"] == 0


def test_a_still_bundle_may_carry_points_beside_its_depth(tmp_path):
    src = shot_arrays()
    src["images"] = np.zeros((N, H, W, 3), np.uint8)
    src["depth"] = np.ones((N, H, W), np.float32)
    b = read_bundle(write_bundle(tmp_path / "both", src))
    assert b.depth.shape == (N, H, W) and len(b.points) == M and b.shot is None


def _bad(**change) -> dict:
    return {**shot_arrays(), **change}


@pytest.mark.parametrize(
    ("arrays", "meta", "message"),
    [
        (_bad(image_hw=None), {}, "needs image_hw"),
        (_bad(points_xyz=None), {}, "either \\['images', 'depth'\\] or the point cloud"),
        (_bad(points_view=None), {}, "needs all of"),
        (_bad(points_rgb=np.zeros((M - 1, 3), np.uint8)), {}, "points_rgb must have shape"),
        (_bad(points_rgb=np.full((M, 3), 300)), {}, "uint8 colours"),
        (_bad(points_view=np.full(M, N)), {}, "view indices 0..4"),
        (_bad(image_hw=np.array([H, 0])), {}, "two positive whole numbers"),
        (_bad(images=np.zeros((N, H + 1, W, 3), np.uint8)), {}, "does not match the images"),
        (_bad(world_alignment=np.diag([1.0, 2.0, 1.0, 1.0])), {}, "uniform positive scale"),
        (_bad(world_alignment=np.diag([1.0, 1.0, -1.0, 1.0])), {}, "no mirror"),
        (_bad(world_alignment=np.ones((4, 4))), {}, "last row"),
        (_bad(floor_plane=np.array([0.0, 2.0, 0.0, 1.0])), {}, "unit normal"),
        (_bad(), {"report": {"frame_error_px": [1.0]}}, "one entry per view"),
        (_bad(), {"report": {"frame_error_px": [float("nan")] * N}}, "strict JSON"),
        (_bad(), {"shot": {"fps": 24.0}}, "shot_json lacks"),
        (_bad(), {"shot": "[1, 2]"}, "JSON object"),
        (_bad(), {"shot": {}, "shot_json": "{}"}, "not both"),
    ],
)
def test_bad_shot_data_is_explained(tmp_path, arrays, meta, message):
    with pytest.raises(BundleError, match=message):
        write_bundle(tmp_path / "shot", arrays, meta)
    assert not is_complete(tmp_path / "shot")
