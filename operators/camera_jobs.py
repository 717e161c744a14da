"""Jobs whose cameras the scene already has (issue 11): the selected scene cameras as the views of a still
job, and a camera track as the known cameras of a shot. Plain functions the Reconstruct operator calls
(``reconstruct.begin_steps``); the reading is ``scene.known_cameras`` / ``scene.camera_track``'s, the
files and the request ``session.known_cameras``'.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import bpy
import numpy as np

from ..engine.process.protocol import ReconstructRequest
from ..session.jobspec import JobSpecError
from . import runtime

__all__ = ["scene_cameras_job", "with_camera_track"]


def scene_cameras_job(
    context: bpy.types.Context, values: Mapping[str, Any], prefs: Mapping[str, Any], output_root: str
) -> Iterator[str]:
    """Submit a still job over the selected cameras: their poses and intrinsics are read first (moving a
    camera while its view renders changes nothing), then each view's image is written, one per step."""
    from ..scene import known_cameras as kc
    from ..session import known_cameras as session

    session.check_known_cameras(values)
    scene = context.scene
    cameras = kc.selected_cameras(context)
    job, folder = session.new_camera_job(output_root)
    try:
        views = kc.plan_views(scene, cameras, folder)
        K = np.stack(
            [kc.camera_intrinsics(o.data, scene, v.size) for o, v in zip(cameras, views, strict=True)]
        )
        w2c = np.stack([kc.camera_w2c(o.matrix_world) for o in cameras])
    except kc.CameraInputError as exc:
        raise JobSpecError(str(exc)) from exc
    to_write = [v for v in views if v.kind != "FILE"]
    for done, view in enumerate(to_write, 1):
        verb = "Rendering" if view.kind == "RENDER" else "Saving the image of"
        yield f"{verb} camera {view.camera} ({done}/{len(to_write)})"
        try:
            kc.write_view_image(scene, view)
        except (kc.CameraInputError, RuntimeError, OSError) as exc:
            raise JobSpecError(f"The view of the camera '{view.camera}' could not be made: {exc}") from exc
    path = session.write_cameras_file(folder, K, w2c)
    request = session.build_views_request(values, prefs, output_root, job, [v.path for v in views], path)
    runtime.set_report("INFO", f"Reconstructing from {len(views)} scene cameras...")
    runtime.service().submit(request)


def with_camera_track(
    context: bpy.types.Context,
    camera: bpy.types.Object | None,
    request: ReconstructRequest,
    source,
    values: Mapping[str, Any],
    output_root: str,
) -> ReconstructRequest:
    """``request`` (a shot) conditioned on ``camera`` evaluated on the scene frames of its frames."""
    from ..scene.camera_track import track_cameras
    from ..scene.known_cameras import CameraInputError
    from ..session import known_cameras as session

    session.check_known_cameras(values)
    start, end, step = request.options.frames
    scene_frames = source.frame_map.scene_frame(np.arange(start, end, step))
    try:
        K, w2c = track_cameras(context.scene, camera, scene_frames, source.size)
    except CameraInputError as exc:
        raise JobSpecError(str(exc)) from exc
    job, folder = session.new_camera_job(output_root)
    path = session.write_cameras_file(folder, K, w2c)
    return session.with_known_cameras(request, job, output_root, path)
