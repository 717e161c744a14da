"""The job runner in-process (engine.jobs) and the metric scale fit (engine.geometry.metric_scale).

Jobs run on a random da3-small checkpoint we generate, over synthetic images, with a context that
records what a client would see. The real engine process is tested in test_engine_process.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plyfile
import pycolmap
import pytest
import torch
from PIL import Image

from engine import jobs
from engine.errors import JobCancelled, UserError
from engine.formats.bundle import is_complete, read_bundle, write_bundle
from engine.geometry.metric_scale import MetricScaleError, fit_scale, scale_prediction
from engine.jobs.cameras_file import read_cameras
from engine.preprocess import preprocess_images
from engine.process import protocol as p
from engine.weights import load_model
from tests.engine.media import make_test_image

RES = 112


class RecordingContext:
    """A job context that records events; ``cancel_at(stage, current)`` cancels when that progress is seen."""

    def __init__(self, models: dict | None = None, cancel_at: tuple[str, int] | None = None) -> None:
        self.job = "testjob"
        self.events: list[tuple] = []
        self.files: dict[str, str] = {}
        self.models = dict(models or {})
        self.cancel_at = cancel_at
        self._cancel = False

    def model_for(self, source: str, device: str = "auto", dtype: str = "auto"):
        if source not in self.models:
            self.models[source] = load_model(source, device="cpu", dtype="float32")
        return self.models[source]

    def progress(self, stage: str, current: int, total: int, message: str = "") -> None:
        self.events.append(("progress", stage, current, total))
        if self.cancel_at == (stage, current):
            self._cancel = True

    def log(self, level: str, message: str) -> None:
        self.events.append(("log", level, message))

    def result(self, files, summary=None) -> None:
        self.files = dict(files)

    def cancelled(self) -> bool:
        return self._cancel

    def check_cancel(self) -> None:
        if self._cancel:
            raise JobCancelled()

    def stages(self) -> list[str]:
        seen: list[str] = []
        for event in self.events:
            if event[0] == "progress" and event[1] not in seen:
                seen.append(event[1])
        return seen


def save_images(folder: Path, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """PNG stills ``img0.png``… of the given (H, W) sizes; returns the pixels written."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [make_test_image(i, h, w) for i, (h, w) in enumerate(sizes)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img{i}.png")
    return images


def request(inputs, output: Path, model, **options) -> p.ReconstructRequest:
    options.setdefault("process_res", RES)
    return p.ReconstructRequest(
        job="testjob",
        inputs=tuple(str(i) for i in inputs),
        output=str(output),
        model=str(model),
        options=p.JobOptions(**options),
    )


# --- the job ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["upper_bound_resize", "lower_bound_crop"])
def test_the_network_sees_exactly_da3_preprocessing_and_cameras_map_to_the_originals(
    small_checkpoint, tmp_path, method
):
    # Mixed sizes (two landscape, one portrait): each frame is resized while decoding, then batch-cropped.
    originals = save_images(tmp_path / "in", [(96, 128), (128, 96), (96, 128)])
    context = RecordingContext()
    summary = jobs.run_job(
        request([tmp_path / "in"], tmp_path / "out", small_checkpoint, process_res_method=method), context
    )

    b = read_bundle(tmp_path / "out")
    expected, transforms = preprocess_images(originals, RES, method)
    assert b.images.shape == expected.shape
    assert np.abs(b.images.astype(int) - expected.astype(int)).max() <= 1  # only the uint8 round trip
    for i, t in enumerate(transforms):
        np.testing.assert_allclose(
            b.intrinsics_original[i], t.processed_to_original_intrinsics(b.intrinsics[i]), rtol=1e-5
        )
    assert b.original_sizes.tolist() == [[96, 128], [128, 96], [96, 128]]
    assert b.source_paths == tuple(str(tmp_path / "in" / f"img{i}.png") for i in range(3))
    assert b.frame_indices.tolist() == [-1, -1, -1] and np.isnan(b.timestamps_s).all()
    assert b.units == "relative" and not b.is_metric and b.model_id == str(small_checkpoint)
    assert b.options["process_res_method"] == method and b.options["process_res"] == RES
    assert {"decode", "load", "preprocess", "network", "postprocess"} <= set(b.timings)
    assert context.stages() == ["decode", "load", "preprocess", "network", "postprocess", "export"]
    decode = [e for e in context.events if e[:2] == ("progress", "decode") and e[2] > 0]
    assert [e[2] for e in decode] == [1, 2, 3] and decode[-1][3] == 3  # per-frame counts
    assert summary["views"] == 3 and context.files == {"bundle": str(tmp_path / "out" / "reconstruction.npz")}


