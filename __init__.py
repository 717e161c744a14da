# SPDX-License-Identifier: GPL-3.0-or-later
"""DA3 Reconstruct: photos → point clouds and cameras in the open Blender scene (Depth Anything 3).

Blender imports this package as ``bl_ext.<repo>.da3_reconstruct`` and calls ``register()``. Nothing is
imported at module level: the engine process never imports this file, test runners can import it
without bpy, and Blender starts fast (each module's own imports happen in ``register``). Modules are
registered in the order below and unregistered in reverse; ``operators.runtime.shutdown`` stops the
engine process and the engine setup first, because a live timer or child at exit hangs bpy 4.5.
"""

from __future__ import annotations

import importlib

# Registration order: preferences and properties first (operators and panels use them), menus last.
MODULES = (
    "preferences.addon",
    "preferences.setup_engine",
    "properties",
    "operators.inputs_ops",
    "operators.engine_ops",
    "operators.reconstruct",
    "operators.import_bundle",
    "operators.gaussians_ops",
    "operators.mesh_ops",
    "operators.dataset_ops",
    "operators.results_ops",
    "operators.shot_ops",
    "panels.reconstruct",
    "panels.shot",
)


def _modules() -> list:
    return [importlib.import_module(f".{name}", __package__) for name in MODULES]


def register() -> None:
    for module in _modules():
        module.register()


def unregister() -> None:
    from .operators import runtime

    runtime.shutdown()
    for module in reversed(_modules()):
        module.unregister()
