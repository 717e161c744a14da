"""What ``predict`` promises beyond parity: known cameras for any view count, units, reproducible ray
pose, reference views, feature export and input handling. Runs on generated checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.model.random_weights import write_random_checkpoint  # noqa: E402
from engine.model.ray_pose import cameras_from_rays  # noqa: E402
from engine.pipeline import predict  # noqa: E402
from engine.weights import load_model  # noqa: E402
from tests.engine.media import real_looking_image  # noqa: E402

RES = 112


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return load_model(
        write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "small", "da3-small"), device="cpu"
    )


@pytest.fixture(scope="module")
def images():
    base = real_looking_image(120, 180, seed=4)
    return [np.roll(base, 11 * i, axis=1) for i in range(4)]


def _look_at(centres: np.ndarray, target=(0.0, 0.0, 4.0)) -> np.ndarray:
    """World-to-camera (N,4,4), OpenCV axes, cameras at ``centres`` looking at ``target``."""
    out = []
    for c in centres:
        z = np.asarray(target) - c
        z /= np.linalg.norm(z)
        x = np.cross([0.0, -1.0, 0.0], z)
        x /= np.linalg.norm(x)
        r = np.stack([x, np.cross(z, x), z])
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = r, -r @ c
        out.append(m)
    return np.stack(out)


def _intrinsics(n: int, h=120, w=180, f=150.0) -> np.ndarray:
    return np.tile(np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]), (n, 1, 1))


RIGS = {
    "one view": np.array([[0.0, 0, 0]]),
    "two views": np.array([[0.0, 0, 0], [0.5, 0, 0]]),
    "dolly (collinear)": np.array([[0.0, 0, 0], [0.3, 0, 0], [0.7, 0, 0]]),
    "arc": np.array([[0.0, 0, 0], [0.4, 0.05, 0.1], [0.8, -0.05, 0.3], [1.1, 0, 0.6]]),
}


@pytest.mark.parametrize("rig", list(RIGS))
def test_known_cameras_any_view_count(small, images, rig):
    """The official code fails for 1–2 views and collinear rigs; ours returns the given cameras and
    depth in their units: doubling the rig's size doubles the depth (except one view: no scale info)."""
    centres = RIGS[rig]
    n = len(centres)
    w2c = _look_at(centres)
    k = _intrinsics(n)
    pred = predict(small, images[:n], process_res=RES, extrinsics=w2c, intrinsics=k)
    assert pred.units == "input" and np.isfinite(pred.depth).all() and (pred.depth > 0).all()
    np.testing.assert_allclose(pred.extrinsics, w2c[:, :3], atol=1e-6)
    assert pred.depth.shape[1:] == (70, 112)  # 120×180 → 75×112 → the nearest multiples of 14
    np.testing.assert_allclose(pred.intrinsics, k * [[112 / 180] * 3, [70 / 120] * 3, [1] * 3], rtol=1e-5)
    w2c_big = w2c.copy()
    w2c_big[:, :3, 3] *= 2.0
    big = predict(small, images[:n], process_res=RES, extrinsics=w2c_big, intrinsics=k)
    expected = 1.0 if n == 1 else 2.0
    np.testing.assert_allclose(big.depth / pred.depth, expected, rtol=1e-3)


def test_known_cameras_ransac_path(small, images):
    """Ten views or more use the seeded RANSAC alignment; still deterministic and in the input's units."""
    angles = np.linspace(0, 0.9, 10)
    centres = np.stack([3 * np.sin(angles), 0.1 * np.cos(3 * angles), 4 - 3 * np.cos(angles)], axis=1)
    w2c, k = _look_at(centres), _intrinsics(10)
    frames = [np.roll(images[0], 7 * i, axis=0) for i in range(10)]
    a = predict(small, frames, process_res=RES, extrinsics=w2c, intrinsics=k)
    b = predict(small, frames, process_res=RES, extrinsics=w2c, intrinsics=k)
    assert a.scale_factor == b.scale_factor and np.array_equal(a.depth, b.depth)


def test_cameras_must_come_in_pairs(small, images):
    with pytest.raises(ValueError, match="both extrinsics and intrinsics"):
        predict(small, images[:2], process_res=RES, intrinsics=_intrinsics(2))
    with pytest.raises(ValueError, match="3 images need 3"):
        predict(
            small,
            images[:3],
            process_res=RES,
            extrinsics=_look_at(RIGS["two views"]),
            intrinsics=_intrinsics(3),
        )