def test_known_cameras_are_kept_and_their_units_used(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 3)
    k = np.array([[[110.0, 0, 64], [0, 105.0, 48], [0, 0, 1]]] * 3)
    angles = np.radians([0.0, 10.0, 20.0])
    w2c = np.tile(np.eye(4), (3, 1, 1))
    w2c[:, 0, 0] = w2c[:, 2, 2] = np.cos(angles)
    w2c[:, 0, 2], w2c[:, 2, 0] = np.sin(angles), -np.sin(angles)
    w2c[:, :3, 3] = [[0, 0, 0], [-0.5, 0, 0.1], [-1.0, 0, 0.3]]
    np.savez(tmp_path / "cams.npz", extrinsics=w2c, intrinsics=k)

    jobs.run_job(
        request([tmp_path / "in"], tmp_path / "out", small_checkpoint, cameras=str(tmp_path / "cams.npz")),
        RecordingContext(),
    )
    b = read_bundle(tmp_path / "out")
    np.testing.assert_allclose(b.extrinsics, w2c[:, :3], atol=1e-6)
    np.testing.assert_allclose(b.intrinsics_original, k, rtol=1e-5)
    assert b.units == "input" and np.isfinite(b.scale_factor)


class FakeMetricNet(torch.nn.Module):
    """A stand-in for DA3METRIC-LARGE that returns ``factor`` × a known depth (in its canonical units), and
    sky with absurd depth in one corner, so the job's metric fit has a known answer."""

    model_name = "da3metric-large"
    predicts_cameras = False
    run_device = torch.device("cpu")

    def __init__(self, depth: np.ndarray, intrinsics: np.ndarray, factor: float) -> None:
        super().__init__()
        self.depth = depth  # (N, H, W) the any-view depth this job will predict
        self.intrinsics = intrinsics  # (N, 3, 3) its processed-pixel intrinsics
        self.factor = factor

    def forward(self, x, **kwargs) -> dict:
        focal = (self.intrinsics[:, 0, 0] + self.intrinsics[:, 1, 1]) / 2
        sky = np.zeros(self.depth.shape, bool)
        sky[:, :10, :10] = True
        metres = np.where(sky, 1000.0 * self.depth, self.factor * self.depth)
        canonical = metres * 300.0 / focal[:, None, None]
        return {
            "head_depth": torch.from_numpy(canonical.astype(np.float32))[None],
            "out_sky": torch.from_numpy(sky)[None],
            "ref_view_idx": torch.tensor(0),
        }


