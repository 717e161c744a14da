"""'Set up engine': the commands, pip progress parsing, the background runner, and the refusal offline.

No test touches the network: the runner is exercised with small Python commands that print what pip
prints, and Blender's online access is off in background mode (so the operator must refuse).
"""

from __future__ import annotations

import os
import sys

import bpy
import pytest

from .conftest import RecordingLayout


def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def test_steps_create_a_venv_and_pick_the_torch_build(sub, tmp_path):
    setup = sub("core.engine_setup")
    gpu = setup.setup_steps("/blender/python", tmp_path / "venv", "req.txt", cuda=True, platform="linux")
    cpu = setup.setup_steps("/blender/python", tmp_path / "venv", "req.txt", cuda=False, platform="win32")
    mac = setup.setup_steps("/blender/python", tmp_path / "venv", "req.txt", cuda=False, platform="darwin")
    assert gpu[0].argv == ("/blender/python", "-m", "venv", str(tmp_path / "venv"))
    torch_gpu, torch_cpu, torch_mac = (s[2].argv for s in (gpu, cpu, mac))
    assert "torch" in torch_gpu and "https://download.pytorch.org/whl/cu128" in torch_gpu
    assert "https://download.pytorch.org/whl/cpu" in torch_cpu
    assert "--index-url" not in torch_mac  # PyPI's macOS wheels carry the MPS backend
    assert gpu[3].argv[-2:] == ("-r", "req.txt")
    assert all(s.argv[0].endswith(os.path.join("venv", "bin", "python")) for s in gpu[1:])
    assert "--progress-bar" in torch_gpu and "raw" in torch_gpu


def test_pip_lines_become_progress(sub):
    parse = sub("core.engine_setup").parse_pip_line
    assert parse("Progress 262144 of 1048576") == ("download", 0.25)
    assert parse("Collecting torch") == ("text", None)
    assert parse("  Downloading torch-2.8.0-cp311-cp311-manylinux_2_28_x86_64.whl (888.0 MB)") == (
        "text",
        None,
    )
    assert parse("Successfully installed torch-2.8.0") == ("text", None)
    assert parse("   ━━━━━━━━━━━━━━━━━━━") is None


def test_runner_reports_live_progress_and_a_log(sub, tmp_path):
    setup = sub("core.engine_setup")
    steps = [
        setup.SetupStep(
            "Downloading", _py("for i in range(5): print(f'Progress {i * 25} of 100', flush=True)"), 0.8
        ),
        setup.SetupStep("Checking", _py("print('Successfully installed engine')"), 0.2),
    ]
    runner = setup.SetupRunner(steps, tmp_path / "setup.log")
    runner.start()
    progress = setup.wait_for(runner, timeout=30)
    assert progress.state == "done" and progress.fraction == 1.0 and progress.step == 2
    assert progress.detail == "Successfully installed engine"
    log = (tmp_path / "setup.log").read_text()
    assert "Successfully installed engine" in log and "Progress 25 of 100" not in log  # raw bars stay out


def test_runner_partial_progress_is_weighted(sub, tmp_path):
    setup = sub("core.engine_setup")
    gate = tmp_path / "gate"
    code = f"import os, time\nprint('Progress 50 of 100', flush=True)\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    steps = [setup.SetupStep("first", _py("pass"), 0.5), setup.SetupStep("second", _py(code), 0.5)]
    runner = setup.SetupRunner(steps, tmp_path / "setup.log")
    runner.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while runner.poll().fraction < 0.74 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.progress.fraction == pytest.approx(0.75) and runner.progress.running
    finally:
        gate.write_text("go")
    assert setup.wait_for(runner).state == "done"


def test_runner_failure_and_cancel(sub, tmp_path):
    setup = sub("core.engine_setup")
    failing = setup.SetupRunner(
        [setup.SetupStep("Installing", _py("import sys; sys.exit(2)"), 1.0)], tmp_path / "a.log"
    )
    failing.start()
    progress = setup.wait_for(failing)
    assert progress.state == "failed" and "exit code 2" in progress.message and "a.log" in progress.message
    slow = setup.SetupRunner(
        [setup.SetupStep("Waiting", _py("import time; time.sleep(30)"), 1.0)], tmp_path / "b.log"
    )
    slow.start()
    slow.cancel()
    assert setup.wait_for(slow, timeout=10).state == "cancelled"


