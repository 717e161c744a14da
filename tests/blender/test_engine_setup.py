"""'Set up engine': the accelerator from recorded tool outputs, the uv commands, uv's output as progress,
failure messages, the background runner (cancel without a race), the refusal offline, and one real setup.

The runner is exercised with small Python commands that print what uv prints; Blender's online access is
off in background mode (so the operator must refuse). The one real setup uses the uv Blender installed from
the extension's wheels, this machine's local PyTorch wheel and the package index for the rest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bpy
import pytest

from .conftest import ROOT, draw_preferences


def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


# Recorded outputs of the tools the accelerator is detected with.
NVIDIA_SMI_QUERY = "550.54.14\n550.54.14\n"  # nvidia-smi --query-gpu=driver_version --format=csv,noheader
NVIDIA_SMI_BANNER = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
"""
NVIDIA_SMI_OLD = "470.256.02\n"
ROCMINFO = """ROCk module version 6.8.5 is loaded
=====================
HSA Agents
==========
*******
Agent 1
*******
  Name:                    AMD Ryzen 9 7950X 16-Core Processor
  Marketing Name:          AMD Ryzen 9 7950X 16-Core Processor
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    gfx1100
  Marketing Name:          Radeon RX 7900 XTX
  Device Type:             GPU
*******
Agent 3
*******
  Name:                    gfx90a
  Marketing Name:          AMD Instinct MI210
  Device Type:             GPU
"""
ROCMINFO_CPU_ONLY = ROCMINFO.split("*******\nAgent 2")[0]


def _recorded(outputs: dict[str, str | None]):
    """A tool runner that answers with recorded outputs (None: the tool is missing or failed)."""
    return lambda argv: outputs.get(argv[0])


def test_the_accelerator_comes_from_the_driver_and_the_gpus(sub):
    setup = sub("session.engine_setup")
    detect = setup.detect_accelerator
    assert setup.parse_nvidia_smi(NVIDIA_SMI_QUERY) == "550.54.14"
    assert setup.parse_nvidia_smi(NVIDIA_SMI_BANNER) == "570.86.15"
    assert setup.parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate") is None
    assert setup.parse_rocminfo(ROCMINFO) == ["gfx1100", "gfx90a"]
    assert setup.parse_rocminfo(ROCMINFO_CPU_ONLY) == []

    cuda = detect(system="Linux", machine="x86_64", run=_recorded({"nvidia-smi": NVIDIA_SMI_QUERY}))
    assert (cuda.kind, cuda.detail, cuda.torch_backend, cuda.note) == ("cuda", "550.54.14", "auto", "")
    assert cuda.uv_environment() == {"UV_CUDA_DRIVER_VERSION": "550.54.14"}
    windows = detect(system="Windows", machine="AMD64", run=_recorded({"nvidia-smi": NVIDIA_SMI_BANNER}))
    assert (windows.kind, windows.detail) == ("cuda", "570.86.15")
    old = detect(system="Linux", machine="x86_64", run=_recorded({"nvidia-smi": NVIDIA_SMI_OLD}))
    assert old.kind == "cuda" and "older than" in old.note and "Update the driver" in old.note
    rocm = detect(system="Linux", machine="x86_64", run=_recorded({"nvidia-smi": None, "rocminfo": ROCMINFO}))
    assert (rocm.kind, rocm.detail, rocm.torch_backend) == ("rocm", "gfx1100", "auto")
    assert rocm.uv_environment() == {"UV_AMD_GPU_ARCHITECTURE": "gfx1100"}
    cpu_only = detect(system="Linux", machine="x86_64", run=_recorded({"rocminfo": ROCMINFO_CPU_ONLY}))
    assert (cpu_only.kind, cpu_only.torch_backend, cpu_only.uv_environment()) == ("cpu", "cpu", {})
    nothing = detect(system="Windows", machine="AMD64", run=_recorded({}))
    assert nothing.kind == "cpu"
    assert detect(system="Darwin", machine="arm64", run=_recorded({})).kind == "mps"
    assert detect(system="Darwin", machine="x86_64", run=_recorded({})).kind == "cpu"
    # ROCm is a Linux build: a rocminfo on another system is not asked
    assert detect(system="Windows", machine="AMD64", run=_recorded({"rocminfo": ROCMINFO})).kind == "cpu"


