"""Reconstruct: send the chosen images to the engine, follow the job, import the result.

``invoke`` returns at once: a window-manager timer wakes ``modal`` on the main thread, which drains the
engine's events (``tick``) and imports the bundle when the job finishes. Esc or the panel's Cancel
button cancels; a cancelled or failed job imports nothing. ``execute`` (scripts, background mode) runs
the same steps but waits for the job.

The logic lives in module functions (``begin``, ``tick``, ``modal_step``) that take the operator only as
a place to keep its timer, so tests drive them with fake timer and Esc events (timers never fire in
background mode).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import bpy

from .. import idnames, preferences, properties
from ..redraw import tag_redraw
from ..session.jobspec import JobSpecError, build_request, build_shot_request
from ..session.results_cache import clean_results
from ..session.service import BusyError, JobState
from . import runtime
from .camera_jobs import scene_cameras_job, with_camera_track

__all__ = [
    "DA3_OT_cancel",
    "DA3_OT_reconstruct",
    "begin",
    "begin_steps",
    "modal_step",
    "shot_source",
    "tick",
    "why_not_ready",
]

TIMER_INTERVAL = 0.1


def why_not_ready(context: bpy.types.Context) -> str | None:
    """Why Reconstruct is disabled right now (cheap: called on every redraw), None when it is enabled."""
    svc = runtime.service()
    if svc.busy:
        return "A reconstruction is running: wait for it or cancel it"
    s = properties.settings(context)
    if s.input_mode == "FILES" and len(s.images) == 0:
        return "Choose images first"
    if s.input_mode == "FOLDER" and not s.folder:
        return "Choose a folder of images first"
    if s.input_mode == "CLIP" and context.scene.active_clip is None:
        return "Open a movie clip in the Clip Editor (or pick one under Inputs)"
    if s.input_mode == "STRIP" and not _has_selected_movie_strip(context.scene):
        return "Select a movie strip in the Video Sequencer"
    if s.input_mode == "VIDEO" and not s.video_file:
        return "Choose a video file first"
    if s.input_mode == "CAMERAS" and not any(o.type == "CAMERA" for o in context.selected_objects):
        return "Select the scene cameras to reconstruct from"
    if properties.is_shot(s) and s.use_camera_track and s.track_camera is None:
        return "Pick the track camera under Shot (or turn off Use Camera Track)"
    if s.model == "CUSTOM" and not s.custom_model:
        return "Choose the model folder"
    prefs = preferences.prefs_values(preferences.get_prefs(context))
    if not runtime.has_override():
        choice = preferences.engine_python(prefs)
        if not choice.ok:
            return choice.problem
    return None


def _has_selected_movie_strip(scene: bpy.types.Scene) -> bool:
    from ..scene.shot_inputs import movie_strips

    return any(strip.select for strip in movie_strips(scene))


def shot_source(context: bpy.types.Context, settings):
    """The shot the settings point at (``session.shot.ShotSource``); raises ShotError saying what to pick."""
    from ..scene import shot_inputs

    if settings.input_mode == "CLIP":
        return shot_inputs.clip_source(shot_inputs.active_clip(context))
    if settings.input_mode == "STRIP":
        return shot_inputs.strip_source(shot_inputs.selected_movie_strip(context.scene))
    return shot_inputs.file_source(bpy.path.abspath(settings.video_file))


def files_in_use() -> list[str]:
    """Every file the open .blend points to (images, movie clips, sounds): cleaning never removes them."""
    paths = []
    for collection in (bpy.data.images, bpy.data.movieclips, bpy.data.sounds):
        for block in collection:
            if getattr(block, "filepath", "") and not getattr(block, "packed_file", None):
                paths.append(bpy.path.abspath(block.filepath, library=block.library))
    return paths


def clean_results_folder(output_root: str, prefs: dict) -> None:
    """Remove results past the preferences' age and size caps (never one in use), and say what went."""
    report = clean_results(
        output_root,
        max_age_days=prefs["keep_results_days"],
        max_bytes=prefs["results_cap_gb"] * 1e9,
        in_use=files_in_use(),
    )
    if report.removed:
        print(
            f"DA3 Reconstruct: removed {len(report.removed)} old results from {output_root} "
            f"({report.freed_bytes / 1e9:.2f} GB freed)"
        )


