"""Orienting a solved shot (Set Floor, Set Origin, Set Scale, Reset) and jumping to a frame of its report.

Thin operators: they read the selection, call ``scene.orient`` (which changes the reconstruction root's
transform and nothing else) and report. Each can be undone and redone; Set Scale's distance can be
changed afterwards in the Adjust Last Operation panel.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import FloatProperty, IntProperty

from .. import idnames

__all__ = [
    "DA3_OT_jump_to_frame",
    "DA3_OT_reset_alignment",
    "DA3_OT_set_floor",
    "DA3_OT_set_origin",
    "DA3_OT_set_scale",
]


def _root_or_none(context):
    from ..scene.orient import context_root

    return context_root(context)


def _poll_root(cls, context) -> bool:
    if _root_or_none(context) is None:
        cls.poll_message_set("Select an object of a DA3 reconstruction (its points, camera or root)")
        return False
    return True


def _edited_cloud(context, root):
    """The reconstruction's point cloud when it is in Edit Mode, else None."""
    from ..scene.orient import cloud_of

    cloud = cloud_of(root)
    return cloud if cloud is not None and cloud.mode == "EDIT" else None


class DA3_OT_set_floor(bpy.types.Operator):
    """Make the floor Z = 0 with the cameras above it: the plane through the selected points (Edit Mode, \
3 or more), or the floor found in the whole cloud when nothing is selected. Only the root moves"""

    bl_idname = idnames.SET_FLOOR
    bl_label = "Set Floor"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(_poll_root)

    def execute(self, context):
        from ..scene.orient import OrientError, selected_points, set_floor

        root = _root_or_none(context)
        cloud = _edited_cloud(context, root)
        selected = selected_points(cloud) if cloud is not None else None
        try:
            floor = set_floor(root, selected if selected is not None and len(selected) else None)
        except OrientError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        how = (
            f"{len(selected)} selected points"
            if selected is not None and len(selected)
            else "the whole cloud"
        )
        share = f", {100 * floor.inlier_fraction:.0f} % of the points on it" if floor.threshold > 0 else ""
        self.report({"INFO"}, f"Floor set from {how}{share}")
        return {"FINISHED"}


class DA3_OT_set_origin(bpy.types.Operator):
    """Put the origin on the floor below the active point (Edit Mode) or the 3D cursor. Only the root moves"""

    bl_idname = idnames.SET_ORIGIN
    bl_label = "Set Origin"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(_poll_root)

    def execute(self, context):
        from ..scene.orient import active_point, set_origin

        root = _root_or_none(context)
        cloud = _edited_cloud(context, root)
        local = active_point(cloud) if cloud is not None else None
        if local is not None:
            world = np.array(root.matrix_world) @ np.append(local, 1.0)
            what = "the active point"
        else:
            world = np.array(context.scene.cursor.location)
            what = "the 3D cursor"
        set_origin(root, world[:3])
        self.report({"INFO"}, f"Origin set below {what}")
        return {"FINISHED"}


class DA3_OT_set_scale(bpy.types.Operator):
    """Scale the reconstruction so two selected points (Edit Mode) or two selected objects are the given \
distance apart. Only the root changes"""

    bl_idname = idnames.SET_SCALE
    bl_label = "Set Scale"
    bl_options = {"REGISTER", "UNDO"}

    distance: FloatProperty(
        name="Distance",
        description="The real distance between the two points",
        default=1.0,
        min=1e-6,
        soft_max=1000.0,
        unit="LENGTH",
        subtype="DISTANCE",
    )

    poll = classmethod(_poll_root)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def _two_points(self, context, root) -> tuple[np.ndarray, np.ndarray] | str:
        from ..scene.orient import selected_points

        cloud = _edited_cloud(context, root)
        if cloud is not None:
            local = selected_points(cloud)
            if len(local) != 2:
                return f"Select exactly 2 points of the cloud ({len(local)} selected)."
            world = local @ np.array(root.matrix_world)[:3, :3].T + np.array(root.matrix_world)[:3, 3]
            return world[0], world[1]
        objects = list(context.selected_objects)
        if len(objects) != 2:
            return f"Select exactly 2 objects ({len(objects)} selected), or 2 points in Edit Mode."
        return tuple(np.array(o.matrix_world.translation) for o in objects)

    def execute(self, context):
        from ..scene.orient import OrientError, set_scale

        root = _root_or_none(context)
        points = self._two_points(context, root)
        if isinstance(points, str):
            self.report({"ERROR"}, points)
            return {"CANCELLED"}
        try:
            factor = set_scale(root, points[0], points[1], self.distance)
        except OrientError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Scaled by {factor:.4g}: the two points are now {self.distance:.4g} apart")
        return {"FINISHED"}


class DA3_OT_reset_alignment(bpy.types.Operator):
    """Put the reconstruction back where it was imported (the solve's own floor, origin and scale)"""

    bl_idname = idnames.RESET_ALIGNMENT
    bl_label = "Reset Alignment"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(_poll_root)

    def execute(self, context):
        from ..scene.orient import OrientError, reset_alignment

        try:
            reset_alignment(_root_or_none(context))
        except OrientError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class DA3_OT_jump_to_frame(bpy.types.Operator):
    """Go to this frame of the shot"""

    bl_idname = idnames.JUMP_TO_FRAME
    bl_label = "Jump to Frame"
    bl_options = {"REGISTER", "UNDO"}

    frame: IntProperty(name="Frame")

    def execute(self, context):
        context.scene.frame_set(self.frame)
        return {"FINISHED"}


CLASSES = (
    DA3_OT_set_floor,
    DA3_OT_set_origin,
    DA3_OT_set_scale,
    DA3_OT_reset_alignment,
    DA3_OT_jump_to_frame,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)  # in order; reversed on unregister
