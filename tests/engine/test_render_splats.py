"""The splat renderer: our compositor follows gsplat's rasterizer rules (checked against a plain
per-pixel loop, and against gsplat's CUDA rasterizer where a GPU is lent), gsplat's projection gives
the analytic footprint, SH view dependence matches ``eval_sh``, the CLI, and gsplat's absence."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.formats.gaussians_ply import Gaussians, write_gaussians_ply
from engine.geometry.spherical_harmonics import SH_C0, eval_sh
from engine.render import splats
from engine.render.composite import ALPHA_CAP, ALPHA_MIN, TRANSMITTANCE_MIN, composite_front_to_back

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _brute_force(means2d, conics, opacities, colors, depths, radii, width, height):
    """gsplat's per-pixel loop written plainly (tiles included)."""
    image = np.zeros((height, width, colors.shape[1]))
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
    return image


def test_compositor_follows_gsplats_rules_pixel_for_pixel():
    rng = np.random.default_rng(0)
    n, w, h = 7, 40, 24
    means2d = rng.uniform([0, 0], [w, h], (n, 2))
    cov = rng.uniform(4, 30, (n, 2)) * np.eye(2)[None].repeat(n, 0).diagonal(axis1=1, axis2=2)
    conics = np.stack([1 / cov[:, 0], rng.uniform(-0.01, 0.01, n), 1 / cov[:, 1]], 1)
    opacities = np.concatenate([[0.9999, 0.9999, 0.9999], rng.uniform(0.2, 0.9, n - 3)])  # hits the cap
    means2d[:3] = means2d[0]  # three opaque ones on one spot: the T ≤ 1e-4 stop
    colors = rng.uniform(0, 1, (n, 3))
    depths = rng.uniform(1, 5, n)
    radii = np.ceil(3.33 * np.sqrt(cov)).astype(np.int32)
    radii[5] = 0  # not drawn
    t = {
        k: torch.as_tensor(v, dtype=torch.float64)
        for k, v in dict(m=means2d, c=conics, o=opacities, col=colors, d=depths).items()
    }
    image, alpha = composite_front_to_back(
        t["m"], t["c"], t["o"], t["col"], t["d"], torch.as_tensor(radii), w, h
    )
    expected = _brute_force(means2d, conics, opacities, colors, depths, radii, w, h)
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-9)
    assert float(alpha.max()) <= 1.0


gsplat = pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat is not installed")


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


def test_an_isolated_splat_has_the_analytic_peak_and_footprint():
    g = _one()
    view, K, w, h = _camera((0, 0, -4))
    image = splats.render_gaussians(g, view, K, w, h)
    s = _footprint(4.0)
    x = np.arange(w) + 0.5 - w / 2  # pixel centres; the splat projects to the image centre
    dy = 0.5
    alpha = 0.9 * np.exp(-0.5 * (x**2 + dy**2) / s**2)
    expected = np.where(alpha >= ALPHA_MIN, alpha * 0.8, 0.0)
    np.testing.assert_allclose(image[h // 2, :, 0], expected, atol=1e-5)


def test_view_dependent_colour_matches_eval_sh():
    rng = np.random.default_rng(2)
    sh = (rng.normal(size=(3, 16)) * 0.3).astype(np.float32)
    g = _one(sigma=(0.3, 0.3, 0.3), opacity=0.999, colour=(0.5, 0.5, 0.5), sh=sh)
    for eye in ((0, 0, -4), (3, -1, -2.5)):
        view, K, w, h = _camera(eye)
        image = splats.render_gaussians(g, view, K, w, h)
        direction = -np.asarray(eye, np.float64) / np.linalg.norm(eye)
        s = _footprint(float(np.linalg.norm(eye)), sigma=0.3)
        alpha = min(ALPHA_CAP, 0.999 * np.exp(-0.5 * 0.5 / s**2))  # the pixel centre is (½, ½) px off
        expected = np.maximum(eval_sh(g.sh[0], direction) + 0.5, 0.0) * alpha
        np.testing.assert_allclose(image[h // 2, w // 2], expected, atol=2e-3)


def test_render_splats_command_writes_each_view(tmp_path):
    g = _one()
    ply = write_gaussians_ply(tmp_path / "g.ply", g.means, g.scales, g.rotations, g.sh, g.opacities)
    view, K, w, h = _camera((0, 0, -4))
    cams = [{"name": "front", "viewmat": view.tolist(), "K": K.tolist(), "width": w, "height": h}]
    (tmp_path / "cams.json").write_text(json.dumps(cams))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "render-splats",
            str(ply),
            "--cameras",
            str(tmp_path / "cams.json"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    image = np.load(tmp_path / "out" / "front.npy")
    assert image.shape == (h, w, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, splats.render_gaussians(g, view, K, w, h), atol=1e-6)
    assert (tmp_path / "out" / "front.png").is_file() and "1 view(s)" in run.stdout


def test_without_gsplat_the_render_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(splats, "gsplat_available", lambda: False)
    view, K, w, h = _camera((0, 0, -4))
    with pytest.raises(UserError, match="pip install gsplat"):
        splats.render_gaussians(_one(), view, K, w, h)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's CUDA rasterizer needs a GPU")
def test_compositor_matches_gsplats_cuda_rasterizer():
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