def begin(context: bpy.types.Context) -> JobState:
    """Validate the settings, build the job and submit it (the engine starts if needed), all at once.

    Images make a reconstruction job; scene cameras a job over their images conditioned on them; a Movie
    Clip, movie strip or video file makes a shot job (video frames in chunks, with a camera track as its
    known cameras when asked) whose input is kept on the job for the import. Raises JobSpecError (bad
    settings, no engine) or BusyError (a job runs)."""
    for _ in begin_steps(context):
        pass
    return runtime.service().job


def begin_steps(context: bpy.types.Context) -> Iterator[str]:
    """``begin`` in steps: each step that renders a scene camera's view (or saves its image) first yields
    what it is about to do, so the modal operator runs one per timer tick and Blender redraws between
    them; the job is submitted when the iterator ends."""
    from ..session.shot import ShotError

    prefs = preferences.prefs_values(preferences.get_prefs(context))
    problem = runtime.configure_engine(prefs)
    if problem:
        raise JobSpecError(problem)
    output_root = prefs["results_folder"] or preferences.user_folder("results")
    clean_results_folder(output_root, prefs)
    s = properties.settings(context)
    values = properties.settings_values(s)
    if s.input_mode == "CAMERAS":
        yield from scene_cameras_job(context, values, prefs, output_root)
        return
    if not properties.is_shot(s):
        request = build_request(values, prefs, output_root)
        runtime.set_report("INFO", f"Reconstructing {len(request.inputs)} images...")
        runtime.service().submit(request)
        return
    try:
        source = shot_source(context, s)
    except ShotError as exc:
        raise JobSpecError(str(exc)) from exc
    request = build_shot_request(values, prefs, output_root, source)
    if s.use_camera_track:
        request = with_camera_track(context, s.track_camera, request, source, values, output_root)
    start, end, step = request.options.frames
    count = len(range(start, end, step))
    runtime.set_report("INFO", f"Tracking {count} frames of {source.name}...")
    job = runtime.service().submit(request)
    job.unit, job.frames = "frames", count
    job.meta["shot"] = source.to_dict()


def _import_result(context: bpy.types.Context, job: JobState) -> None:
    """Import a finished job's bundle; an import failure turns the job into a failed one."""
    from ..engine.formats.bundle import BundleError
    from ..scene.importer import ImportOptions, import_bundle
    from ..session.shot import ShotSource

    shot = job.meta.get("shot")  # the input a shot job tracked: where its frames sit on the timeline
    try:
        name = f"{'Shot' if shot else 'Reconstruction'} {job.job[:6]}"
        options = ImportOptions(name=name, **properties.import_values(properties.settings(context)))
        result = import_bundle(context, job.bundle, options, ShotSource.from_dict(shot) if shot else None)
    except (BundleError, OSError, ValueError) as exc:
        job.outcome, job.error = "failed", f"The result could not be imported: {exc}"
        return
    finally:
        job.imported = True
    job.summary["imported"] = result.summary
    job.summary["report_lines"] = list(getattr(result, "report_lines", ()))
    result.root["da3_job"] = job.job


def _status_bar(context: bpy.types.Context, text: str | None) -> None:
    """Show the job's progress in the status bar (None clears it); no-op without a workspace."""
    workspace = getattr(context, "workspace", None)
    if workspace is not None:
        workspace.status_text_set(text)


def tick(context: bpy.types.Context) -> str | None:
    """Drain the engine's events; on the job's end import (if it finished). Returns None while the job
    runs, else its outcome: "finished", "cancelled" or "failed"."""
    svc = runtime.service()
    svc.pump()
    tag_redraw(context)
    job = svc.job
    if job is None:
        return "failed"
    if job.running:
        _status_bar(context, f"DA3 Reconstruct: {job.progress_text} (Esc cancels)")
        return None
    _status_bar(context, None)
    if job.outcome == "finished" and not job.imported:
        _import_result(context, job)
    if job.outcome == "finished":
        runtime.set_report("INFO", job.summary.get("imported", "Reconstruction imported."))
    elif job.outcome == "cancelled":
        runtime.set_report("WARNING", "Reconstruction cancelled; nothing was imported.")
    else:
        runtime.set_report("ERROR", f"Reconstruction failed: {job.error}")
    return job.outcome