def test_steps_make_the_environment_with_uv_and_ask_for_the_machines_torch(sub, tmp_path):
    setup = sub("session.engine_setup")
    venv = tmp_path / "venv"
    cuda = setup.Accelerator("cuda", "550.54.14")
    steps = setup.setup_steps("/ext/uv", "/blender/python", venv, "req.txt", cuda)
    py = str(venv / "bin" / "python")
    assert steps[0].argv == ("/ext/uv", "venv", "--python", "/blender/python", str(venv))
    assert steps[1].argv == ("/ext/uv", "pip", "install", "--python", py, "torch", "--torch-backend=auto")
    assert dict(steps[1].env) == {"UV_CUDA_DRIVER_VERSION": "550.54.14"}
    assert "CUDA build" in steps[1].label and "550.54.14" in steps[1].label
    assert steps[2].argv == ("/ext/uv", "pip", "install", "--python", py, "-r", "req.txt")
    assert steps[3].argv[0] == py and "import torch" in steps[3].argv[2]
    cpu = setup.setup_steps("/ext/uv", "/blender/python", venv, "req.txt", setup.Accelerator("cpu"))
    assert cpu[1].argv[-1] == "--torch-backend=cpu" and cpu[1].env == ()
    local = setup.setup_steps(
        "/ext/uv", "/py", venv, "req.txt", cuda, torch_requirement="torch==2.13.0", wheel_folder="/wheels"
    )
    assert local[1].argv[5:] == ("--find-links", "/wheels", "torch==2.13.0")  # that folder's build, as is
    assert local[2].argv[5:7] == ("--find-links", "/wheels")
    assert sum(step.weight for step in steps) == pytest.approx(1.0)


def test_uv_lines_become_progress_by_bytes(sub, tmp_path):
    setup = sub("session.engine_setup")
    assert setup.parse_uv_line("Downloading torch (846.0MiB)") == ("downloading", "torch", 846.0 * 2**20)
    assert setup.parse_uv_line(" Downloaded torch") == ("downloaded", "torch", 0.0)
    assert setup.parse_uv_line("Resolved 24 packages in 1.20s")[0] == "text"
    assert setup.parse_uv_line(" + torch==2.13.0+cpu")[0] == "text"
    assert setup.parse_uv_line("   ") is None
    gate = tmp_path / "gate"
    code = (
        "import os, time\n"
        "for line in ('Downloading numpy (16.0MiB)', 'Downloading torch (48.0MiB)', ' Downloaded numpy'):\n"
        "    print(line, flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)\n"
        "print(' Downloaded torch', flush=True)\n"
    )
    runner = setup.SetupRunner([setup.SetupStep("Installing PyTorch", _py(code), 1.0)], tmp_path / "s.log")
    runner.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while runner.poll().detail != "Downloaded numpy" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert runner.progress.fraction == pytest.approx(0.25)  # 16 of 64 MiB
    finally:
        gate.write_text("go")
    assert setup.wait_for(runner).state == "done"


def test_failures_say_what_happened_and_what_to_do(sub, tmp_path):
    setup = sub("session.engine_setup")
    explain = setup.explain_failure
    offline = [
        "error: Request failed after 3 retries",
        "  Caused by: Failed to fetch: `https://download.pytorch.org/whl/cu128/torch/`",
        "  Caused by: dns error: failed to lookup address information: Temporary failure in name resolution",
    ]
    message = explain("Installing PyTorch (CPU build)", 2, offline, tmp_path / "setup.log")
    assert "No connection to the package index" in message and "setup.log" in message
    full = ["error: Failed to install: torch-2.13.0", "  Caused by: No space left on device (os error 28)"]
    assert "disk is full" in explain("Installing PyTorch", 2, full, "log")
    wheel = ["error: Distribution `torch==2.13.0` can't be installed because it doesn't have a source "]
    wheel += [
        "distribution or wheel for the current platform",
        "hint: has no wheels with a matching platform tag",
    ]
    assert "no build for this platform" in explain("Installing PyTorch", 1, wheel, "log")
    assert "exit code 7" in explain("Checking the engine", 7, ["Traceback"], "log")
    assert setup.unsupported_platform(None).startswith("This copy of the extension has no uv")
    assert setup.unsupported_platform("/x/uv") is None
    failing = setup.SetupRunner(
        [
            setup.SetupStep(
                "Installing PyTorch", _py("print('No space left on device'); raise SystemExit(2)"), 1
            )
        ],
        tmp_path / "f.log",
    )
    failing.start()
    progress = setup.wait_for(failing)
    assert progress.state == "failed" and "disk is full" in progress.message