def test_metric_option_scales_depth_cameras_to_metres_with_the_metric_model(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 3)
    context = RecordingContext()
    jobs.run_job(request([tmp_path / "in"], tmp_path / "rel", small_checkpoint), context)
    rel = read_bundle(tmp_path / "rel")

    fake = FakeMetricNet(np.array(rel.depth), np.array(rel.intrinsics), factor=2.5)
    metric_context = RecordingContext(models={**context.models, "fake/metric": fake})
    summary = jobs.run_job(
        request([tmp_path / "in"], tmp_path / "m", small_checkpoint, metric=True, metric_model="fake/metric"),
        metric_context,
    )
    b = read_bundle(tmp_path / "m")
    assert b.units == "metre" and b.is_metric and b.scale_factor == pytest.approx(2.5, rel=1e-5)
    np.testing.assert_allclose(b.depth, 2.5 * rel.depth, rtol=1e-5)
    np.testing.assert_allclose(b.extrinsics[:, :, 3], 2.5 * rel.extrinsics[:, :, 3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.extrinsics[:, :, :3], rel.extrinsics[:, :, :3])
    assert b.sky is not None and b.sky[:, :10, :10].all() and b.sky.sum() == 3 * 100  # the metric model's sky
    assert "metric" in metric_context.stages() and summary["units"] == "metre"


class FakeGiantNet(torch.nn.Module):
    """A stand-in for DA3-GIANT (1 B parameters is too much for a test): fixed depth, cameras and Gaussians."""

    model_name = "da3-giant"
    predicts_cameras = True
    run_device = torch.device("cpu")

    def forward(self, x, **kwargs) -> dict:
        _, n, _, h, w = x.shape
        rng = np.random.default_rng(0)
        m = n * h * w
        k = np.array([[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]])
        arrays = {
            "head_depth": rng.uniform(1, 2, (n, h, w)),
            "head_conf": rng.uniform(1, 5, (n, h, w)),
            "net_out_extrinsics": np.tile(np.eye(4)[:3], (n, 1, 1)),
            "net_out_intrinsics": np.tile(k, (n, 1, 1)),
            "gs_means": rng.standard_normal((m, 3)),
            "gs_scales": rng.uniform(0.01, 0.1, (m, 3)),
            "gs_rotations": np.tile([1.0, 0, 0, 0], (m, 1)),
            "gs_harmonics": rng.standard_normal((m, 3, 9)),
            "gs_opacities": rng.uniform(0, 1, m),
        }
        out = {key: torch.from_numpy(a.astype(np.float32))[None] for key, a in arrays.items()}
        return {**out, "ref_view_idx": torch.tensor(0)}


def test_gaussians_from_a_giant_model_go_to_the_bundle_and_a_3dgs_ply(tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 2)
    context = RecordingContext(models={"giant": FakeGiantNet()})
    req = request([tmp_path / "in"], tmp_path / "out", "giant", infer_gs=True, exports=("gaussians",))
    jobs.run_job(req, context)
    b = read_bundle(tmp_path / "out")
    assert b.gaussians is not None and len(b.gaussians) == 2 * 84 * 112
    vertex = plyfile.PlyData.read(str(tmp_path / "out" / "gaussians.ply"))["vertex"]
    assert vertex.count == len(b.gaussians)
    for name in ("f_dc_0", "f_rest_23", "opacity", "scale_2", "rot_3"):
        assert name in vertex.data.dtype.names
    np.testing.assert_allclose(np.stack([vertex["x"], vertex["y"], vertex["z"]], 1), b.gaussians.means)
    np.testing.assert_allclose(np.exp(vertex["scale_0"]), b.gaussians.scales[:, 0], rtol=1e-5)
    assert context.files["gaussians"] == str(tmp_path / "out" / "gaussians.ply")


def test_splat_previews_render_the_predicted_gaussians_from_each_view(tmp_path, monkeypatch):
    pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat is not installed")
    from engine.render import splats

    save_images(tmp_path / "in", [(96, 128)] * 2)
    context = RecordingContext(models={"giant": FakeGiantNet()})
    req = request([tmp_path / "in"], tmp_path / "out", "giant", infer_gs=True, exports=("splat_previews",))
    jobs.run_job(req, context)
    b = read_bundle(tmp_path / "out")
    files = sorted((tmp_path / "out" / "splat_previews").iterdir())
    assert [f.name for f in files] == ["splats_0000.png", "splats_0001.png"]
    image = np.asarray(Image.open(files[0]), np.float32) / 255.0
    view = np.eye(4)
    view[:3] = b.extrinsics[0]
    expected = splats.render_gaussians(b.gaussians, view, b.intrinsics[0], 112, 84)
    assert image.shape == (84, 112, 3) and image.max() > 0.1
    np.testing.assert_allclose(image, np.clip(expected, 0, 1), atol=1 / 255 + 1e-6)  # the PNG keeps 0..1
    # without gsplat the job still succeeds: the previews are skipped with a warning saying what is missing
    monkeypatch.setattr(splats, "gsplat_available", lambda: False)
    context = RecordingContext(models={"giant": FakeGiantNet()})
    req = request([tmp_path / "in"], tmp_path / "out2", "giant", infer_gs=True, exports=("splat_previews",))
    jobs.run_job(req, context)
    assert any(e[1] == "warning" and "pip install gsplat" in e[2] for e in context.events if e[0] == "log")
    assert not list((tmp_path / "out2" / "splat_previews").iterdir())


def test_metric_option_refuses_a_model_that_is_not_metric(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 2)
    req = request(
        [tmp_path / "in"], tmp_path / "m", small_checkpoint, metric=True, metric_model=str(small_checkpoint)
    )
    with pytest.raises(UserError, match="not a metric depth model.*DA3METRIC-LARGE"):
        jobs.run_job(req, RecordingContext())
    assert not is_complete(tmp_path / "m")


def test_cancel_while_decoding_raises_and_writes_nothing(small_checkpoint, tmp_path):
    save_images(tmp_path / "in", [(96, 128)] * 4)
    context = RecordingContext(cancel_at=("decode", 1))
    with pytest.raises(JobCancelled):
        jobs.run_job(request([tmp_path / "in"], tmp_path / "out", small_checkpoint), context)
    assert not (tmp_path / "out").exists()
    assert "network" not in context.stages()


def test_cancel_while_exporting_keeps_the_old_bundle_whole(small_checkpoint, tmp_path):
    """Issue 10: a failed re-run never touches the finished result already in the folder."""
    save_images(tmp_path / "in", [(96, 128)] * 2)
    jobs.run_job(request([tmp_path / "in"], tmp_path / "out", small_checkpoint), RecordingContext())
    assert is_complete(tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}

    context = RecordingContext(cancel_at=("export", 1))
    req = request([tmp_path / "in"], tmp_path / "out", small_checkpoint, exports=("points", "depth"))
    with pytest.raises(JobCancelled):
        jobs.run_job(req, context)
    assert is_complete(tmp_path / "out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert read_bundle(tmp_path / "out").num_views == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.da3-lock", "in", "out"]  # no staging left


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"infer_gs": True, "exports": ("gaussians",)}, "Gaussians need a giant model"),
        ({"metric": True, "cameras": "cams.json"}, "Known cameras already fix the units"),
    ],
)
def test_requests_the_engine_cannot_serve_fail_with_what_to_do(small_checkpoint, tmp_path, options, message):
    save_images(tmp_path / "in", [(96, 128)] * 2)
    with pytest.raises(UserError, match=message):
        jobs.run_job(
            request([tmp_path / "in"], tmp_path / "out", small_checkpoint, **options), RecordingContext()
        )
    assert not is_complete(tmp_path / "out")


