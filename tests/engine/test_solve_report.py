"""Solve report: ≈ 0 px for an exact solve, grows with noise, finds a bad frame, plate pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.geometry.cameras import quaternion_wxyz_to_matrix
from engine.geometry.solve_report import build_solve_report, frame_errors, match_offsets
from engine.geometry.streaming import ChunkStore, StreamingJoiner, plan_chunks
from tests.engine import synthetic_shot as shot

H, W, F = 96, 128, 112.0  # twice the streaming tests' size: room for 7×7 patches
FAST = {"neighbours": (1, 2), "samples": 150}


@pytest.fixture(scope="module")
def exact():
    return shot.render(30, h=H, w=W, focal=F)


def turned(w2c: np.ndarray, degrees: float, axis=(1.0, 0.0, 0.0)) -> np.ndarray:
    """The same camera turned about its own centre by ``degrees`` about a camera axis."""
    half = np.radians(degrees) / 2
    rot = quaternion_wxyz_to_matrix(np.r_[np.cos(half), np.sin(half) * np.asarray(axis)])
    return rot @ w2c


def test_patch_matching_recovers_a_known_subpixel_shift():
    yy, xx = np.mgrid[0:80, 0:100] + 0.5

    def image(x, y):
        return 0.5 + 0.2 * np.sin(x / 3.1 + 0.4 * y / 2.3) + 0.15 * np.cos(y / 2.7 - x / 5.0)

    shift = np.array([0.37, -0.81])
    gray_i, gray_j = image(xx, yy), image(xx - shift[0], yy - shift[1])  # content moves by +shift
    pix = np.stack(np.meshgrid(np.arange(15, 85, 7), np.arange(15, 65, 7)), -1).reshape(-1, 2)
    offsets = match_offsets(pix, gray_i, pix + 0.5, gray_j)
    np.testing.assert_allclose(offsets, np.broadcast_to(shift, offsets.shape), atol=0.02)
    # a prediction 3 px off is found by the integer search
    offsets = match_offsets(pix, gray_i, pix + 0.5 + [3.0, -2.0], gray_j)
    np.testing.assert_allclose(offsets, np.broadcast_to(shift - [3.0, -2.0], offsets.shape), atol=0.02)


def test_an_exact_solve_reports_almost_zero(exact):
    image, depth = frame_errors(exact.depth, exact.intrinsics, exact.extrinsics, images=exact.images, **FAST)
    assert np.isfinite(image).all() and np.isfinite(depth).all()
    assert np.median(image) < 0.1  # patch matching's own floor (bilinear resampling), measured ≈ 0.05
    assert depth.max() < 1e-4  # exact depth maps agree exactly


def test_the_error_grows_with_camera_and_depth_noise(exact):
    rng = np.random.default_rng(0)
    medians, depth_medians = [], []
    for level in (0.0, 0.1, 0.3, 0.6):  # degrees of random camera rotation, and % of depth noise
        w2c = np.stack([turned(e, level, rng.normal(size=3) / np.sqrt(3)) for e in exact.extrinsics])
        depth = exact.depth * (1 + level / 100 * rng.standard_normal(exact.depth.shape)).astype(np.float32)
        image, depth_err = frame_errors(depth, exact.intrinsics, w2c, images=exact.images, **FAST)
        medians.append(np.median(image))
        depth_medians.append(np.median(depth_err))
    assert np.all(np.diff(medians) > 0) and np.all(np.diff(depth_medians) > 0)
    # a camera turned by 0.6° is off by about f·angle = 1.2 px against each of its neighbours
    assert 0.5 < medians[-1] < 2.5


def test_a_badly_solved_frame_stands_out(exact):
    w2c = exact.extrinsics.copy()
    w2c[17] = turned(w2c[17], 0.5)
    report = build_solve_report(
        exact.frames,
        w2c,
        exact.intrinsics,
        [(exact.frames, exact.depth, None, exact.images)],
        image_hw=(H, W),
        **FAST,
    )
    frame, error = report.worst_frames[0]
    assert frame == 17
    assert error == pytest.approx(F * np.radians(0.5), rel=0.2)  # f · angle ≈ 0.98 px
    others = np.delete(report.frame_error_px, 17)
    assert np.median(others) < 0.1 and report.method == "reprojection"


def test_errors_are_in_plate_pixels_and_blocks_give_the_same_numbers(exact):
    rng = np.random.default_rng(1)
    w2c = np.stack([turned(e, 0.2, rng.normal(size=3) / np.sqrt(3)) for e in exact.extrinsics])
    cuts = [0, 4, 11, 12, 25, 30]  # uneven blocks, like joined parts
    blocks = [
        (exact.frames[a:b], exact.depth[a:b], None, exact.images[a:b])
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    processed = build_solve_report(exact.frames, w2c, exact.intrinsics, blocks, image_hw=(H, W), **FAST)
    in_memory, _ = frame_errors(exact.depth, exact.intrinsics, w2c, images=exact.images, **FAST)
    np.testing.assert_allclose(processed.frame_error_px, in_memory)
    plate = build_solve_report(
        exact.frames, w2c, exact.intrinsics, blocks, image_hw=(H, W), plate_hw=(4 * H, 4 * W), **FAST
    )
    np.testing.assert_allclose(plate.frame_error_px, 4 * processed.frame_error_px)
    assert plate.focal_px == pytest.approx(4 * F) and plate.focal_spread_px == 0.0
    assert plate.pixel_units == "plate" and processed.pixel_units == "processed"
    plate_k = exact.intrinsics * [[4], [4], [1]]
    same = build_solve_report(
        exact.frames, w2c, exact.intrinsics, blocks, image_hw=(H, W), plate_intrinsics=plate_k, **FAST
    )
    np.testing.assert_allclose(same.frame_error_px, plate.frame_error_px)


def test_without_images_the_report_falls_back_to_depth_consistency(exact):
    depth = exact.depth * (1 + 0.01 * np.random.default_rng(2).standard_normal(exact.depth.shape))
    report = build_solve_report(
        exact.frames,
        exact.extrinsics,
        exact.intrinsics,
        [(exact.frames, depth, None)],
        image_hw=(H, W),
        **FAST,
    )
    assert report.method == "depth"
    np.testing.assert_array_equal(report.frame_error_px, report.depth_error_px)
    assert 0 < report.median_error_px < 1


def test_report_of_a_joined_shot_lists_joints_and_serialises(tmp_path):
    n = 40
    ranges = plan_chunks(n, 16, 6)
    chunks, _ = shot.make_chunks(n, ranges, seed=5, h=H, w=W, focal=F, depth_noise=0.005, pose_noise=0.001)
    joiner = StreamingJoiner(ChunkStore(tmp_path))
    for c in chunks:
        joiner.add(c)
    joined = joiner.finish()
    report = build_solve_report(
        joined.frames,
        joined.extrinsics,
        joined.intrinsics,
        joined.iter_blocks(),
        image_hw=joined.image_hw,
        plate_hw=(1080, 1440),
        joints=joined.joints,
        **FAST,
    )
    assert len(report.joints) == len(chunks) - 1
    assert all(j["method"] == "points" and j["relative_residual"] < 0.02 for j in report.joints)
    assert report.method == "reprojection" and np.isfinite(report.frame_error_px).all()
    # 0.001 rad of pose noise is ≈ 1.3 px on a 1440-wide plate with this lens: seen, not hidden
    assert 0.3 < report.median_error_px < 3.0
    data = json.loads(json.dumps(report.to_dict()))
    assert data["frames"] == list(range(n)) and len(data["frame_error_px"]) == n
    assert data["worst_frames"][0][1] == pytest.approx(max(report.frame_error_px))
    text = report.summary()
    assert "px median" in text and "chunk joints" in text and "Focal length" in text
