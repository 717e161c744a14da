"""File > Import / Export > 3D Gaussians (.ply), and cropping splats to a box.

Import reads any 3DGS PLY (the Inria layout that the Inria code, gsplat, nerfstudio's
``ns-export gaussian-splat``, SuGaR and our engine write); export writes the active Gaussians object
back in that layout with every transform made in Blender applied (SH rotated). Both refuse bad input
with a message and change nothing.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .. import idnames

__all__ = [
    "DA3_OT_crop_gaussians",
    "DA3_OT_export_gaussians",
    "DA3_OT_import_gaussians",
    "DA3_OT_splat_colours",
]

COLOUR_ITEMS = [
    (
        "SCENE",
        "Scene Colours",
        "Splats blend in linear light like any emitter (Standard view transform): opaque colours exact, "
        "soft edges lighter than in a splat viewer",
    ),
    (
        "VIEWER",
        "Viewer Colours",
        "Splats blend as splat viewers blend them (sets the Raw view transform): renders match 3DGS and "
        "gsplat pixel for pixel; lit objects look darker under Raw",
    ),
]


class DA3_OT_import_gaussians(bpy.types.Operator, ImportHelper):
    """Import 3D Gaussian splats from a 3DGS PLY (Inria 3DGS, gsplat, nerfstudio, SuGaR, DA3)"""

    bl_idname = idnames.IMPORT_GAUSSIANS
    bl_label = "Import 3D Gaussians"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply", options={"HIDDEN"})
    colours: EnumProperty(name="Colours", items=COLOUR_ITEMS, default="SCENE")

    def execute(self, context):
        from ..engine.formats.ply import PlyError
        from ..scene.gaussians import GAUSSIANS_TAG, import_splat_file, prepare_scene, set_splat_colours

        path = bpy.path.abspath(self.filepath)
        try:
            obj = import_splat_file(path, context.collection, colours=self.colours)
        except (PlyError, OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for other in context.view_layer.objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        count, degree = len(obj.data.vertices), obj[GAUSSIANS_TAG]
        self.report({"INFO"}, f"Imported {count:,} splats (SH degree {degree}) from {path}")
        for note in (prepare_scene(context.scene), set_splat_colours(obj, self.colours, context.scene)):
            if note:
                self.report({"INFO"}, note)
        return {"FINISHED"}


class DA3_OT_export_gaussians(bpy.types.Operator, ExportHelper):
    """Export the active Gaussians object as a 3DGS PLY, with its transforms applied"""

    bl_idname = idnames.EXPORT_GAUSSIANS
    bl_label = "Export 3D Gaussians"
    bl_options = {"REGISTER"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply", options={"HIDDEN"})
    frame: EnumProperty(
        name="Coordinates",
        items=[
            (
                "SOURCE",
                "Original Frame",
                "The frame the splats came in, with the moves made in Blender applied",
            ),
            ("WORLD", "Blender World", "Blender's world coordinates (Z up)"),
        ],
        default="SOURCE",
    )

    @classmethod
    def poll(cls, context):
        from ..scene.gaussians import is_gaussians

        if is_gaussians(context.active_object):
            return True
        cls.poll_message_set("Select a Gaussians object (File > Import > 3D Gaussians)")
        return False

    def execute(self, context):
        from ..engine.formats.gaussians_ply import write_splat_table
        from ..scene.gaussians import transformed_splats

        obj = context.active_object
        try:
            table = transformed_splats(obj, self.frame)
            write_splat_table(bpy.path.abspath(self.filepath), table)
        except (OSError, ValueError) as exc:
            self.report({"ERROR"}, f"Nothing was exported: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {len(table):,} splats to {self.filepath}")
        return {"FINISHED"}


class DA3_OT_crop_gaussians(bpy.types.Operator):
    """Keep only the splats inside the other selected object's box (a cube or an empty)"""

    bl_idname = idnames.CROP_GAUSSIANS
    bl_label = "Crop Splats to Box"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        from ..scene.gaussians import is_gaussians

        boxes = [o for o in context.selected_objects if o is not context.active_object]
        if is_gaussians(context.active_object) and len(boxes) == 1:
            return True
        cls.poll_message_set("Select the box, then the Gaussians object (active)")
        return False

    def execute(self, context):
        from ..scene.gaussians import keep_splats, splats_of

        obj = context.active_object
        box = next(o for o in context.selected_objects if o is not obj)
        table = splats_of(obj)  # read once: the box test and the crop both use it
        inside = _inside_box(box, np.asarray(obj.matrix_world, np.float64), table.means)
        removed = keep_splats(obj, inside, table)
        self.report({"INFO"}, f"Removed {removed:,} splats outside '{box.name}'; {int(inside.sum()):,} left")
        return {"FINISHED"}


class DA3_OT_splat_colours(bpy.types.Operator):
    """Choose how the active Gaussians object's splats blend (and the view transform that goes with it)"""

    bl_idname = idnames.SPLAT_COLOURS
    bl_label = "Splat Colours"
    bl_options = {"REGISTER", "UNDO"}

    colours: EnumProperty(name="Colours", items=COLOUR_ITEMS, default="SCENE")

    @classmethod
    def poll(cls, context):
        from ..scene.gaussians import is_gaussians

        return is_gaussians(context.active_object)

    def execute(self, context):
        from ..scene.gaussians import set_splat_colours

        note = set_splat_colours(context.active_object, self.colours, context.scene)
        if note:
            self.report({"INFO"}, note)
        return {"FINISHED"}


def _inside_box(box: bpy.types.Object, world: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Which splat centres (object space of ``world``) lie inside ``box``'s local bounds (an empty:
    its display size cube)."""
    to_box = np.linalg.solve(np.asarray(box.matrix_world, np.float64), world)
    local = means.astype(np.float64) @ to_box[:3, :3].T + to_box[:3, 3]
    if box.type == "EMPTY":
        half = float(box.empty_display_size)
        low, high = np.full(3, -half), np.full(3, half)
    else:
        corners = np.asarray([tuple(c) for c in box.bound_box], np.float64)
        low, high = corners.min(axis=0), corners.max(axis=0)
    return np.all((local >= low) & (local <= high), axis=1)


def menu_import(self, context):
    self.layout.operator(idnames.IMPORT_GAUSSIANS, text="3D Gaussians (.ply)")


def menu_export(self, context):
    self.layout.operator(idnames.EXPORT_GAUSSIANS, text="3D Gaussians (.ply)")


CLASSES = (DA3_OT_import_gaussians, DA3_OT_export_gaussians, DA3_OT_crop_gaussians, DA3_OT_splat_colours)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.TOPBAR_MT_file_import.append(menu_import)
    bpy.types.TOPBAR_MT_file_export.append(menu_export)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(menu_export)
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    _unregister_classes()
