"""Engine operators of the N-panel: unload the model, open the preferences (where the engine is set up)."""

from __future__ import annotations

import bpy

from .. import idnames, preferences
from . import runtime

__all__ = ["DA3_OT_open_preferences", "DA3_OT_unload_model"]


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


class DA3_OT_open_preferences(bpy.types.Operator):
    """Open this extension's preferences (engine setup, models, device)"""

    bl_idname = idnames.OPEN_PREFERENCES
    bl_label = "Engine Preferences"

    def execute(self, context):
        bpy.ops.screen.userpref_show("INVOKE_DEFAULT")
        bpy.ops.preferences.addon_show(module=preferences.ADDON_ID)
        return {"FINISHED"}


CLASSES = (DA3_OT_unload_model, DA3_OT_open_preferences)


register, unregister = bpy.utils.register_classes_factory(CLASSES)  # in order; reversed on unregister
