"""File > Import > DA3 Mesh (.ply): a triangle PLY (a bundle's mesh.ply, or any binary mesh PLY) as one
mesh object with its vertex colours shown by the lit mesh material; bad files are refused with a message
and change nothing."""

from __future__ import annotations

import os

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ImportHelper

from .. import idnames

__all__ = ["DA3_OT_import_mesh"]


class DA3_OT_import_mesh(bpy.types.Operator, ImportHelper):
    """Import a triangle mesh from a binary PLY (positions, colours, UVs), faster than the PLY importer"""

    bl_idname = idnames.IMPORT_MESH
    bl_label = "Import DA3 Mesh"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply", options={"HIDDEN"})

    def execute(self, context):
        from ..engine.formats.ply import PlyError
        from ..scene.mesh import import_mesh_file
        from ..scene.root import NewDatablocks

        path = bpy.path.abspath(self.filepath)
        name = os.path.splitext(os.path.basename(path))[0] or "Mesh"
        created = NewDatablocks()
        try:
            obj = import_mesh_file(path, name, context.collection)
        except (PlyError, OSError, ValueError) as exc:
            created.remove()
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        for other in context.view_layer.objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        faces, verts = len(obj.data.polygons), len(obj.data.vertices)
        self.report({"INFO"}, f"Imported {faces:,} faces on {verts:,} vertices from {path}")
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(idnames.IMPORT_MESH, text="DA3 Mesh (.ply)")


CLASSES = (DA3_OT_import_mesh,)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    _unregister_classes()