def test_cuda_detection_uses_nvidia_smi(sub, tmp_path):
    setup = sub("core.engine_setup")
    good = tmp_path / "nvidia-smi-good"
    good.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'\n")
    bad = tmp_path / "nvidia-smi-bad"
    bad.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    for script in (good, bad):
        script.chmod(0o755)
    assert setup.detect_cuda(str(good)) is True
    assert setup.detect_cuda(str(bad)) is False
    assert setup.detect_cuda(str(tmp_path / "missing")) is False


def test_setup_is_refused_without_online_access(ext, sub):
    assert bpy.app.online_access is False  # background mode
    reason = sub("core.engine_setup").refusal(False)
    assert "Allow Online Access" in reason
    assert sub("core.engine_setup").refusal(True) is None
    assert not bpy.ops.da3.setup_engine.poll()
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.da3.setup_engine()


def test_preferences_show_setup_progress(ext, sub, prefs, tmp_path):
    setup = sub("core.engine_setup")
    runtime = sub("operators.runtime")
    gate = tmp_path / "gate"
    wait = f"import os, time\nprint('Collecting torch', flush=True)\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    runner = setup.SetupRunner(
        [setup.SetupStep("Installing PyTorch (CPU)", _py(wait), 1.0)], tmp_path / "s.log"
    )
    runtime.setup_runner = runner
    runner.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while runner.poll().detail != "Collecting torch" and time.monotonic() < deadline:
            time.sleep(0.02)

        class Proxy:
            layout = RecordingLayout()

            def __getattr__(self, name):
                return getattr(prefs, name)

        fake = Proxy()
        type(prefs).draw(fake, bpy.context)
        assert "Step 1/1: Installing PyTorch (CPU)" in fake.layout.texts("progress")
        assert ("operator", "da3.cancel_setup") in fake.layout.log
        assert "Collecting torch" in fake.layout.texts()
    finally:
        gate.write_text("go")
        setup.wait_for(runner)
        runtime.setup_runner = None


def test_engine_python_comes_from_preferences_or_the_set_up_environment(sub, tmp_path):
    env = sub("core.engine_env")
    venv = tmp_path / "venv"
    assert not env.choose_python("", venv).ok and "not set up" in env.choose_python("", venv).problem
    python = env.venv_python(venv)
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    found = env.choose_python("", venv)
    assert found.ok and found.source == "engine environment" and found.path == str(python)
    chosen = env.choose_python(sys.executable, venv)  # an explicit choice wins
    assert chosen.source == "preferences" and chosen.path == sys.executable
    wrong = env.choose_python(str(tmp_path / "nope" / "python"), venv)
    assert not wrong.ok and "does not exist" in wrong.problem


def test_engine_environment_follows_online_access_and_cache(sub, tmp_path):
    env = sub("core.engine_env")
    base = {"PATH": "/bin", "PYTHONHOME": "/blender/python", "PYTHONPATH": "/blender/scripts"}
    offline = env.engine_environment(base, model_cache=str(tmp_path), online=False)
    assert offline["HF_HUB_OFFLINE"] == "1" and offline["HF_HUB_CACHE"] == str(tmp_path)
    assert "PYTHONHOME" not in offline and "PYTHONPATH" not in offline
    online = env.engine_environment({**base, "HF_HUB_OFFLINE": "1"}, online=True)
    assert "HF_HUB_OFFLINE" not in online and "HF_HUB_CACHE" not in online


def test_engine_config_unloads_after_idle_minutes_and_picks_the_device(sub):
    env = sub("core.engine_env")
    keep = env.EngineConfig.build("/py", "/ext", env={}, idle_minutes=0, device="auto")
    idle = env.EngineConfig.build("/py", "/ext", env={}, idle_minutes=5, device="cuda")
    assert keep.args == () and idle.args == ("--idle-timeout", "300", "--device", "cuda")
    assert keep != idle  # a changed preference means a new engine process for the next job
