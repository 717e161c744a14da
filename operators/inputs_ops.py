"""Choosing the images: a file browser with multiple selection, and clearing the list."""

import os

import bpy
from bpy.props import BoolProperty, CollectionProperty, StringProperty

from .. import idnames, properties
from ..engine.io.inputs import natural_sort_key
from ..session.inputs import IMAGE_EXTENSIONS, is_image

__all__ = ["DA3_OT_choose_images", "DA3_OT_clear_images", "store_images"]


def store_images(settings, paths: list[str]) -> int:
    """Replace the scene's image list with ``paths`` (images only, in the given order); returns the count."""
    settings.images.clear()
    for path in paths:
        if is_image(path):
            settings.images.add().path = path
    settings.input_mode = "FILES"
    return len(settings.images)


class DA3_OT_choose_images(bpy.types.Operator):
    """Choose the images to reconstruct (select several with Shift or A)"""

    bl_idname = idnames.CHOOSE_IMAGES
    bl_label = "Choose Images"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_glob: StringProperty(
        default=";".join(f"*{ext}" for ext in IMAGE_EXTENSIONS), options={"HIDDEN", "SKIP_SAVE"}
    )

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        folder = bpy.path.abspath(self.directory)
        names = sorted({f.name for f in self.files if f.name}, key=natural_sort_key)  # img2 before img10
        paths = [os.path.join(folder, name) for name in names]
        count = store_images(properties.settings(context), paths)
        if count == 0:
            self.report({"WARNING"}, "No images selected: select image files in the file browser.")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{count} image{'s' if count != 1 else ''} chosen")
        return {"FINISHED"}


class DA3_OT_clear_images(bpy.types.Operator):
    """Remove every image from the list"""

    bl_idname = idnames.CLEAR_IMAGES
    bl_label = "Clear Images"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if len(properties.settings(context).images) == 0:
            cls.poll_message_set("The list is empty")
            return False
        return True

    def execute(self, context):
        properties.settings(context).images.clear()
        return {"FINISHED"}


CLASSES = (DA3_OT_choose_images, DA3_OT_clear_images)


register, unregister = bpy.utils.register_classes_factory(CLASSES)  # in order; reversed on unregister