def test_ray_solver_recovers_a_known_camera():
    """A ray map made from a known camera (centred principal point) gives that camera back."""
    h, w, big_h, big_w = 64, 96, 112, 168
    fx, fy = 1.1 * big_w / 2, 1.05 * big_h / 2
    angle = 0.3
    rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    centre = np.array([0.3, -0.2, 1.5])
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    x_n, y_n = (2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1  # normalised coordinates, centred
    d_cam = np.stack([x_n / (2 * fx / big_w), y_n / (2 * fy / big_h), np.ones_like(x_n)], -1)
    rays = np.concatenate([d_cam @ rot.T, np.broadcast_to(centre, d_cam.shape)], -1)
    ray = torch.from_numpy(rays[None]).float()
    w2c, k = cameras_from_rays(ray, torch.ones(1, h, w), big_h, big_w, seed=5)
    np.testing.assert_allclose(w2c[0, :, :3].numpy(), rot.T, atol=1e-4)
    np.testing.assert_allclose(-(rot @ w2c[0, :, 3].numpy()), centre, atol=1e-4)
    np.testing.assert_allclose(
        k[0].numpy(), [[fx, 0, big_w / 2], [0, fy, big_h / 2], [0, 0, 1]], rtol=1e-3, atol=1e-2
    )


def test_ray_pose_is_reproducible_with_a_seed(small, images):
    a = predict(small, images[:3], process_res=RES, use_ray_pose=True, seed=11)
    b = predict(small, images[:3], process_res=RES, use_ray_pose=True, seed=11)
    assert np.array_equal(a.extrinsics, b.extrinsics) and np.array_equal(a.intrinsics, b.intrinsics)


def test_reference_view_is_the_world_frame(small, images):
    """Forcing view 2 as reference equals running the views reordered with view 2 first."""
    imgs = images[:4]
    a = predict(small, imgs, process_res=RES, ref_view_idx=2, export_feat_layers=(1, 5))
    b = predict(small, [imgs[2], imgs[0], imgs[1], imgs[3]], process_res=RES, ref_view_strategy="first")
    assert a.ref_view_idx == 2 and b.ref_view_idx == 0
    np.testing.assert_allclose(a.depth[[2, 0, 1, 3]], b.depth, rtol=1e-4)
    np.testing.assert_allclose(a.extrinsics[[2, 0, 1, 3]], b.extrinsics, atol=1e-4)
    assert set(a.features) == {1, 5} and a.features[5].shape == (4, 5, 8, 384)  # 70×112 px = 5×8 patches
    c = predict(small, imgs, process_res=RES, ref_view_strategy="first", export_feat_layers=(1,))
    np.testing.assert_allclose(a.features[1], c.features[1], atol=1e-5)  # before the reorder: input order
    assert predict(small, imgs, process_res=RES, ref_view_strategy="middle").ref_view_idx == 2
    assert predict(small, imgs[:2], process_res=RES).ref_view_idx == -1  # fewer than 3 views: no selection


def test_image_files_of_every_kind(small, tmp_path):
    """Paths go through the same loader as the worker: grayscale, RGBA, 16-bit, EXIF rotation."""
    from PIL import Image

    rgb = real_looking_image(90, 140, seed=2)
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display: the portrait photo is 140 high, 90 wide
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif)
    pred = predict(small, [str(tmp_path / n) for n in ("gray.png", "rgba.png", "deep.png")], process_res=RES)
    assert pred.processed_images.shape == (3, 70, 112, 3)
    portrait = predict(small, [tmp_path / "rotated.jpg"], process_res=RES)
    assert portrait.processed_images.shape[1:3] == (112, 70)
    assert portrait.transforms[0].original_hw == (140, 90)


@pytest.fixture(scope="module")
def metric_folder(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "metric", "da3metric-large", seed=2)


def test_metric_model_reports_metres_from_the_focal_length(metric_folder, images):
    """Metric depth is canonical × focal/300: with a known lens the focal is the user's."""
    model = load_model(metric_folder, device="cpu")
    known = predict(model, images[:1], process_res=RES, intrinsics=_intrinsics(1, f=200.0))
    guessed = predict(model, images[:1], process_res=RES)
    assert known.is_metric and known.units == "metre" and known.notes == ()
    assert guessed.is_metric and "60°" in guessed.notes[0]
    focal = lambda p: (p.intrinsics[0, 0, 0] + p.intrinsics[0, 1, 1]) / 2  # noqa: E731
    np.testing.assert_allclose(focal(known), 200.0 * (112 / 180 + 70 / 120) / 2, rtol=1e-6)
    np.testing.assert_allclose(known.depth, guessed.depth * focal(known) / focal(guessed), rtol=1e-5)
    assert known.sky is not None and known.sky.dtype == bool


def test_mono_model_stays_relative(metric_folder, images, tmp_path):
    mono = tmp_path / "mono"
    mono.mkdir()
    (mono / "model.safetensors").symlink_to(metric_folder / "model.safetensors")  # same keys as metric
    (mono / "config.json").write_text(json.dumps({"model_name": "da3mono-large"}))
    pred = predict(load_model(mono, device="cpu"), images[:1], process_res=RES)
    assert not pred.is_metric and pred.units == "relative" and pred.conf is None


def test_reference_strategies_pick_from_class_tokens():
    """saddle_balanced takes the most "average" view; saddle_sim_range the widest similarity range."""
    from engine.model.refview import reference_scores, select_reference_view

    tokens = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.7, 0.7, 0.0], [0.0, 1.0, 0.1]])
    stream = tokens[None, :, None, :]  # (B, S, T, C): token 0 of each view
    assert select_reference_view(stream, "first") == 0
    assert select_reference_view(stream, "middle") == 2
    sim_range = -reference_scores(tokens, "saddle_sim_range")
    assert select_reference_view(stream, "saddle_sim_range") == int(torch.argmax(sim_range))
    assert select_reference_view(stream, "saddle_balanced") == int(
        torch.argmin(reference_scores(tokens, "saddle_balanced"))
    )
    with pytest.raises(ValueError, match="choose one of first, middle, saddle_balanced, saddle_sim_range"):
        reference_scores(tokens, "best")
