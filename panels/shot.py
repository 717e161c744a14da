"""The camera-tracking parts of the "Reconstruct" tab: the shot input, the Shot options and Camera Solve.

- Inputs (``draw_shot_input``, called by the Inputs panel): the Movie Clip, the selected movie strip or
  the video file, with the scene frames it covers.
- Shot (shown for a shot input): frame range and step, chunk size and overlap, and how the camera is
  keyed (quaternion or Euler rotation, steady or animated focal length, the plate behind it).
- Camera Solve (shown when the active object, or the scene camera, belongs to a reconstruction): the
  solve error in plate pixels with Blender's own wording, the focal length and its spread, the worst
  frames (click to jump there), each chunk joint's residual, and the floor, origin and scale tools.

Drawing only reads: the report lives on the reconstruction root (``scene.solve_report.store_solve``).
"""

from __future__ import annotations

import bpy

from .. import idnames, properties
from .sidebar import Sidebar, property_column

__all__ = ["CLASSES", "draw_shot_input", "register", "unregister"]


def _strip_label(scene) -> tuple[str, str]:
    from ..scene.compat import strip_timing
    from ..scene.shot_inputs import movie_strips

    selected = [s for s in movie_strips(scene) if s.select]
    editor = scene.sequence_editor
    active = editor.active_strip if editor is not None else None
    strip = active if active in selected else (selected[0] if len(selected) == 1 else None)
    if strip is None:
        if selected:
            return f"{len(selected)} movie strips selected: click one", "ERROR"
        return "Select a movie strip in the Video Sequencer", "INFO"
    timing = strip_timing(strip)
    return f"{strip.name}: frames {timing.first}-{timing.end - 1}", "SEQUENCE"


def draw_shot_input(layout, context, s) -> None:
    """The shot input of the Inputs panel."""
    scene = context.scene
    if s.input_mode == "CLIP":
        layout.prop(scene, "active_clip", text="Clip")
        clip = scene.active_clip
        if clip is not None:
            last = clip.frame_start + clip.frame_duration - 1
            layout.label(
                text=f"Frames {clip.frame_start}-{last} · {clip.fps:g} fps · {clip.size[0]}x{clip.size[1]}",
                icon="SEQUENCE",
            )
    elif s.input_mode == "STRIP":
        text, icon = _strip_label(scene)
        layout.label(text=text, icon=icon)
    else:
        layout.prop(s, "video_file", text="")


