"""Headless Blender (the PyPI ``bpy`` module) for the extension's tests. Run as its own session:

    .venv/bin/python -m pytest tests/blender -q

- ``BLENDER_USER_RESOURCES`` points at a fresh temporary folder *before* ``import bpy``, so tests never
  read or write the user's Blender config.
- torch is blocked (``sys.modules["torch"] = None``): the Blender side must never import it, and any
  attempt fails loudly.
- The extension is installed through a local extension repository (a symlink to the repo root), so it
  is imported as ``bl_ext.pytest_dev.da3_reconstruct`` exactly as a user's Blender would.
- bpy 4.5 can deadlock at interpreter exit while classes or timers are registered: the add-on is
  disabled at the end of the session and the process leaves with ``os._exit`` (keeping pytest's code).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

_TMP = tempfile.mkdtemp(prefix="da3_bpy_user_")
os.environ["BLENDER_USER_RESOURCES"] = _TMP
sys.modules["torch"] = None  # the wall: importing torch in Blender's process raises ImportError

import bpy  # noqa: E402

# isort: split
import addon_utils  # noqa: E402  (only importable after bpy)
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PKG_ID = "da3_reconstruct"
REPO_MODULE = "pytest_dev"
MODULE_NAME = f"bl_ext.{REPO_MODULE}.{PKG_ID}"
# The engine's Python (with torch) for the tests that start the real engine. Blender's venv has no torch:
# tools/test.sh names the engine's venv here; on its own the suite uses this interpreter.
ENGINE_PYTHON = os.environ.get("DA3_ENGINE_PYTHON") or sys.executable
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.fakes (the scripted fake engine) and the engine for fixtures


@pytest.fixture(scope="session")
def ext():
    """The enabled extension module (``bl_ext.pytest_dev.da3_reconstruct``)."""
    repo_dir = os.path.join(_TMP, "dev_repo")
    os.makedirs(repo_dir, exist_ok=True)
    link = os.path.join(repo_dir, PKG_ID)
    if not os.path.exists(link):
        os.symlink(ROOT, link)
    bpy.context.preferences.extensions.repos.new(
        name="pytest", module=REPO_MODULE, custom_directory=repo_dir, source="USER"
    )
    addon_utils.extensions_refresh(ensure_wheels=True, addon_modules_pending=[MODULE_NAME])
    errors: list = []
    module = addon_utils.enable(MODULE_NAME, default_set=True, handle_error=errors.append)
    assert module is not None and not errors, errors
    yield module
    addon_utils.disable(MODULE_NAME, default_set=True)


@pytest.fixture(scope="session")
def sub(ext):
    """``sub("session.service")`` imports a module of the installed extension."""
    return lambda name: importlib.import_module(f"{ext.__name__}.{name}")


@pytest.fixture
def clean_scene(ext):
    """An empty scene (the add-on stays enabled), and a fresh engine service afterwards."""
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene
    runtime = importlib.import_module(f"{ext.__name__}.operators.runtime")
    runtime.shutdown()
    runtime.set_engine_override()


@pytest.fixture
def prefs(ext):
    """The add-on preferences, restored after the test."""
    p = bpy.context.preferences.addons[ext.__name__].preferences
    saved = {
        name: getattr(p, name) for name in p.bl_rna.properties.keys() if name not in ("rna_type", "bl_idname")
    }
    yield p
    for name, value in saved.items():
        setattr(p, name, value)


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout`` (which cannot be built headless): records what a draw
    function asks for and checks every property and operator name against RNA."""

    def __init__(self, log: list | None = None):
        self.log = [] if log is None else log

    def _child(self, *args, **kwargs) -> RecordingLayout:
        return RecordingLayout(self.log)

    row = column = box = split = column_flow = grid_flow = _child

    def label(self, *, text="", icon="NONE", **kwargs):
        self.log.append(("label", text))

    def prop(self, data, prop, **kwargs):
        if prop.startswith('["'):
            assert prop[2:-2] in data.keys(), f"{data!r} has no ID property {prop}"
        else:
            assert prop in data.bl_rna.properties, f"{data!r} has no RNA property {prop!r}"
        self.log.append(("prop", prop))

    def operator(self, idname, **kwargs):
        module, name = idname.split(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()  # raises if not registered
        self.log.append(("operator", idname))
        return types.SimpleNamespace()

    def progress(self, *, factor=0.0, type="BAR", text="", **kwargs):
        assert 0.0 <= factor <= 1.0
        self.log.append(("progress", text))

    def separator(self, **kwargs):
        pass

    def texts(self, kind: str = "label") -> list[str]:
        return [value for k, value in self.log if k == kind]


def draw(panel_cls, context=None) -> RecordingLayout:
    """Run a panel's draw with a recording layout."""
    fake = types.SimpleNamespace(layout=RecordingLayout())
    panel_cls.draw(fake, context or bpy.context)
    return fake.layout


def draw_preferences(prefs) -> RecordingLayout:
    """Run the add-on preferences' draw with a recording layout (reading ``prefs``' values)."""

    class Proxy:
        layout = RecordingLayout()

        def __getattr__(self, name):
            return getattr(prefs, name)

    type(prefs).draw(Proxy(), bpy.context)
    return Proxy.layout


def run_python(
    code: str, env: dict | None = None, timeout: float = 120, python: str = sys.executable
) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter (Blender's venv unless ``python`` says otherwise), for what
    must not happen in this process."""
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A random but well-conditioned da3-small checkpoint, written by the engine's Python (torch stays out)."""
    folder = tmp_path_factory.mktemp("checkpoint") / "da3-small"
    out = run_python(
        "from engine.model.random_weights import write_random_checkpoint\n"
        f"write_random_checkpoint({str(folder)!r}, 'da3-small')\n",
        python=ENGINE_PYTHON,
    )
    assert out.returncode == 0, out.stderr
    return folder


_status: dict = {}


def pytest_sessionfinish(session, exitstatus):
    _status["rc"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without interpreter teardown (bpy 4.5 can hang there), keeping pytest's exit code."""
    for name in list(sys.modules):
        if name.startswith(MODULE_NAME) and name.endswith("operators.runtime"):
            sys.modules[name].shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_status.get("rc", 0))
