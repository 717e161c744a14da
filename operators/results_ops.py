"""File > Import > Trained Result (SuGaR, 3DGS, nerfstudio): what a splatting tool trained on a DA3 dataset,
placed under the reconstruction root it came from (``scene.tool_results``); bad files are refused with
a message and change nothing."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from .. import idnames
from .gaussians_ops import COLOUR_ITEMS

__all__ = ["DA3_OT_import_result"]


class DA3_OT_import_result(bpy.types.Operator, ImportHelper):
    """Import a result trained on a DA3 dataset (SuGaR mesh and Gaussians, 3DGS/gsplat point_cloud.ply,
    nerfstudio splat.ply, DN-Splatter mesh) in place, under the reconstruction it came from"""

    bl_idname = idnames.IMPORT_RESULT
    bl_label = "Import Trained Result"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply;*.obj;*.pt;*.pth;*.ckpt", options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    dataset: StringProperty(
        name="Dataset",
        subtype="DIR_PATH",
        description="The DA3 dataset folder the tool trained on (holds da3_dataset.json); needed when the "
        "result is not inside it, as SuGaR's output folder is not (empty: the last one named)",
    )
    dataparser: StringProperty(
        name="nerfstudio Run",
        subtype="FILE_PATH",
        description="The run's dataparser_transforms.json (outputs/<name>/<method>/<timestamp>/), when it is "
        "not found next to the result or under the dataset's outputs/ (nerfstudio datasets only; not remembered)",
        options={"SKIP_SAVE"},
    )
    companions: BoolProperty(
        name="Both SuGaR Halves",
        default=True,
        description="With a SuGaR mesh also import its refined Gaussians (and the other way round)",
    )
    bind: BoolProperty(
        name="Splats Follow Mesh",
        default=True,
        description="Bind SuGaR's Gaussians to the faces of its mesh, so editing, sculpting or rigging the "
        "mesh carries them",
    )
    colours: EnumProperty(name="Colours", items=COLOUR_ITEMS, default="SCENE")

    def execute(self, context):
        from ..scene.gaussians import prepare_scene
        from ..scene.tool_results import ERRORS, LAST_DATASET_KEY, import_results

        names = [f.name for f in self.files if f.name]
        folder = bpy.path.abspath(self.directory) if self.directory else ""
        paths = (
            [os.path.join(folder, n) for n in names]
            if names and folder
            else [bpy.path.abspath(self.filepath)]
        )
        dataset = bpy.path.abspath(self.dataset) if self.dataset else context.scene.get(LAST_DATASET_KEY, "")
        try:
            result = import_results(
                context,
                paths,
                dataset=dataset,
                dataparser=bpy.path.abspath(self.dataparser) if self.dataparser else "",
                companions=self.companions,
                bind=self.bind,
                colours=self.colours,
            )
        except ERRORS as exc:
            self.report({"ERROR"}, f"Nothing was imported: {exc}")
            return {"CANCELLED"}
        for other in context.view_layer.objects:
            other.select_set(False)
        for obj in result.objects:
            obj.select_set(True)
        context.view_layer.objects.active = result.objects[-1]
        if any("Gaussians" in o.name for o in result.objects):
            note = prepare_scene(context.scene)
            if note:
                self.report({"INFO"}, note)
        parts = ", ".join(o.name for o in result.objects)
        bound = f"; {result.bound:,} splats follow the mesh" if result.bound else ""
        notes = "".join(f"; {n}" for n in result.notes)
        where = result.root.name if result.root else "the scene"
        self.report({"INFO"}, f"Imported {parts} under '{where}' in {result.seconds:.1f} s{bound}{notes}")
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(idnames.IMPORT_RESULT, text="Trained Result (SuGaR, 3DGS, nerfstudio)")


CLASSES = (DA3_OT_import_result,)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    _unregister_classes()
