"""The splat renderer: our compositor follows gsplat's rasterizer rules (checked against a plain
per-pixel loop, and against gsplat's CUDA rasterizer where a GPU is lent), gsplat's projection gives
the analytic footprint, SH view dependence matches ``eval_sh``, the CLI, and gsplat's absence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import cli
from engine.errors import UserError
from engine.formats.gaussians_ply import Gaussians, write_gaussians_ply
from engine.geometry.spherical_harmonics import SH_C0, eval_sh
from engine.render import composite, splats
from engine.render.composite import ALPHA_CAP, ALPHA_MIN, TRANSMITTANCE_MIN, composite_front_to_back

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gsplat():
    """gsplat's PyTorch reference (``gsplat.cuda._torch_impl``); the test is skipped without gsplat."""
    return pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat is not installed")


def _brute_force(means2d, conics, opacities, colors, depths, radii, width, height, background):
    """gsplat's CUDA rasterizer written plainly, one pixel at a time (tiles included) → colour, T."""
    image = np.zeros((height, width, colors.shape[1]))
    transmittance = np.ones((height, width))
    order = [g for g in np.argsort(depths, kind="stable") if (radii[g] > 0).all()]
    for y in range(height):
        for x in range(width):
            t = 1.0
            for g in order:
                tx0 = max(int(np.floor((means2d[g, 0] - radii[g, 0]) / 16)), 0) * 16
                tx1 = int(np.ceil((means2d[g, 0] + radii[g, 0]) / 16)) * 16
                ty0 = max(int(np.floor((means2d[g, 1] - radii[g, 1]) / 16)), 0) * 16
                ty1 = int(np.ceil((means2d[g, 1] + radii[g, 1]) / 16)) * 16
                if not (tx0 <= x < tx1 and ty0 <= y < ty1):
                    continue
                dx, dy = means2d[g, 0] - (x + 0.5), means2d[g, 1] - (y + 0.5)
                a, b, c = conics[g]
                sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                alpha = min(ALPHA_CAP, opacities[g] * np.exp(-sigma))
                if sigma < 0 or alpha < ALPHA_MIN:
                    continue
                if t * (1 - alpha) <= TRANSMITTANCE_MIN:
                    break
                image[y, x] += alpha * t * colors[g]
                t *= 1 - alpha
            image[y, x] += t * background
            transmittance[y, x] = t
    return image, transmittance


@pytest.mark.parametrize("batches", [(128, 1024), (1, 2)], ids=["one batch", "batches of 1, 2, 2"])
def test_compositor_follows_gsplats_rules_pixel_for_pixel(monkeypatch, batches):
    monkeypatch.setattr(composite, "FIRST_BATCH", batches[0])
    monkeypatch.setattr(composite, "BATCH", batches[1])
    rng = np.random.default_rng(0)
    n, w, h = 9, 40, 24  # 3 × 2 tiles, the last column of tiles cut at the image edge
    means2d = rng.uniform([0, 0], [w, h], (n, 2))
    var = rng.uniform(4, 30, (n, 2))
    conics = np.stack([1 / var[:, 0], rng.uniform(-0.01, 0.01, n), 1 / var[:, 1]], 1)
    opacities = np.concatenate([[0.9999, 0.9999, 0.9999], rng.uniform(0.2, 0.9, n - 3)])  # hits the cap
    means2d[:3] = means2d[0]  # three opaque ones on one spot: the T ≤ 1e-4 stop
    conics[6] = (0.05, 0.2, 0.05)  # not positive definite: σ < 0 on some pixels, which are skipped
    colors = rng.uniform(0, 1, (n, 3))
    depths = rng.uniform(1, 5, n)
    depths[7] = depths[8]  # a tie: the lower index first
    radii = np.ceil(3.33 * np.sqrt(var)).astype(np.int32)
    radii[5] = 0  # not drawn
    radii[4] = (2, 40)  # a box far narrower than its tiles: the tiles decide which pixels are tested
    background = np.array([0.2, 0.5, 1.0])
    t = {
        k: torch.as_tensor(v, dtype=torch.float64)
        for k, v in dict(m=means2d, c=conics, o=opacities, col=colors, d=depths, bg=background).items()
    }
    image, alpha = composite_front_to_back(
        t["m"], t["c"], t["o"], t["col"], t["d"], torch.as_tensor(radii), w, h, t["bg"]
    )
    expected, transmittance = _brute_force(
        means2d, conics, opacities, colors, depths, radii, w, h, background
    )
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(alpha.numpy(), 1.0 - transmittance, atol=1e-9)
    assert transmittance.min() > TRANSMITTANCE_MIN and transmittance.min() < 0.01  # the stop was reached