def test_colmap_copies_plain_stills_and_writes_rotated_or_deep_ones_as_seen(small_checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(make_test_image(0, 96, 128)).save(folder / "a plain.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: shown turned by 90°, so the photo is 96 wide and 128 high
    Image.fromarray(make_test_image(1, 96, 128)).save(folder / "b_rotated.jpg", exif=exif, quality=95)
    deep = (make_test_image(2, 96, 128).astype(np.uint16) * 257)[..., 0]
    Image.fromarray(deep).save(folder / "c_deep.png")  # 16-bit grey
    jobs.run_job(
        request([folder], tmp_path / "out", small_checkpoint, exports=("colmap",)), RecordingContext()
    )

    images = tmp_path / "out" / "colmap" / "images"
    rec = pycolmap.Reconstruction(str(tmp_path / "out" / "colmap" / "sparse" / "0"))
    cameras = {im.name: rec.cameras[im.camera_id] for im in rec.images.values()}
    assert sorted(cameras) == ["a_plain.png", "b_rotated.jpg", "c_deep.jpg"]
    plain = images / "a_plain.png"
    assert not plain.is_symlink() and plain.read_bytes() == (folder / "a plain.png").read_bytes()
    for name in ("b_rotated.jpg", "c_deep.jpg"):
        assert not (images / name).is_symlink()
        with Image.open(images / name) as im:
            assert im.mode == "RGB" and im.size == (cameras[name].width, cameras[name].height)
    assert (cameras["b_rotated.jpg"].width, cameras["b_rotated.jpg"].height) == (96, 128)
    assert read_bundle(tmp_path / "out").original_sizes.tolist() == [[96, 128], [128, 96], [96, 128]]


# --- known cameras files ------------------------------------------------------------------------------


def test_cameras_files_in_npz_and_json_read_the_same(tmp_path):
    k = np.array([[[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]]] * 2)
    w2c = np.tile(np.eye(4)[:3], (2, 1, 1))
    w2c[1, :, 3] = [1.0, 2.0, 3.0]
    np.savez(tmp_path / "c.npz", extrinsics=w2c, intrinsics=k)
    (tmp_path / "c.json").write_text(json.dumps({"extrinsics": w2c.tolist(), "intrinsics": k.tolist()}))
    for name in ("c.npz", "c.json"):
        cams = read_cameras(str(tmp_path / name))
        assert cams.extrinsics.shape == (2, 4, 4) and cams.intrinsics.shape == (2, 3, 3)
        np.testing.assert_array_equal(cams.extrinsics[:, :3], w2c)
    with pytest.raises(UserError, match="has 2 cameras but the job has 3 frames"):
        cams.check_count(3)


def test_bad_cameras_files_say_what_is_wrong(tmp_path):
    k = [[[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]]]
    cases = {
        "missing.npz": (None, "does not exist"),
        "cams.txt": ("hello", "must be a .npz or .json"),
        "broken.json": ("{not json", "cannot be read"),
        "list.json": ("[1, 2]", "holds no JSON object"),
        "noK.json": (json.dumps({"extrinsics": [np.eye(4).tolist()]}), "has no 'intrinsics'"),
        "flatK.json": (json.dumps({"intrinsics": [1, 2, 3]}), r"not \(N, 3, 3\)"),
        "negK.json": (json.dumps({"intrinsics": [[[-1, 0, 0], [0, 1, 0], [0, 0, 1]]]}), "focal lengths"),
        "scaled.json": (
            json.dumps({"intrinsics": k, "extrinsics": [(2 * np.eye(4)).tolist()]}),
            "not a rotation",
        ),
        "count.json": (
            json.dumps({"intrinsics": k, "extrinsics": [np.eye(4).tolist()] * 2}),
            "for 1 intrinsics",
        ),
    }
    for name, (text, message) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=message):
            read_cameras(str(tmp_path / name))
    np.savez(tmp_path / "pickled.npz", intrinsics=np.array([object()], dtype=object))
    with pytest.raises(UserError, match="cannot be read"):
        read_cameras(str(tmp_path / "pickled.npz"))


# --- the bundle's intrinsics_original -----------------------------------------------------------------


def test_a_bundle_without_intrinsics_original_reads_back_with_the_scaled_cameras(tmp_path):
    k = np.array([[[50.0, 0, 28], [0, 50.0, 21], [0, 0, 1]]], np.float32)
    arrays = {
        "images": np.zeros((1, 42, 56, 3), np.uint8),
        "depth": np.ones((1, 42, 56), np.float32),
        "extrinsics": np.eye(4)[None, :3],
        "intrinsics": k,
        "original_sizes": [[84, 224]],
    }
    b = read_bundle(write_bundle(tmp_path / "b", arrays))
    np.testing.assert_allclose(b.intrinsics_original[0], [[200, 0, 112], [0, 100, 42], [0, 0, 1]])


# --- metric scale -------------------------------------------------------------------------------------


def test_fit_scale_recovers_a_known_scale_and_ignores_sky_and_invalid_pixels():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1, 10, (3, 20, 30))
    metric = 3.2 * depth * (1 + 0.01 * rng.standard_normal(depth.shape))
    sky = np.zeros(depth.shape, bool)
    sky[:, :5] = True
    metric[sky] = 1e4  # sky far away in the metric model: must not pull the fit
    depth[0, 10, 10] = np.nan
    metric[1, 10, 10] = -1.0
    assert fit_scale(depth, metric, sky=sky) == pytest.approx(3.2, rel=2e-3)


