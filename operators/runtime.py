"""The Blender session's live state: one ``EngineService`` and the last job's report.

Module-level on purpose: an engine process outlives any operator (the model stays loaded between jobs),
and panels draw from this state. ``shutdown()`` (called at unregister) stops the engine, and the engine
setup if one runs, because a live timer or child process at exit hangs bpy 4.5.
"""

from __future__ import annotations

import bpy

from .. import preferences
from ..preferences import setup_engine
from ..session import engine_env
from ..session.service import EngineService

__all__ = [
    "configure_engine",
    "has_override",
    "last_report",
    "service",
    "set_engine_override",
    "set_report",
    "shutdown",
]

_SERVICE = EngineService()
_OVERRIDE: dict = {}  # {"argv": [...], "env": {...}} from tests and scripts (a fake engine)
_REPORT: list[tuple[str, str]] = []  # (level, text) of the last job, for the panel


def service() -> EngineService:
    return _SERVICE


def set_engine_override(argv: list[str] | None = None, env: dict[str, str] | None = None) -> None:
    """Run ``argv`` (with ``env``) instead of ``python -m engine serve``; no arguments clears it."""
    _OVERRIDE.clear()
    if argv:
        _OVERRIDE.update(argv=list(argv), env=dict(env or {}))


def has_override() -> bool:
    return bool(_OVERRIDE)


def configure_engine(prefs: dict) -> str | None:
    """Point the service at the engine the preferences describe; returns why it cannot run (or None)."""
    if _OVERRIDE:
        python, problem = _OVERRIDE["argv"][0], None
    else:
        choice = preferences.engine_python(prefs)
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


def shutdown() -> None:
    """Stop the engine process and the setup (add-on disabled or Blender closing)."""
    setup_engine.stop()
    _SERVICE.shutdown()
    _REPORT.clear()