def test_the_rules_are_the_ones_in_gsplats_kernel(gsplat):
    """The constants above, read from the CUDA source gsplat builds its rasterizer from (the Inria code caps
    α at 0.99; gsplat at 0.999)."""
    csrc = Path(gsplat.__file__).parent
    kernel = (csrc / "csrc" / "RasterizeToPixels3DGSFwd.cu").read_text(encoding="utf-8")
    common = (csrc / "include" / "Common.h").read_text(encoding="utf-8")
    assert ALPHA_CAP == 0.999 and "float alpha = min(0.999f, opac * __expf(-sigma));" in kernel
    assert ALPHA_MIN == 1 / 255 and "#define ALPHA_THRESHOLD (1.f / 255.f)" in common
    assert "if (sigma < 0.f || alpha < ALPHA_THRESHOLD) {" in kernel
    assert TRANSMITTANCE_MIN == 1e-4 and "if (next_T <= 1e-4f) { // this pixel is done: exclusive" in kernel
    assert composite.TILE_SIZE == 16 and "float px = (float)j + 0.5f;" in kernel


def _one(sigma=(0.2, 0.2, 0.2), colour=(0.8, 0.3, 0.1), opacity=0.9, sh=None) -> Gaussians:
    coeffs = np.zeros((1, 3, 1 if sh is None else sh.shape[-1]), np.float32)
    coeffs[0, :, 0] = (np.asarray(colour) - 0.5) / SH_C0
    if sh is not None:
        coeffs[0, :, 1:] = sh[:, 1:]
    return Gaussians(
        means=np.zeros((1, 3), np.float32),
        scales=np.asarray([sigma], np.float32),
        rotations=np.asarray([[1, 0, 0, 0]], np.float32),
        sh=coeffs,
        opacities=np.asarray([opacity], np.float32),
    )


def _camera(eye, width=64, height=48, focal=80.0):
    """An OpenCV camera (x right, y down, z forward) at ``eye`` looking at the origin."""
    eye = np.asarray(eye, np.float64)
    z = -eye / np.linalg.norm(eye)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    view = np.eye(4)
    view[:3, :3] = np.stack([x, y, z])
    view[:3, 3] = -view[:3, :3] @ eye
    K = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    return view, K, width, height


def _footprint(distance: float, sigma: float = 0.2, focal: float = 80.0) -> float:
    """The projected σ in pixels of an isotropic splat on the optical axis: f·σ/z, widened by gsplat's
    0.3 px² low-pass."""
    return float(np.sqrt((focal * sigma / distance) ** 2 + 0.3))


