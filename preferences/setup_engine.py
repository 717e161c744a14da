"""Set Up Engine and Cancel Setup: the running setup (``runner``), its operators and the timer that polls it.

The setup itself (uv, the steps, progress parsing) is ``session.engine_setup``; here it gets Blender's
online-access switch, the extension's folders and a timer that folds the output into the progress the
preferences draw.
"""

from __future__ import annotations

import os

import bpy

from .. import idnames
from ..redraw import tag_redraw
from ..session import engine_setup
from ..session.engine_env import engine_environment, this_python
from .locations import setup_paths, user_folder

__all__ = ["DA3_OT_cancel_setup", "DA3_OT_setup_engine", "runner", "setup_plan", "stop", "stop_timer"]

POLL_SECONDS = 0.25

runner: engine_setup.SetupRunner | None = None  # the setup that runs or ran last (its progress is drawn)


def setup_plan(uv: str, venv: str, requirements: str):
    """The setup's steps, planned in the runner's thread (detecting the GPU runs nvidia-smi/rocminfo)."""
    return lambda: engine_setup.setup_steps(
        uv, this_python(), venv, requirements, engine_setup.detect_accelerator()
    )


def setup_environment() -> dict[str, str]:
    """The engine's environment, with uv's cache beside the environment (same disk: uv links files from
    its cache instead of copying gigabytes) and no Python downloads (Blender's Python is the base)."""
    env = engine_environment(online=True)
    env.setdefault("UV_CACHE_DIR", os.path.join(user_folder("engine-env"), "uv-cache"))
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def _poll() -> float | None:
    """bpy.app.timers callback: fold the setup's output into its progress; stops when setup ends."""
    if runner is None:
        return None
    progress = runner.poll()
    tag_redraw()
    return POLL_SECONDS if progress.running else None


def stop_timer() -> None:
    if bpy.app.timers.is_registered(_poll):
        bpy.app.timers.unregister(_poll)


def stop() -> None:
    """Cancel a running setup and forget it (add-on disabled or Blender closing)."""
    global runner
    if runner is not None:
        runner.cancel()
        runner.wait(5.0)
        runner = None


def _running() -> bool:
    return runner is not None and runner.progress.running


class DA3_OT_setup_engine(bpy.types.Operator):
    """Create the engine's own Python environment with uv and install the PyTorch build for this machine
    (CUDA for the NVIDIA driver, ROCm, Apple MPS or CPU) and the engine's requirements. Runs in the
    background; needs online access"""

    bl_idname = idnames.SETUP_ENGINE
    bl_label = "Set Up Engine"

    @classmethod
    def poll(cls, context):
        reason = engine_setup.refusal(bool(bpy.app.online_access))
        if reason is None and _running():
            reason = "The engine setup is already running"
        if reason:
            cls.poll_message_set(reason)
        return reason is None

    def execute(self, context):
        global runner
        reason = engine_setup.refusal(bool(bpy.app.online_access))
        if reason:
            self.report({"ERROR"}, reason)
            return {"CANCELLED"}
        uv = engine_setup.find_uv()
        reason = engine_setup.unsupported_platform(uv)
        if reason:
            self.report({"ERROR"}, reason)
            return {"CANCELLED"}
        venv, log, requirements = setup_paths()
        runner = engine_setup.SetupRunner(setup_plan(uv, venv, requirements), log, env=setup_environment())
        runner.start()
        stop_timer()
        bpy.app.timers.register(_poll, first_interval=POLL_SECONDS)
        self.report({"INFO"}, f"Setting up the engine in {venv}; the log is {log}")
        return {"FINISHED"}


class DA3_OT_cancel_setup(bpy.types.Operator):
    """Stop the engine setup"""

    bl_idname = idnames.CANCEL_SETUP
    bl_label = "Cancel Setup"

    @classmethod
    def poll(cls, context):
        return _running()

    def execute(self, context):
        runner.cancel()
        return {"FINISHED"}


CLASSES = (DA3_OT_setup_engine, DA3_OT_cancel_setup)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()


def unregister() -> None:
    stop_timer()
    _unregister_classes()
