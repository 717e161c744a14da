"""Where the extension keeps things: its own folder, its writable user folders, the engine environment.

``ADDON_ID`` is this extension's package name (``bl_ext.<repo>.da3_reconstruct`` when installed); the
preferences' ``bl_idname`` must be exactly that. ``user_folder`` gives the extension's own writable
folder (the engine environment, job results, logs): never the extension folder itself, which an update
replaces.
"""

from __future__ import annotations

import os

import bpy

from ..session import engine_env

__all__ = ["ADDON_ID", "ROOT", "engine_python", "engine_venv", "setup_paths", "user_folder"]

ADDON_ID = __package__.rpartition(".")[0]  # the extension package, this one's parent
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_FOLDERS: dict[str, str] = {}


def user_folder(name: str) -> str:
    """The extension's writable folder ``name`` (created once, then cached: panels ask on every redraw):
    under Blender's extension user path when installed as an extension, else Blender's user config."""
    path = _FOLDERS.get(name)
    if path is not None and os.path.isdir(path):
        return path
    try:
        path = bpy.utils.extension_path_user(ADDON_ID, path=name, create=True)
    except ValueError:  # loaded as a plain add-on (not bl_ext.*): no extension user folder
        path = os.path.join(bpy.utils.user_resource("CONFIG"), "da3_reconstruct", name)
        os.makedirs(path, exist_ok=True)
    _FOLDERS[name] = path
    return path


def engine_venv() -> str:
    """The virtual environment "Set up engine" makes."""
    return os.path.join(user_folder("engine-env"), "venv")


def setup_paths() -> tuple[str, str, str]:
    """(venv folder, log file, requirements file) of the engine environment."""
    requirements = os.path.join(ROOT, "engine", "requirements.txt")
    return engine_venv(), os.path.join(user_folder("engine-env"), "setup.log"), requirements


def engine_python(prefs: dict) -> engine_env.PythonChoice:
    """The engine Python from the preferences or the environment 'Set up engine' made."""
    return engine_env.choose_python(prefs["engine_python"], engine_venv())
