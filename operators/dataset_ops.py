"""Export Dataset: the active reconstruction's bundle as a dataset for 3DGS/SuGaR/gsplat or
nerfstudio/DN-Splatter, in the frame of its root as it is now (the user's floor, origin and scale).

``invoke`` starts the export on a worker thread (``session.dataset_export``) and returns; a window-manager
timer wakes ``modal`` to show the progress in the status bar; Esc cancels (nothing is left behind).
Background mode and scripts run ``execute``, which waits. Tests drive ``begin`` and ``modal_step`` with
fake events (timers never fire headless).
"""

from __future__ import annotations

import time

import bpy
import numpy as np

from .. import idnames, properties
from ..redraw import tag_redraw

__all__ = ["DA3_OT_export_dataset", "begin", "modal_step"]

TIMER_INTERVAL = 0.1
_running: dict[str, object] = {}  # "task": the export in flight (one at a time)


def running_export():
    """The export in flight, or None."""
    task = _running.get("task")
    return task if task is not None and task.status().outcome is None else None


def _status_bar(context, text: str | None) -> None:
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        workspace.status_text_set(text)


def begin(op, context):
    """Check the request and start the export; returns the task, or None after reporting why not."""
    from ..engine.formats.datasets import DatasetError
    from ..scene.orient import context_root
    from ..scene.root import ROOT_KEY
    from ..session.dataset_export import DatasetExport

    root = context_root(context)
    if root is None:
        op.report({"ERROR"}, "Select an object of a DA3 reconstruction (its root, points or a camera) first.")
        return None
    if running_export() is not None:
        op.report({"ERROR"}, "A dataset export is already running: wait for it or press Esc.")
        return None
    s = properties.settings(context)
    task = DatasetExport(
        tool=s.dataset_tool,
        bundle_folder=str(root.get(ROOT_KEY, "")),
        target=bpy.path.abspath(s.dataset_folder) if s.dataset_folder else "",
        root_matrix=np.array(root.matrix_world, np.float64),
        root_name=root.name,
        max_points=s.dataset_points,
    )
    try:
        task.check()
    except DatasetError as exc:
        op.report({"ERROR"}, str(exc))
        return None
    task.start()
    _running["task"] = task
    op._task = task
    return task


def _finish(op, context, task) -> set[str]:
    timer = getattr(op, "_timer", None)
    if timer is not None:
        context.window_manager.event_timer_remove(timer)
        op._timer = None
    _status_bar(context, None)
    tag_redraw(context)
    state = task.status()
    if state.outcome == "finished":
        op.report({"INFO"}, task.summary())
        return {"FINISHED"}
    if state.outcome == "cancelled":
        op.report({"WARNING"}, "Dataset export cancelled; nothing was written.")
    else:
        op.report({"ERROR"}, f"Dataset export failed: {state.error}")
    return {"CANCELLED"}


def modal_step(op, context, event) -> set[str]:
    """One modal event: Esc cancels (the thread removes what it wrote), a timer tick shows the progress and
    ends the operator once the thread has ended."""
    task = op._task
    if event.type == "ESC" and event.value == "PRESS":
        task.cancel()
        return {"RUNNING_MODAL"}
    if event.type != "TIMER":
        return {"PASS_THROUGH"}
    if task.status().outcome is None:
        _status_bar(context, f"DA3 Export Dataset: {task.progress_text} (Esc cancels)")
        tag_redraw(context)
        return {"RUNNING_MODAL"}
    return _finish(op, context, task)


class DA3_OT_export_dataset(bpy.types.Operator):
    """Export the active reconstruction as a dataset for 3DGS, SuGaR, gsplat, nerfstudio or DN-Splatter, in \
the frame of its root as it is now (images copied; the folder works anywhere)"""

    bl_idname = idnames.EXPORT_DATASET
    bl_label = "Export Dataset"
    bl_options = {"REGISTER"}

    _timer = None
    _task = None

    @classmethod
    def poll(cls, context):
        from ..scene.orient import context_root

        if context_root(context) is None:
            cls.poll_message_set("Select an object of a DA3 reconstruction first")
            return False
        if running_export() is not None:
            cls.poll_message_set("A dataset export is running")
            return False
        if not properties.settings(context).dataset_folder:
            cls.poll_message_set("Choose a dataset folder first")
            return False
        return True

    def invoke(self, context, event):
        if begin(self, context) is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        return modal_step(self, context, event)

    def cancel(self, context):
        """Blender ended the operator (window closed, file loaded): stop the export, leave nothing."""
        if self._task is not None:
            self._task.cancel()
            self._task.wait(30.0)
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None

    def execute(self, context):
        """Blocking path for scripts and background mode (no event loop there)."""
        task = begin(self, context)
        if task is None:
            return {"CANCELLED"}
        while not task.wait(TIMER_INTERVAL):
            time.sleep(0)
        return _finish(self, context, task)


CLASSES = (DA3_OT_export_dataset,)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
