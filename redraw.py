"""Redraw what shows live progress: the 3D View sidebar and the preferences (a job's or the setup's)."""

from __future__ import annotations

import bpy

__all__ = ["tag_redraw"]


def tag_redraw(context: bpy.types.Context | None = None) -> None:
    """Redraw 3D views and the preferences (progress changed); a no-op without a window (headless)."""
    wm = (context or bpy.context).window_manager
    for window in getattr(wm, "windows", ()):
        screen = window.screen
        for area in screen.areas if screen else ():
            if area.type in {"VIEW_3D", "PREFERENCES"}:
                area.tag_redraw()