def test_runner_reports_live_progress_and_a_log(sub, tmp_path):
    setup = sub("session.engine_setup")
    lines = ("Resolved 2 packages in 0.2s", "Downloading torch (8.0MiB)", " Downloaded torch")
    steps = [
        setup.SetupStep("Downloading", _py(f"for line in {lines!r}: print(line, flush=True)"), 0.8),
        setup.SetupStep("Checking", _py("print('PyTorch 2.13.0+cpu sees cpu')"), 0.2, note="a caveat"),
    ]
    runner = setup.SetupRunner(steps, tmp_path / "setup.log")
    runner.start()
    progress = setup.wait_for(runner, timeout=30)
    assert progress.state == "done" and progress.fraction == 1.0 and progress.step == 2
    assert progress.detail == "PyTorch 2.13.0+cpu sees cpu"
    assert progress.message == "The engine is set up: PyTorch 2.13.0+cpu sees cpu."
    log = (tmp_path / "setup.log").read_text()
    assert "Downloading torch (8.0MiB)" in log and "note: a caveat" in log and "sees cpu" in log


def test_runner_partial_progress_is_weighted(sub, tmp_path):
    setup = sub("session.engine_setup")
    gate = tmp_path / "gate"
    code = (
        "import os, time\n"
        "print('Downloading a (1.0MiB)', flush=True); print('Downloading b (1.0MiB)', flush=True)\n"
        "print(' Downloaded a', flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    )
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
    setup = sub("session.engine_setup")
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


def test_cancel_between_the_check_and_the_start_stops_the_step(sub, tmp_path, monkeypatch):
    """The race of the old runner: a cancel that lands after the runner checked for one but before it
    started the step's process must still stop that process (not let it run on)."""
    import threading
    import time

    setup = sub("session.engine_setup")
    runner = setup.SetupRunner(
        [setup.SetupStep("Waiting", _py("import time; time.sleep(30)"), 1.0)], tmp_path / "r.log"
    )
    popen = runner._popen
    cancelled = threading.Event()

    def slow_popen(step):  # the cancel arrives right now, between the check and the start
        threading.Thread(target=lambda: (runner.cancel(), cancelled.set())).start()
        time.sleep(0.3)
        return popen(step)

    monkeypatch.setattr(runner, "_popen", slow_popen)
    started = time.monotonic()
    runner.start()
    progress = setup.wait_for(runner, timeout=20)
    assert cancelled.is_set() and progress.state == "cancelled"
    assert time.monotonic() - started < 10  # the 30 s child was stopped, not waited for
    assert runner._proc.poll() is not None


def test_the_accelerator_tools_are_run_for_real(sub, tmp_path):
    setup = sub("session.engine_setup")
    good = tmp_path / "nvidia-smi"
    good.write_text("#!/bin/sh\necho '550.54.14'\n")
    bad = tmp_path / "nvidia-smi-bad"
    bad.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    for script in (good, bad):
        script.chmod(0o755)
    assert setup.parse_nvidia_smi(setup.run_tool([str(good), "--query-gpu=driver_version"])) == "550.54.14"
    assert setup.run_tool([str(bad)]) is None
    assert setup.run_tool([str(tmp_path / "missing")]) is None


def test_setup_is_refused_without_online_access(ext, sub):
    assert bpy.app.online_access is False  # background mode
    reason = sub("session.engine_setup").refusal(False)
    assert "Allow Online Access" in reason
    assert sub("session.engine_setup").refusal(True) is None
    assert not bpy.ops.da3.setup_engine.poll()
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.da3.setup_engine()


def test_preferences_show_setup_progress(ext, sub, prefs, tmp_path):
    setup = sub("session.engine_setup")
    setup_engine = sub("preferences.setup_engine")
    gate = tmp_path / "gate"
    wait = f"import os, time\nprint('Collecting torch', flush=True)\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    runner = setup.SetupRunner(
        [setup.SetupStep("Installing PyTorch (CPU)", _py(wait), 1.0)], tmp_path / "s.log"
    )
    setup_engine.runner = runner
    runner.start()
    try:
        import time

        deadline = time.monotonic() + 20
        while runner.poll().detail != "Collecting torch" and time.monotonic() < deadline:
            time.sleep(0.02)
        layout = draw_preferences(prefs)
        assert "Step 1/1: Installing PyTorch (CPU)" in layout.texts("progress")
        assert ("operator", "da3.cancel_setup") in layout.log
        assert "Collecting torch" in layout.texts()
    finally:
        gate.write_text("go")
        setup.wait_for(runner)
        setup_engine.runner = None


