"""The add-on preferences layout: engine (Python, setup with progress and log), models, device, memory."""

from __future__ import annotations

import bpy

from .. import idnames
from ..session import engine_setup, models
from . import setup_engine
from .locations import engine_python, setup_paths

__all__ = ["draw_preferences"]


_UV: list = []


def _bundled_uv() -> str | None:
    """The bundled uv (looked up once: the panel redraws often)."""
    if not _UV:
        _UV.append(engine_setup.find_uv())
    return _UV[0]


def _draw_engine(prefs, layout) -> None:
    box = layout.box()
    box.label(text="Engine", icon="SETTINGS")
    box.prop(prefs, "engine_python")
    choice = engine_python({"engine_python": prefs.engine_python})
    if choice.ok:
        box.label(text=f"Using {choice.path} ({choice.source})", icon="CHECKMARK")
    else:
        box.label(text=choice.problem, icon="ERROR")
    runner = setup_engine.runner
    progress = runner.progress if runner is not None else None
    if progress is not None and progress.running:
        box.progress(
            factor=progress.fraction,
            type="BAR",
            text=f"Step {progress.step}/{progress.steps}: {progress.label}",
        )
        if progress.detail:
            box.label(text=progress.detail[:100])
        box.operator(idnames.CANCEL_SETUP, icon="CANCEL")
    else:
        row = box.row()
        row.operator(idnames.SETUP_ENGINE, icon="IMPORT")
        refusal = engine_setup.refusal(bool(bpy.app.online_access))
        if refusal:
            box.label(text="Online access is off (Preferences > System > Network).", icon="INFO")
        no_uv = engine_setup.unsupported_platform(_bundled_uv())
        if no_uv:
            box.label(text=no_uv, icon="ERROR")
        if progress is not None and progress.message:
            icon = "CHECKMARK" if progress.state == "done" else "ERROR"
            box.label(text=progress.message, icon=icon)
    venv, log, _requirements = setup_paths()
    box.label(text=f"Environment: {venv}", icon="FILE_FOLDER")
    box.label(text=f"Setup log: {log}", icon="TEXT")
    if progress is not None and progress.tail:
        log_box = box.box()
        for line in list(progress.tail)[-5:]:
            log_box.label(text=line[:110])


def _draw_models(prefs, layout) -> None:
    box = layout.box()
    box.label(text="Models", icon="MESH_MONKEY")
    box.prop(prefs, "default_model")
    box.prop(prefs, "model_cache")
    box.prop(prefs, "results_folder")
    row = box.row()
    row.prop(prefs, "keep_results_days")
    row.prop(prefs, "results_cap_gb")
    table = box.column(align=True)
    for info in models.MODELS:
        row = table.row()
        split = row.split(factor=0.4)
        split.label(text=info.label, icon="CHECKMARK" if info.key == prefs.default_model else "BLANK1")
        split = split.split(factor=0.3)
        split.label(text=models.format_size(info.size_bytes))
        split.label(
            text=info.licence + ("  (non-commercial)" if not info.commercial_use else ""),
            icon="ERROR" if not info.commercial_use else "NONE",
        )


def _draw_runtime(prefs, layout) -> None:
    box = layout.box()
    box.label(text="Device and Memory", icon="MEMORY")
    box.prop(prefs, "device")
    box.prop(prefs, "precision")
    box.prop(prefs, "keep_loaded")
    row = box.row()
    row.enabled = not prefs.keep_loaded
    row.prop(prefs, "unload_minutes")


def draw_preferences(prefs, context, layout) -> None:
    """Draw the preferences of ``prefs`` into ``layout`` (called from AddonPreferences.draw)."""
    _draw_engine(prefs, layout)
    _draw_models(prefs, layout)
    _draw_runtime(prefs, layout)