def test_an_isolated_splat_has_the_analytic_peak_and_footprint(gsplat):
    g = _one()
    view, K, w, h = _camera((0, 0, -4))
    image = splats.render_gaussians(g, view, K, w, h)
    s = _footprint(4.0)  # 4.03 px
    x = np.arange(w) + 0.5 - w / 2  # pixel centres; the splat projects to the image centre (a pixel corner)
    row = image[h // 2, :, 0]
    peak = 0.9 * np.exp(-0.5 * 0.5 / s**2)  # the nearest pixel centres are (½, ½) px from the centre
    np.testing.assert_allclose(row.max(), peak * 0.8, atol=1e-6)
    alpha = 0.9 * np.exp(-0.5 * (x**2 + 0.25) / s**2)
    np.testing.assert_allclose(row, np.where(alpha >= ALPHA_MIN, alpha * 0.8, 0.0), atol=1e-6)
    # the 1/e² contour (α down to e⁻² of its centre value) is 4σ wide
    level = 0.9 * 0.8 * np.exp(-2.0 - 0.5 * 0.25 / s**2)
    right = x > 0
    width_measured = 2 * np.interp(level, row[right][::-1], x[right][::-1])
    assert abs(width_measured - 4 * s) < 0.05 * s, (width_measured, 4 * s)
    assert abs(width_measured - 4 * 80 * 0.2 / 4.0) > 0.1  # and the 0.3 px² dilation is measurable


def test_view_dependent_colour_matches_eval_sh(gsplat):
    rng = np.random.default_rng(2)
    sh = (rng.normal(size=(3, 16)) * 0.3).astype(np.float32)
    g = _one(sigma=(0.3, 0.3, 0.3), opacity=0.999, colour=(0.5, 0.5, 0.5), sh=sh)
    seen = []
    for eye in ((0, 0, -4), (3, -1, -2.5)):
        view, K, w, h = _camera(eye)
        image = splats.render_gaussians(g, view, K, w, h)
        direction = -np.asarray(eye, np.float64) / np.linalg.norm(eye)
        s = _footprint(float(np.linalg.norm(eye)), sigma=0.3)
        alpha = min(ALPHA_CAP, 0.999 * np.exp(-0.5 * 0.5 / s**2))  # the pixel centre is (½, ½) px off
        expected = np.maximum(eval_sh(g.sh[0], direction) + 0.5, 0.0) * alpha
        np.testing.assert_allclose(image[h // 2, w // 2], expected, atol=2e-5)
        seen.append(image[h // 2, w // 2])
    assert np.abs(seen[0] - seen[1]).max() > 0.05  # the two views do see different colours
    degree0 = splats.render_gaussians(g, *_camera((3, -1, -2.5)), sh_degree=0)
    np.testing.assert_allclose(degree0[h // 2, w // 2], 0.5 * alpha, atol=2e-5)  # DC only: grey


def _write_inputs(folder: Path, g: Gaussians, cameras: list[dict]) -> tuple[Path, Path]:
    ply = write_gaussians_ply(folder / "g.ply", g.means, g.scales, g.rotations, g.sh, g.opacities)
    (folder / "cams.json").write_text(json.dumps(cameras))
    return ply, folder / "cams.json"


def _camera_entry(name, eye) -> dict:
    view, K, w, h = _camera(eye)
    return {"name": name, "viewmat": view.tolist(), "K": K.tolist(), "width": w, "height": h}


def test_render_splats_command_writes_each_view(tmp_path, gsplat):
    g = _one(sh=(np.random.default_rng(3).normal(size=(3, 16)) * 0.3).astype(np.float32))
    cams = [_camera_entry("front", (0, 0, -4)), _camera_entry("side", (3, -1, -2.5))]
    ply, cams_json = _write_inputs(tmp_path, g, cams)
    args = [str(ply), "--cameras", str(cams_json), "--out", str(tmp_path / "out"), "--background", "0,0,1"]
    run = subprocess.run(
        [sys.executable, "-m", "engine", "render-splats", *args, "--sh-degree", "2"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "2 view(s)" in run.stdout
    for cam in cams:
        image = np.load(tmp_path / "out" / f"{cam['name']}.npy")
        assert image.shape == (48, 64, 3) and image.dtype == np.float32
        expected = splats.render_gaussians(
            g, cam["viewmat"], cam["K"], 64, 48, sh_degree=2, background=(0.0, 0.0, 1.0)
        )
        np.testing.assert_allclose(image, expected, atol=1e-6)
        png = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "out" / f"{cam['name']}.png"))
        assert png.shape == (48, 64, 3) and png.dtype == np.uint8
        np.testing.assert_array_equal(png, (np.clip(expected, 0, 1) * 255 + 0.5).astype(np.uint8))
    assert (png[0, 0] == (0, 0, 255)).all()  # the background where no splat is


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c[0].pop("K"), "lacks K"),
        (lambda c: c[0].update(viewmat=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]), "viewmat must be 4x4"),
        (lambda c: c[0].update(width=0), "width and height"),
        (lambda c: c[0].update(name="../escape"), "not usable as a file name"),
        (lambda c: c.append(dict(c[0])), "used twice"),
    ],
    ids=["no K", "3x3 viewmat", "zero width", "path in name", "same name twice"],
)
def test_render_splats_refuses_bad_cameras(tmp_path, capsys, change, message):
    cams = [_camera_entry("front", (0, 0, -4))]
    change(cams)
    ply, cams_json = _write_inputs(tmp_path, _one(), cams)
    code = cli.main(["render-splats", str(ply), "--cameras", str(cams_json), "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_USAGE and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_render_splats_refuses_a_bad_background(tmp_path, capsys):
    ply, cams_json = _write_inputs(tmp_path, _one(), [_camera_entry("front", (0, 0, -4))])
    with pytest.raises(SystemExit) as exit_:
        cli.main(
            ["render-splats", str(ply), "--cameras", str(cams_json), "--out", "o", "--background", "1,1"]
        )
    assert exit_.value.code == cli.EXIT_USAGE and "r,g,b" in capsys.readouterr().err


def test_without_gsplat_the_render_says_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gsplat", None)  # `import gsplat` fails as if it were not installed
    view, K, w, h = _camera((0, 0, -4))
    assert not splats.gsplat_available()
    with pytest.raises(UserError, match=r"need gsplat.*pip install gsplat==1\.5\.3.*everything else works"):
        splats.render_gaussians(_one(), view, K, w, h)
    ply, cams_json = _write_inputs(tmp_path, _one(), [_camera_entry("front", (0, 0, -4))])
    code = cli.main(["render-splats", str(ply), "--cameras", str(cams_json), "--out", str(tmp_path / "o")])
    assert code == cli.EXIT_FAILED and "pip install gsplat" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the CUDA backend is meant to load")
def test_a_render_without_a_gpu_never_loads_gsplats_cuda_backend(gsplat):
    """Loading ``gsplat.cuda._backend`` starts an nvcc build of the rasterizer (minutes, or a failure):
    without a GPU even ``device="cuda"`` renders with our compositor and never touches it."""
    view, K, w, h = _camera((0, 0, -4))
    on_cpu = splats.render_gaussians(_one(), view, K, w, h)
    asked_for_cuda = splats.render_gaussians(_one(), view, K, w, h, device="cuda")
    np.testing.assert_array_equal(asked_for_cuda, on_cpu)
    assert "gsplat.cuda._backend" not in sys.modules


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's CUDA rasterizer needs a GPU")
def test_compositor_matches_gsplats_cuda_rasterizer(gsplat):
    if not splats.gsplat_cuda_rasterizer():
        pytest.skip("gsplat's CUDA rasterizer did not load (no prebuilt extension and no working nvcc)")
    rng = np.random.default_rng(4)
    n = 300
    q = rng.normal(size=(n, 4))
    g = Gaussians(
        means=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        scales=rng.uniform(0.02, 0.15, (n, 3)).astype(np.float32),
        rotations=(q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
        sh=(rng.normal(size=(n, 3, 16)) * 0.3).astype(np.float32),
        opacities=rng.uniform(0.2, 0.95, n).astype(np.float32),
    )
    view, K, w, h = _camera((0.5, -0.3, -4), 96, 72, 90.0)
    ours = splats.render_gaussians(g, view, K, w, h, device="cpu")
    cuda = splats.render_gaussians(g, view, K, w, h, device="cuda")
    assert np.abs(ours - cuda).max() < 2e-3
