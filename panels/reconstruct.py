"""The "Reconstruct" tab in the 3D View sidebar (N-panel).

Main panel: the Reconstruct button (or, while a job runs, a progress bar with the stage and frame
counts and a Cancel button) and the last job's outcome. Sub-panels: Inputs, Model & Options, Import,
Display (live point size and confidence cut of the active cloud) and Engine (status line, Unload).
Drawing never starts work and never writes Blender data; it only reads the service's state.
"""

from __future__ import annotations

import os

import bpy

from .. import idnames, preferences, properties
from ..operators import runtime
from ..operators.reconstruct import why_not_ready
from ..session import models
from ..session.inputs import count_folder_images
from .sidebar import Sidebar, draw_modifier_inputs, nodes_modifier, property_column

__all__ = ["CLASSES", "register", "unregister"]

STATUS_ICONS = {
    "not_set_up": "ERROR",
    "stopped": "RADIOBUT_OFF",
    "starting": "SORTTIME",
    "ready": "CHECKMARK",
    "busy": "SORTTIME",
    "error": "CANCEL",
}
REPORT_ICONS = {"INFO": "INFO", "WARNING": "ERROR", "ERROR": "CANCEL"}


class VIEW3D_PT_da3_reconstruct(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_MAIN
    bl_label = "DA3 Reconstruct"

    def draw(self, context):
        layout = self.layout
        svc = runtime.service()
        svc.pump()
        job = svc.job
        if svc.busy:
            layout.progress(factor=job.fraction, type="BAR", text=job.progress_text)
            if job.message:  # what the stage is on now ("chunk 2/9: block 5/12; 1.4 s per frame, …")
                layout.label(text=job.message)
            row = layout.row(align=True)
            row.label(text=f"{job.frames} {job.unit} · {job.elapsed:.0f} s")
            row.operator(idnames.CANCEL, icon="CANCEL")
            layout.label(text="Esc also cancels", icon="EVENT_ESC")
        else:
            col = layout.column()
            col.scale_y = 1.5
            col.operator(idnames.RECONSTRUCT, icon="CON_CAMERASOLVER")
            reason = why_not_ready(context)
            for i, line in enumerate(_wrap(reason or "", 40) if reason else []):
                layout.label(text=line, icon="INFO" if i == 0 else "BLANK1")
        report = runtime.last_report()
        if report and not svc.busy:
            level, text = report
            box = layout.box()
            box.label(text=text, icon=REPORT_ICONS.get(level, "INFO"))
            if job is not None and job.outcome == "failed" and job.details:
                box.label(text=job.details.strip().splitlines()[-1][:120])


class VIEW3D_PT_da3_inputs(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_INPUTS
    bl_parent_id = idnames.PANEL_MAIN
    bl_label = "Inputs"

    def draw(self, context):
        layout = self.layout
        s = properties.settings(context)
        layout.prop(s, "input_mode")
        if properties.is_shot(s):
            from .shot import draw_shot_input

            draw_shot_input(layout, context, s)
        elif s.input_mode == "CAMERAS":
            from .known_cameras import draw_scene_cameras

            draw_scene_cameras(layout, context)
        elif s.input_mode == "FILES":
            row = layout.row(align=True)
            row.operator(idnames.CHOOSE_IMAGES, icon="FILEBROWSER")
            row.operator(idnames.CLEAR_IMAGES, text="", icon="X")
            count = len(s.images)
            if count:
                first = os.path.basename(s.images[0].path)
                more = f" … {os.path.basename(s.images[count - 1].path)}" if count > 1 else ""
                layout.label(
                    text=f"{count} image{'s' if count != 1 else ''}: {first}{more}", icon="IMAGE_DATA"
                )
            else:
                layout.label(text="No images chosen", icon="IMAGE_DATA")
        else:
            layout.prop(s, "folder", text="")
            if s.folder:
                count = count_folder_images(bpy.path.abspath(s.folder))
                layout.label(
                    text=f"{count} image{'s' if count != 1 else ''} in the folder", icon="IMAGE_DATA"
                )


def _chosen_model(context, s) -> models.ModelInfo | None:
    if s.model == "CUSTOM":
        return None
    if s.model == "DEFAULT":
        return models.model_info(preferences.prefs_values(preferences.get_prefs(context))["default_model"])
    return models.model_info(s.model)


class VIEW3D_PT_da3_model(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_MODEL
    bl_parent_id = idnames.PANEL_MAIN
    bl_label = "Model & Options"

    def draw(self, context):
        layout = self.layout
        s = properties.settings(context)
        layout.prop(s, "model")
        info = _chosen_model(context, s)
        if s.model == "CUSTOM":
            layout.prop(s, "custom_model")
        elif info is not None:
            row = layout.row()
            row.label(text=f"{info.label}: {info.summary}", icon="BLANK1" if info.commercial_use else "ERROR")
            if not info.commercial_use:
                layout.label(text="Non-commercial licence (CC BY-NC 4.0)", icon="INFO")
        col = property_column(layout)
        col.prop(s, "process_res")
        col.prop(s, "process_res_method")
        col.prop(s, "ref_view_strategy")
        col.prop(s, "metric")
        col.prop(s, "use_ray_pose")


class VIEW3D_PT_da3_import(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_IMPORT
    bl_parent_id = idnames.PANEL_MAIN
    bl_label = "Import"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = properties.settings(context)
        col = property_column(layout)
        col.prop(s, "import_points")
        sub = col.column()
        sub.enabled = s.import_points
        sub.prop(s, "max_points")
        sub.prop(s, "conf_percentile")
        info = _chosen_model(context, s)
        if info is not None and not info.gaussians:
            col.label(text=f"Gaussians: {models.gaussian_model_labels()}", icon="INFO")
        else:
            col.prop(s, "import_gaussians")
        col.prop(s, "import_mesh")
        sub = col.column()
        sub.enabled = s.import_mesh
        sub.prop(s, "mesh_detail")
        sub.prop(s, "mesh_voxel_size")
        sub.prop(s, "mesh_max_faces")
        if properties.is_shot(s):
            col.label(text="Per-view Meshes: images only (a shot keeps no depth)", icon="INFO")
        else:
            col.prop(s, "import_view_meshes")
            sub = col.column()
            sub.enabled = s.import_view_meshes
            sub.prop(s, "view_mesh_step")
        col.prop(s, "import_cameras")
        sub = col.column()
        sub.enabled = s.import_cameras
        sub.prop(s, "camera_backgrounds")
        sub.prop(s, "set_render")
        layout.operator(idnames.IMPORT_RESULT, text="Import Trained Result…", icon="IMPORT")


def _points_modifier(obj):
    from ..scene.nodes import MODIFIER_NAME

    return nodes_modifier(obj, MODIFIER_NAME)


class VIEW3D_PT_da3_display(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_DISPLAY
    bl_parent_id = idnames.PANEL_MAIN
    bl_label = "Point Display"

    @classmethod
    def poll(cls, context):
        return _points_modifier(context.active_object) is not None

    def draw(self, context):
        layout = self.layout
        obj = context.active_object
        layout.label(text=obj.name, icon="POINTCLOUD_DATA")
        draw_modifier_inputs(layout, _points_modifier(obj), ("Point Size", "Min Confidence"))


class VIEW3D_PT_da3_gaussians(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_GAUSSIANS
    bl_parent_id = idnames.PANEL_MAIN
    bl_label = "Gaussians"

    @classmethod
    def poll(cls, context):
        from ..scene.gaussians import is_gaussians

        return is_gaussians(context.active_object)

    def draw(self, context):
        from ..scene.gaussians import COLOURS_KEY
        from ..scene.splat_nodes import MODIFIER_NAME

        layout = self.layout
        obj = context.active_object
        layout.label(text=f"{obj.name}: {len(obj.data.vertices):,} splats", icon="OUTLINER_OB_POINTCLOUD")
        modifier = nodes_modifier(obj, MODIFIER_NAME)
        if modifier is not None:
            draw_modifier_inputs(layout, modifier, ("Viewport Splats", "Point Size", "Min Opacity"))
        current = obj.get(COLOURS_KEY, "SCENE")
        row = layout.row(align=True)
        for mode, text in (("SCENE", "Scene Colours"), ("VIEWER", "Viewer Colours")):
            row.operator(idnames.SPLAT_COLOURS, text=text, depress=current == mode).colours = mode
        row = layout.row(align=True)
        row.operator(idnames.CROP_GAUSSIANS, icon="SELECT_INTERSECT")
        row.operator(idnames.EXPORT_GAUSSIANS, text="Export…", icon="EXPORT")


class VIEW3D_PT_da3_engine(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_ENGINE
    bl_parent_id = idnames.PANEL_MAIN
    bl_label = "Engine"

    def draw(self, context):
        layout = self.layout
        svc = runtime.service()
        prefs = preferences.prefs_values(preferences.get_prefs(context))
        problem = None if runtime.has_override() else preferences.engine_python(prefs).problem
        status = svc.status(problem)
        box = layout.box()
        for i, line in enumerate(_wrap(status.text, 42)):
            box.label(text=line, icon=STATUS_ICONS.get(status.kind, "INFO") if i == 0 else "BLANK1")
        row = layout.row(align=True)
        row.operator(idnames.UNLOAD_MODEL, icon="UNLINKED")
        row.operator(idnames.OPEN_PREFERENCES, text="", icon="PREFERENCES")


def _wrap(text: str, width: int) -> list[str]:
    """Split a status message into label-sized lines (labels do not wrap)."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line] if line else lines or [""]


CLASSES = (
    VIEW3D_PT_da3_reconstruct,
    VIEW3D_PT_da3_inputs,
    VIEW3D_PT_da3_model,
    VIEW3D_PT_da3_import,
    VIEW3D_PT_da3_display,
    VIEW3D_PT_da3_gaussians,
    VIEW3D_PT_da3_engine,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)  # in order; reversed on unregister