class VIEW3D_PT_da3_shot(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_SHOT
    bl_parent_id = idnames.PANEL_MAIN
    bl_label = "Shot"

    @classmethod
    def poll(cls, context):
        return properties.is_shot(properties.settings(context))

    def draw(self, context):
        layout = self.layout
        s = properties.settings(context)
        col = property_column(layout)
        col.prop(s, "shot_whole")
        sub = col.column(align=True)
        sub.enabled = not s.shot_whole
        sub.prop(s, "shot_frame_start", text="Frame Start")
        sub.prop(s, "shot_frame_end", text="End")
        col.prop(s, "shot_stride")
        col.prop(s, "use_camera_track")
        if s.use_camera_track:
            col.prop(s, "track_camera", text="Camera")
        col.separator()
        sub = col.column(align=True)
        sub.prop(s, "chunk_size")
        sub.prop(s, "chunk_overlap")
        col.separator()
        col.prop(s, "camera_rotation")
        col.prop(s, "animated_focal")
        col.prop(s, "camera_backgrounds", text="Plate Background")
        col.prop(s, "set_render", text="Set Scene from Footage")


def _rating_icon(error: float | None) -> str:
    if error is None:
        return "QUESTION"
    return "CHECKMARK" if error < 0.3 else ("INFO" if error <= 3.0 else "ERROR")


class VIEW3D_PT_da3_solve(Sidebar, bpy.types.Panel):
    bl_idname = idnames.PANEL_SOLVE
    bl_label = "Camera Solve"

    @classmethod
    def poll(cls, context):
        from ..scene.orient import context_root

        return context_root(context) is not None

    def draw(self, context):
        from ..scene.orient import context_root
        from ..scene.solve_report import solve_summary_of

        layout = self.layout
        root = context_root(context)
        layout.label(text=root.name, icon="EMPTY_ARROWS")
        summary = solve_summary_of(root)
        if summary is not None:
            _draw_report(layout, root, summary)
        box = layout.box()
        units = "metres" if root.get("da3_units") == "metre" else "relative units (use Set Scale)"
        box.label(text=f"Orientation · {units}", icon="ORIENTATION_GLOBAL")
        row = box.row(align=True)
        row.operator(idnames.SET_FLOOR, icon="MESH_PLANE")
        row.operator(idnames.SET_ORIGIN, icon="OBJECT_ORIGIN")
        row = box.row(align=True)
        row.operator(idnames.SET_SCALE, icon="DRIVER_DISTANCE")
        row.operator(idnames.RESET_ALIGNMENT, text="Reset", icon="LOOP_BACK")
        box.label(text="Floor/Scale: select points in Edit Mode, or none", icon="INFO")
        _draw_dataset_export(layout, context)


def _draw_dataset_export(layout, context) -> None:
    """Export Dataset: the trainer, the folder, the seed budget and the button (with its progress)."""
    from ..operators.dataset_ops import running_export

    s = properties.settings(context)
    box = layout.box()
    box.label(text="Export Dataset (in this root's frame)", icon="EXPORT")
    box.prop(s, "dataset_tool", text="")
    box.prop(s, "dataset_folder", text="")
    box.prop(s, "dataset_points")
    task = running_export()
    if task is not None:
        box.label(text=task.progress_text, icon="TIME")
    box.operator(idnames.EXPORT_DATASET, icon="EXPORT")


def _draw_report(layout, root, summary) -> None:
    """The solve report box: error and rating, focal length, worst frames (buttons), chunk joints."""
    box = layout.box()
    if summary.error_px is None:
        box.label(text="Solve error: not measured", icon="QUESTION")
    else:
        box.label(text=f"Solve error {summary.error_px:.2f} px", icon=_rating_icon(summary.error_px))
        box.label(text=f"{summary.rating.capitalize()} · mean {summary.mean_px or 0:.2f} px", icon="BLANK1")
    if summary.focal_px is not None:
        camera = next((c for c in root.children if c.type == "CAMERA"), None)
        mm = f" ({camera.data.lens:.1f} mm)" if camera is not None else ""
        spread = f" ± {summary.focal_spread_px:.1f}" if summary.focal_spread_px is not None else ""
        box.label(text=f"Focal {summary.focal_px:.0f}{spread} px{mm}", icon="CAMERA_DATA")
        if summary.zoom_suspected:
            box.label(text="The focal length varies: a zoom?", icon="ERROR")
    if summary.worst:
        col = box.column(align=True)
        col.label(text="Worst frames:")
        for frame, error in summary.worst:
            op = col.operator(idnames.JUMP_TO_FRAME, text=f"Frame {frame}: {error:.2f} px", icon="TIME")
            op.frame = frame
    if summary.joints:
        col = box.column(align=True)
        col.label(text=f"Chunk joints ({len(summary.joints)}):")
        for joint in summary.joints:
            value = joint.relative_residual
            text = f"{100 * value:.2f} % of depth" if value is not None else "joined on cameras"
            col.label(text=f"Chunk {joint.chunk}: {text}", icon="BLANK1")
    text_name = root.get("da3_solve_text")
    if text_name:
        box.label(text=f"Full report: text '{text_name}'", icon="TEXT")


CLASSES = (VIEW3D_PT_da3_shot, VIEW3D_PT_da3_solve)


register, unregister = bpy.utils.register_classes_factory(CLASSES)  # in order; reversed on unregister