def test_fit_scale_weights_pixels_by_confidence():
    depth = np.ones((1, 2, 2))
    metric = np.array([[[2.0, 2.0], [4.0, 4.0]]])
    conf = np.array([[[1.0, 1.0], [3.0, 3.0]]])
    assert fit_scale(depth, metric) == pytest.approx(3.0)  # unweighted: the mean
    assert fit_scale(depth, metric, conf) == pytest.approx(
        (2 * 1 + 4 * 3) / 4
    )  # the confident ones count more


def test_fit_scale_without_usable_pixels_is_a_clear_error():
    depth = np.ones((1, 4, 4))
    with pytest.raises(MetricScaleError, match="no pixel"):
        fit_scale(depth, depth, sky=np.ones((1, 4, 4), bool))
    with pytest.raises(ValueError, match="same pixels"):
        fit_scale(depth, np.ones((1, 4, 5)))


def test_scale_prediction_scales_depth_translations_and_gaussians_only():
    from engine.pipeline import Gaussians, Prediction

    rng = np.random.default_rng(1)
    rot = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    ext = np.concatenate([np.stack([np.eye(3), rot]), rng.standard_normal((2, 3, 1))], 2).astype(np.float32)
    g = Gaussians(*(rng.random(s).astype(np.float32) for s in [(5, 3), (5, 3), (5, 4), (5, 3, 9), (5,)]))
    pred = Prediction(
        depth=rng.uniform(1, 2, (2, 4, 6)).astype(np.float32),
        conf=None,
        extrinsics=ext,
        intrinsics=np.tile(np.eye(3, dtype=np.float32), (2, 1, 1)),
        processed_images=np.zeros((2, 4, 6, 3), np.uint8),
        sky=None,
        is_metric=False,
        scale_factor=None,
        gaussians=g,
    )
    out = scale_prediction(pred, 4.0)
    assert out.units == "metre" and out.is_metric and out.scale_factor == 4.0
    np.testing.assert_allclose(out.depth, 4 * pred.depth)
    centres = lambda e: -np.einsum("nji,nj->ni", e[:, :, :3], e[:, :, 3])  # noqa: E731
    np.testing.assert_allclose(centres(out.extrinsics), 4 * centres(ext), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.extrinsics[:, :, :3], ext[:, :, :3])
    np.testing.assert_allclose(out.gaussians.means, 4 * g.means)
    np.testing.assert_allclose(out.gaussians.scales, 4 * g.scales)
    np.testing.assert_array_equal(out.gaussians.rotations, g.rotations)
    np.testing.assert_array_equal(out.gaussians.opacities, g.opacities)
    np.testing.assert_array_equal(out.intrinsics, pred.intrinsics)
