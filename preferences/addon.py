"""The AddonPreferences: the engine's Python, model cache, results folder, default model, device, precision,
unloading.

Its ``bl_idname`` is the extension's package name (``locations.ADDON_ID``); the property names are what
users' saved preferences hold, so they never change. ``prefs_values`` reads them as plain values.
"""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..session import models
from .draw import draw_preferences
from .locations import ADDON_ID

__all__ = ["DEVICES", "PRECISIONS", "DA3_AddonPreferences", "get_prefs", "prefs_values"]

DEVICES = [
    ("auto", "Automatic", "The GPU when there is one (CUDA or Apple MPS), else the CPU"),
    ("cuda", "NVIDIA GPU (CUDA)", "Run on the first CUDA GPU"),
    ("mps", "Apple GPU (MPS)", "Run on the Apple Silicon GPU"),
    ("cpu", "CPU", "Run on the CPU (slow, but works everywhere)"),
]
PRECISIONS = [
    (
        "auto",
        "Automatic",
        "bf16 where the device computes it natively (NVIDIA GPUs since Ampere, CPUs with AVX512-BF16 or "
        "AMX): faster, depth within about 1 %. Else full precision (fp16 on older NVIDIA GPUs)",
    ),
    ("float32", "Full (fp32)", "Always full precision: slower, the reference numbers"),
]


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
            "keep_results_days": 30,
            "results_cap_gb": 20.0,
            "default_model": models.DEFAULT_MODEL,
            "device": "auto",
            "precision": "auto",
            "keep_loaded": True,
            "unload_minutes": 10,
        }
    return {
        "engine_python": prefs.engine_python,
        "model_cache": bpy.path.abspath(prefs.model_cache) if prefs.model_cache else "",
        "results_folder": bpy.path.abspath(prefs.results_folder) if prefs.results_folder else "",
        "keep_results_days": prefs.keep_results_days,
        "results_cap_gb": prefs.results_cap_gb,
        "default_model": prefs.default_model,
        "device": prefs.device,
        "precision": prefs.precision,
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
    keep_results_days: IntProperty(
        name="Keep Results For (days)",
        description="Results older than this are removed from the results folder when a reconstruction "
        "starts (0: keep them); your scenes keep what they imported",
        default=30,
        min=0,
        soft_max=365,
    )
    results_cap_gb: FloatProperty(
        name="Results Cap (GB)",
        description="When the results folder holds more than this, the oldest results are removed when a "
        "reconstruction starts (0: no cap)",
        default=20.0,
        min=0.0,
        soft_max=500.0,
    )
    default_model: EnumProperty(
        name="Default Model",
        description="The model a new reconstruction uses",
        items=models.enum_items(),
        default=models.DEFAULT_MODEL,
    )
    device: EnumProperty(name="Device", items=DEVICES, default="auto")
    precision: EnumProperty(name="Precision", items=PRECISIONS, default="auto")
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
        draw_preferences(self, context, self.layout)


CLASSES = (DA3_AddonPreferences,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)  # in order; reversed on unregister