def _finish(op, context: bpy.types.Context, outcome: str) -> set[str]:
    timer = getattr(op, "_timer", None)
    if timer is not None:
        context.window_manager.event_timer_remove(timer)
        op._timer = None
    level, text = runtime.last_report() or ("INFO", outcome)
    op.report({level}, text)
    job = runtime.service().job
    if outcome == "finished" and job is not None:
        for line in job.summary.get("report_lines", ()):  # the solve report, into the Info log
            op.report({"INFO"}, line)
    return {"FINISHED"} if outcome == "finished" else {"CANCELLED"}


def advance(op, context: bpy.types.Context) -> bool | None:
    """The next step of ``op._steps`` (``begin_steps``): True when the job is submitted, False when it
    was refused (reported on ``op``), None while views are still being made."""
    try:
        text = next(op._steps)
    except StopIteration:
        op._steps = None
        return True
    except (JobSpecError, BusyError) as exc:
        op._steps = None
        runtime.set_report("ERROR", str(exc))
        op.report({"ERROR"}, str(exc))
        return False
    runtime.set_report("INFO", text)
    _status_bar(context, f"DA3 Reconstruct: {text} (Esc cancels)")
    tag_redraw(context)
    return None


def modal_step(op, context: bpy.types.Context, event) -> set[str]:
    """One modal event: Esc cancels, a timer tick drains events (or makes the next view of scene
    cameras before the job is submitted), anything else passes through."""
    if getattr(op, "_steps", None) is not None:
        if event.type == "ESC" and event.value == "PRESS":
            op._steps.close()
            op._steps = None
            runtime.set_report("WARNING", "Reconstruction cancelled before it started; nothing was imported.")
            _status_bar(context, None)
            return _finish(op, context, "cancelled")
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        done = advance(op, context)
        if done is False:
            _status_bar(context, None)
            return _finish(op, context, "failed")
        return {"RUNNING_MODAL"}
    if event.type == "ESC" and event.value == "PRESS":
        runtime.service().cancel()
        tag_redraw(context)
        return {"RUNNING_MODAL"}
    if event.type != "TIMER":
        return {"PASS_THROUGH"}
    outcome = tick(context)
    if outcome is None:
        return {"RUNNING_MODAL"}
    return _finish(op, context, outcome)


class DA3_OT_reconstruct(bpy.types.Operator):
    """Reconstruct the chosen images in 3D with Depth Anything 3 and import points and cameras, or track \
the camera of a movie clip, strip or video file"""

    bl_idname = idnames.RECONSTRUCT
    bl_label = "Reconstruct"
    bl_options = {"REGISTER", "UNDO"}

    _timer = None
    _steps = None

    @classmethod
    def poll(cls, context):
        reason = why_not_ready(context)
        if reason:
            cls.poll_message_set(reason)
        return reason is None

    def _begin(self, context, *, steps: bool = False) -> bool:
        """Submit the job; a refusal (bad settings, no engine, a job running) is reported instead. With
        ``steps`` the views of scene cameras are left for the timer ticks (``_steps``)."""
        self._steps = begin_steps(context)
        while (done := advance(self, context)) is None:
            if steps:
                return True
        return done

    def invoke(self, context, event):
        if not self._begin(context, steps=True):
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(TIMER_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        return modal_step(self, context, event)

    def cancel(self, context):
        """Blender ended the operator (window closed, file loaded): stop the job, import nothing."""
        if self._steps is not None:  # still making the views of scene cameras
            self._steps.close()
            self._steps = None
        runtime.service().cancel()
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None

    def execute(self, context):
        """Blocking path for scripts and background mode (no event loop there)."""
        if not self._begin(context):
            return {"CANCELLED"}
        while (outcome := tick(context)) is None:
            time.sleep(TIMER_INTERVAL / 2)
        return _finish(self, context, outcome)


class DA3_OT_cancel(bpy.types.Operator):
    """Cancel the running reconstruction (nothing is imported). Press again after 10 s to stop the engine"""

    bl_idname = idnames.CANCEL
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        if not runtime.service().busy:
            cls.poll_message_set("No reconstruction is running")
            return False
        return True

    def execute(self, context):
        runtime.service().cancel()
        tag_redraw(context)
        return {"FINISHED"}


@bpy.app.handlers.persistent
def cancel_on_file_load(*_args) -> None:
    """Opening another file ends the modal operator: cancel its job so nothing is imported later."""
    runtime.service().cancel()


CLASSES = (DA3_OT_reconstruct, DA3_OT_cancel)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.app.handlers.load_pre.append(cancel_on_file_load)


def unregister() -> None:
    if cancel_on_file_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(cancel_on_file_load)
    _unregister_classes()
