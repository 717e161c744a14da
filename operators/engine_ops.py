"""Engine operators: unload the model, set up the engine environment (and cancel that), open preferences."""

from __future__ import annotations

import os

import bpy

from .. import idnames, preferences
from ..core import engine_setup
from ..core.engine_env import this_python
from . import runtime

__all__ = ["DA3_OT_cancel_setup", "DA3_OT_open_preferences", "DA3_OT_setup_engine", "DA3_OT_unload_model"]

SETUP_POLL_SECONDS = 0.25


class DA3_OT_unload_model(bpy.types.Operator):
    """Free the model's memory in the engine (GPU memory too); the next reconstruction loads it again"""

    bl_idname = idnames.UNLOAD_MODEL
    bl_label = "Unload Model"

    @classmethod
    def poll(cls, context):
        svc = runtime.service()
        if svc.client is None or not svc.client.alive:
            cls.poll_message_set("The engine is not running")
            return False
        if svc.loaded_model is None:
            cls.poll_message_set("No model is loaded")
            return False
        return True

    def execute(self, context):
        if not runtime.service().unload():
            self.report({"WARNING"}, "The engine is not running.")
            return {"CANCELLED"}
        self.report({"INFO"}, "Unloading the model.")
        return {"FINISHED"}


def setup_paths() -> tuple[str, str, str]:
    """(venv folder, log file, requirements file) of the engine environment."""
    folder = preferences.user_folder("engine-env")
    requirements = os.path.join(preferences.ROOT, "engine", "requirements.txt")
    return os.path.join(folder, "venv"), os.path.join(folder, "setup.log"), requirements


def setup_plan(uv: str, venv: str, requirements: str):
    """The setup's steps, planned in the runner's thread (detecting the GPU runs nvidia-smi/rocminfo)."""
    return lambda: engine_setup.setup_steps(
        uv, this_python(), venv, requirements, engine_setup.detect_accelerator()
    )


def _poll_setup() -> float | None:
    """bpy.app.timers callback: fold the setup's output into its progress; stops when setup ends."""
    runner = runtime.setup_runner
    if runner is None:
        return None
    progress = runner.poll()
    runtime.tag_redraw()
    return SETUP_POLL_SECONDS if progress.running else None


def stop_setup_timer() -> None:
    if bpy.app.timers.is_registered(_poll_setup):
        bpy.app.timers.unregister(_poll_setup)


class DA3_OT_setup_engine(bpy.types.Operator):
    """Create the engine's own Python environment with uv and install the PyTorch build for this machine
    (CUDA for the NVIDIA driver, ROCm, Apple MPS or CPU) and the engine's requirements. Runs in the
    background; needs online access"""

    bl_idname = idnames.SETUP_ENGINE
    bl_label = "Set Up Engine"

    @classmethod
    def poll(cls, context):
        reason = engine_setup.refusal(bool(bpy.app.online_access))
        if reason is None and runtime.setup_runner is not None and runtime.setup_runner.progress.running:
            reason = "The engine setup is already running"
        if reason:
            cls.poll_message_set(reason)
        return reason is None

    def execute(self, context):
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
        runner = engine_setup.SetupRunner(setup_plan(uv, venv, requirements), log, env=_setup_env())
        runtime.setup_runner = runner
        runner.start()
        stop_setup_timer()
        bpy.app.timers.register(_poll_setup, first_interval=SETUP_POLL_SECONDS)
        self.report({"INFO"}, f"Setting up the engine in {venv}; the log is {log}")
        return {"FINISHED"}


def _setup_env() -> dict[str, str]:
    """The engine's environment, with uv's cache beside the environment (same disk: uv links files from
    its cache instead of copying gigabytes) and no Python downloads (Blender's Python is the base)."""
    from ..core.engine_env import engine_environment

    env = engine_environment(online=True)
    env.setdefault("UV_CACHE_DIR", os.path.join(preferences.user_folder("engine-env"), "uv-cache"))
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


class DA3_OT_cancel_setup(bpy.types.Operator):
    """Stop the engine setup"""

    bl_idname = idnames.CANCEL_SETUP
    bl_label = "Cancel Setup"

    @classmethod
    def poll(cls, context):
        runner = runtime.setup_runner
        return runner is not None and runner.progress.running

    def execute(self, context):
        runtime.setup_runner.cancel()
        return {"FINISHED"}


class DA3_OT_open_preferences(bpy.types.Operator):
    """Open this extension's preferences (engine setup, models, device)"""

    bl_idname = idnames.OPEN_PREFERENCES
    bl_label = "Engine Preferences"

    def execute(self, context):
        bpy.ops.screen.userpref_show("INVOKE_DEFAULT")
        bpy.ops.preferences.addon_show(module=preferences.ADDON_ID)
        return {"FINISHED"}


CLASSES = (DA3_OT_unload_model, DA3_OT_setup_engine, DA3_OT_cancel_setup, DA3_OT_open_preferences)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()


def unregister() -> None:
    stop_setup_timer()
    _unregister_classes()
