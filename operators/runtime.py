"""The Blender session's live state: one ``EngineService``, the engine setup runner, the last report.

Module-level on purpose: an engine process outlives any operator (the model stays loaded between jobs),
and panels draw from this state. ``shutdown()`` (called at unregister) stops the engine and the timers,
because a live timer or child process at exit hangs bpy 4.5.
"""

from __future__ import annotations

import os

import bpy

from .. import preferences
from ..core import engine_env
from ..core.engine_setup import SetupRunner
from ..core.service import EngineService

__all__ = [
    "configure_engine",
    "engine_python",
    "has_override",
    "last_report",
    "service",
    "set_engine_override",
    "set_report",
    "shutdown",
    "tag_redraw",
]

_SERVICE = EngineService()
_OVERRIDE: dict = {}  # {"argv": [...], "env": {...}} from tests and scripts (a fake engine)
_REPORT: list[tuple[str, str]] = []  # (level, text) of the last job, for the panel
setup_runner: SetupRunner | None = None


def service() -> EngineService:
    return _SERVICE


def set_engine_override(argv: list[str] | None = None, env: dict[str, str] | None = None) -> None:
    """Run ``argv`` (with ``env``) instead of ``python -m engine serve``; no arguments clears it."""
    _OVERRIDE.clear()
    if argv:
        _OVERRIDE.update(argv=list(argv), env=dict(env or {}))


def has_override() -> bool:
    return bool(_OVERRIDE)


def engine_python(prefs: dict) -> engine_env.PythonChoice:
    """The engine Python from the preferences or the environment 'Set up engine' made."""
    venv = os.path.join(preferences.user_folder("engine-env"), "venv")
    return engine_env.choose_python(prefs["engine_python"], venv)


def configure_engine(prefs: dict) -> str | None:
    """Point the service at the engine the preferences describe; returns why it cannot run (or None)."""
    if _OVERRIDE:
        python, problem = _OVERRIDE["argv"][0], None
    else:
        choice = engine_python(prefs)
        python, problem = choice.path, choice.problem
    if problem:
        return problem
    env = engine_env.engine_environment(
        model_cache=prefs["model_cache"], online=bool(bpy.app.online_access), extra=_OVERRIDE.get("env")
    )
    config = engine_env.EngineConfig.build(
        python,
        preferences.ROOT,
        env=env,
        idle_minutes=0 if prefs["keep_loaded"] else prefs["unload_minutes"],
        device=prefs["device"],
        argv=_OVERRIDE.get("argv"),
        log_dir=preferences.user_folder("logs"),
    )
    _SERVICE.configure(config)
    return None


def set_report(level: str, text: str) -> None:
    _REPORT[:] = [(level, text)]


def last_report() -> tuple[str, str] | None:
    return _REPORT[0] if _REPORT else None


def tag_redraw(context: bpy.types.Context | None = None) -> None:
    """Redraw 3D views and the preferences (progress changed); a no-op without a window (headless)."""
    wm = (context or bpy.context).window_manager
    for window in getattr(wm, "windows", ()):
        screen = window.screen
        for area in screen.areas if screen else ():
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()


def shutdown() -> None:
    """Stop the engine process and the setup (add-on disabled or Blender closing)."""
    global setup_runner
    if setup_runner is not None:
        setup_runner.cancel()
        setup_runner.wait(5.0)
        setup_runner = None
    _SERVICE.shutdown()
    _REPORT.clear()