def test_engine_python_comes_from_preferences_or_the_set_up_environment(sub, tmp_path):
    env = sub("session.engine_env")
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
    env = sub("session.engine_env")
    base = {"PATH": "/bin", "PYTHONHOME": "/blender/python", "PYTHONPATH": "/blender/scripts"}
    offline = env.engine_environment(base, model_cache=str(tmp_path), online=False)
    assert offline["HF_HUB_OFFLINE"] == "1" and offline["HF_HUB_CACHE"] == str(tmp_path)
    assert "PYTHONHOME" not in offline and "PYTHONPATH" not in offline
    online = env.engine_environment({**base, "HF_HUB_OFFLINE": "1"}, online=True)
    assert "HF_HUB_OFFLINE" not in online and "HF_HUB_CACHE" not in online


def test_engine_config_unloads_after_idle_minutes_and_picks_the_device(sub):
    env = sub("session.engine_env")
    keep = env.EngineConfig.build("/py", "/ext", env={}, idle_minutes=0, device="auto")
    idle = env.EngineConfig.build("/py", "/ext", env={}, idle_minutes=5, device="cuda")
    assert keep.args == () and idle.args == ("--idle-timeout", "300", "--device", "cuda")
    assert keep != idle  # a changed preference means a new engine process for the next job


LOCAL_WHEELS = Path("/opt/wheels")  # this machine's local package folder (the PyTorch CPU wheel)


@pytest.mark.skipif(
    not list(LOCAL_WHEELS.glob("torch-2.13.0*cp311*.whl")), reason="needs this machine's local PyTorch wheel"
)
def test_a_real_setup_makes_an_engine_environment(ext, sub, tmp_path):
    """The real thing, once: the uv that Blender installed from the extension's wheels makes a virtual
    environment, installs PyTorch (the local CPU wheel: no GPU and no PyTorch index here) and the engine's
    requirements from the package index, and the engine's check imports torch in it."""
    from .conftest import ENGINE_PYTHON

    setup, env = sub("session.engine_setup"), sub("session.engine_env")
    uv = setup.find_uv()
    assert uv is not None and "extensions" in uv  # the bundled one, not a uv from PATH
    venv = tmp_path / "engine-env" / "venv"
    steps = setup.setup_steps(
        uv,
        ENGINE_PYTHON,  # a Python 3.11 (the local wheel's); Blender's own Python in real use
        venv,
        ROOT / "engine" / "requirements.txt",
        setup.detect_accelerator(),
        torch_requirement="torch==2.13.0",
        wheel_folder=LOCAL_WHEELS,
    )
    environment = env.engine_environment(online=True)
    environment.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never")
    runner = setup.SetupRunner(steps, tmp_path / "setup.log", env=environment)
    runner.start()
    progress = setup.wait_for(runner, timeout=600)
    log = (tmp_path / "setup.log").read_text()
    assert progress.state == "done", progress.message + "\n" + log[-3000:]
    assert progress.message == "The engine is set up: PyTorch 2.13.0+cpu sees cpu."
    chosen = env.choose_python("", venv)
    assert chosen.ok and chosen.source == "engine environment"
    probe = subprocess.run(
        [chosen.path, "-c", "import torch, av, safetensors, huggingface_hub; print(torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip() == "2.13.0+cpu", probe.stderr
