"""Known cameras from the scene → a job (no bpy): the cameras file the engine reads
(``engine.jobs.cameras_file``: ``intrinsics`` (N, 3, 3) in pixels of the original images, ``extrinsics``
(N, 4, 4) world-to-camera, OpenCV axes) and the request that uses it.

A job's inputs (rendered views, saved frames) and its cameras file go into ``<results>/<job>-inputs``,
beside the job's output folder (which must hold nothing but the bundle).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from ..engine.process.protocol import ReconstructRequest, new_job_id
from .jobspec import JobSpecError, build_request

__all__ = [
    "CAMERAS_FILE",
    "build_views_request",
    "check_known_cameras",
    "inputs_folder",
    "new_camera_job",
    "with_known_cameras",
    "write_cameras_file",
]

CAMERAS_FILE = "cameras.npz"
INPUTS_SUFFIX = "-inputs"


def new_camera_job(output_root: str) -> tuple[str, str]:
    """``(job id, inputs folder)`` of a new job that brings its own inputs."""
    job = new_job_id()
    return job, inputs_folder(output_root, job)


def inputs_folder(output_root: str, job: str) -> str:
    return os.path.join(output_root, job + INPUTS_SUFFIX)


def check_known_cameras(settings: Mapping[str, Any]) -> None:
    """Refuse settings that known cameras rule out (before anything is rendered)."""
    if settings.get("metric"):
        raise JobSpecError(
            "The scene's cameras already fix the units (the scene's own), so Metric Scale cannot rescale "
            "them: turn off Metric Scale."
        )


def write_cameras_file(folder: str, K: np.ndarray, w2c: np.ndarray) -> str:
    """Write ``K (N, 3, 3)`` and ``w2c (N, 4, 4)`` as the cameras file in ``folder``; returns its path."""
    K, w2c = np.asarray(K, np.float64), np.asarray(w2c, np.float64)
    if K.ndim != 3 or K.shape[1:] != (3, 3) or w2c.shape != (len(K), 4, 4):
        raise ValueError(f"cameras: K {K.shape} and w2c {w2c.shape} do not make (N, 3, 3) and (N, 4, 4)")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, CAMERAS_FILE)
    np.savez(path, intrinsics=K, extrinsics=w2c)
    return path


def with_known_cameras(
    request: ReconstructRequest, job: str, output_root: str, cameras: str
) -> ReconstructRequest:
    """``request`` as job ``job`` (whose inputs folder holds the cameras file), conditioned on ``cameras``."""
    return replace(
        request,
        job=job,
        output=os.path.join(output_root, job),
        options=replace(request.options, cameras=cameras),
    )


def build_views_request(
    settings: Mapping[str, Any],
    prefs: Mapping[str, Any],
    output_root: str,
    job: str,
    images: list[str],
    cameras: str,
) -> ReconstructRequest:
    """A still job over the views' ``images`` (in camera order) conditioned on the ``cameras`` file."""
    check_known_cameras(settings)
    request = build_request({**settings, "input_mode": "FILES", "images": list(images)}, prefs, output_root)
    return with_known_cameras(request, job, output_root, cameras)
