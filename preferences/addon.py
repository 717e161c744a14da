"""Add-on preferences: the engine's Python and its setup, model cache, default model, device, unloading.

``ADDON_ID`` is this extension's package name (``bl_ext.<repo>.da3_reconstruct`` when installed); the
preferences' ``bl_idname`` must be exactly that. ``user_folder`` gives the extension's own writable
folder (the engine environment, job results, logs): never the extension folder itself, which an update
replaces.
"""

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from .core import models

ADDON_ID = __package__
ROOT = os.path.dirname(os.path.abspath(__file__))

DEVICES = [
    ("auto", "Automatic", "The GPU when there is one (CUDA or Apple MPS), else the CPU"),
    ("cuda", "NVIDIA GPU (CUDA)", "Run on the first CUDA GPU"),
    ("mps", "Apple GPU (MPS)", "Run on the Apple Silicon GPU"),
    ("cpu", "CPU", "Run on the CPU (slow, but works everywhere)"),
]


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


def get_prefs(context: bpy.types.Context | None = None) -> "DA3_AddonPreferences | None":
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def prefs_values(prefs: "DA3_AddonPreferences | None") -> dict:
    """The preferences as plain values (defaults when the add-on has no preferences yet)."""
    if prefs is None:
        return {
            "engine_python": "",
            "model_cache": "",
            "results_folder": "",
            "default_model": models.DEFAULT_MODEL,
            "device": "auto",
            "keep_loaded": True,
            "unload_minutes": 10,
        }
    return {
        "engine_python": prefs.engine_python,
        "model_cache": bpy.path.abspath(prefs.model_cache) if prefs.model_cache else "",
        "results_folder": bpy.path.abspath(prefs.results_folder) if prefs.results_folder else "",
        "default_model": prefs.default_model,
        "device": prefs.device,
        "keep_loaded": prefs.keep_loaded,
        "unload_minutes": prefs.unload_minutes,
    }


class DA3_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    engine_python: StringProperty(
        name="Engine Python",
        description=(
            "Python with PyTorch that runs the engine. Leave empty to use the environment that "
            "'Set up engine' creates"
        ),
        subtype="FILE_PATH",
    )
    model_cache: StringProperty(
        name="Model Cache",
        description="Folder for downloaded models (empty: the usual Hugging Face cache)",
        subtype="DIR_PATH",
    )
    results_folder: StringProperty(
        name="Results Folder",
        description="Where each reconstruction's result bundle is written (empty: the extension's user folder)",
        subtype="DIR_PATH",
    )
    default_model: EnumProperty(
        name="Default Model",
        description="The model a new reconstruction uses",
        items=models.enum_items(),
        default=models.DEFAULT_MODEL,
    )
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    keep_loaded: BoolProperty(
        name="Keep Model Loaded",
        description="Keep the model in memory between reconstructions (faster; holds GPU memory)",
        default=True,
    )
    unload_minutes: IntProperty(
        name="Unload After (minutes)",
        description="Free the model after this many idle minutes",
        default=10,
        min=1,
        soft_max=120,
    )

    def draw(self, context):
        from .panels import preferences_ui

        preferences_ui.draw_preferences(self, context, self.layout)


CLASSES = (DA3_AddonPreferences,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)  # in order; reversed on unregister


__all__ = ["ADDON_ID", "DA3_AddonPreferences", "get_prefs", "prefs_values", "user_folder"]
