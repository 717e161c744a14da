"""File > Import > DA3 reconstruction: import any result bundle (from Blender, the CLI or a render farm)."""

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .. import idnames

__all__ = ["DA3_OT_import_bundle", "bundle_folder"]


def bundle_folder(path: str) -> str:
    """The bundle folder for what the user picked: the folder itself, or the folder of a file in it
    (manifest.json or reconstruction.npz)."""
    path = bpy.path.abspath(path)
    return path if os.path.isdir(path) else os.path.dirname(path)


class DA3_OT_import_bundle(bpy.types.Operator):
    """Import a DA3 reconstruction bundle (a folder with manifest.json and reconstruction.npz)"""

    bl_idname = idnames.IMPORT_BUNDLE
    bl_label = "Import DA3 Reconstruction"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    filter_glob: StringProperty(default="manifest.json;reconstruction.npz", options={"HIDDEN"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN"})

    points: BoolProperty(name="Points", default=True)
    gaussians: BoolProperty(
        name="Gaussians",
        description="The 3D Gaussians, when the bundle has them (giant and nested models)",
        default=True,
    )
    mesh: BoolProperty(
        name="Mesh (fused)", description="The fused mesh, when the bundle has one", default=True
    )
    view_meshes: BoolProperty(
        name="Per-view Meshes",
        description="One mesh per view from its depth map, textured with its image (a tracked shot's bundle "
        "keeps no depth maps: none there)",
        default=False,
    )
    view_mesh_step: IntProperty(
        name="Pixel Step", description="Per-view meshes use every n-th pixel", default=1, min=1, soft_max=8
    )
    cameras: BoolProperty(name="Cameras", default=True)
    backgrounds: BoolProperty(name="Image Backgrounds", default=True)
    animated_camera: EnumProperty(
        name="Camera Animation",
        items=[
            ("AUTO", "Automatic", "One animated camera for video frames, one camera per image otherwise"),
            ("ALWAYS", "Animated Camera", "One camera keyed on every view"),
            ("NEVER", "Camera per View", "One camera for every view"),
        ],
        default="AUTO",
    )
    max_points: IntProperty(name="Max Points", default=2_000_000, min=1000)
    conf_percentile: FloatProperty(
        name="Drop Least Confident", default=40.0, min=0.0, max=99.0, subtype="PERCENTAGE"
    )
    set_render: BoolProperty(
        name="Set Render Camera",
        description="Scene camera and render size (for a shot also the frame rate and frame range)",
        default=True,
    )
    camera_rotation: EnumProperty(
        name="Shot Rotation",
        description="How a shot camera's rotation is keyed",
        items=[
            ("QUATERNION", "Quaternion", "Quaternion keys without sign flips"),
            ("EULER", "Euler XYZ", "Euler keys, filtered so they never jump by 360°"),
        ],
        default="QUATERNION",
    )
    animated_focal: BoolProperty(
        name="Animated Focal Length",
        description="Key a shot camera's focal length on every frame (zoom) instead of one steady value",
        default=False,
    )

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def import_options(self) -> dict:
        return {
            "points": self.points,
            "gaussians": self.gaussians,
            "mesh": self.mesh,
            "view_meshes": self.view_meshes,
            "view_mesh_step": self.view_mesh_step,
            "cameras": self.cameras,
            "backgrounds": self.backgrounds,
            "animated_camera": self.animated_camera,
            "max_points": self.max_points,
            "conf_percentile": self.conf_percentile,
            "set_render": self.set_render,
            "camera_rotation": self.camera_rotation,
            "animated_focal": self.animated_focal,
        }

    def execute(self, context):
        from ..engine.formats.bundle import BundleError
        from ..scene.importer import ImportOptions, import_bundle

        folder = bundle_folder(self.filepath or self.directory)
        try:
            result = import_bundle(context, folder, ImportOptions(**self.import_options()))
        except (BundleError, OSError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, result.summary)
        for line in getattr(result, "report_lines", ()):  # a shot's solve report, into the Info log
            self.report({"INFO"}, line)
        return {"FINISHED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        for name in (
            "points",
            "max_points",
            "conf_percentile",
            "gaussians",
            "mesh",
            "view_meshes",
            "view_mesh_step",
            "cameras",
            "backgrounds",
            "animated_camera",
        ):
            layout.prop(self, name)
        layout.prop(self, "set_render")
        layout.prop(self, "camera_rotation")
        layout.prop(self, "animated_focal")


def menu_import(self, context):
    self.layout.operator(idnames.IMPORT_BUNDLE, text="DA3 Reconstruction (folder)")


CLASSES = (DA3_OT_import_bundle,)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    _unregister_classes()
