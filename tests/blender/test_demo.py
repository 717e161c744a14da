"""The demo command works end to end (small: two views, a generated checkpoint, 140 px)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ENGINE_PYTHON, ROOT


def test_demo_builds_installs_reconstructs_saves_and_renders(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--generated-checkpoint", "--views", "3"]
        + ["--process-res", "140", "--out", str(out), "--engine-python", ENGINE_PYTHON],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "installed and enabled bl_ext.user_default.da3_reconstruct" in proc.stdout
    assert "Imported" in proc.stdout and "3 cameras" in proc.stdout
    assert (out / "demo.blend").stat().st_size > 10_000
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_offline_says_what_to_do(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--model", str(tmp_path / "no-such-model")]
        + ["--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2
    assert "--generated-checkpoint" in proc.stderr and "config.json" in proc.stderr
