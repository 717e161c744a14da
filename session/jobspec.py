"""Panel settings + preferences (plain dicts) → one ``ReconstructRequest`` for the engine: images
(``build_request``) or a video shot tracked in chunks (``build_shot_request``).

Everything a user can get wrong is checked here, before a process starts, with a message that says what
to do: no inputs, a missing model folder, a resolution that is not a multiple of 14.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..engine.process.protocol import (
    CHUNK_SIZE_MIN,
    MESH_MIN_FACES,
    PATCH_SIZE,
    PROCESS_RES_RANGE,
    JobOptions,
    ReconstructRequest,
    chunking_problem,
    new_job_id,
    snap_process_res,
)
from . import models
from .inputs import InputError, collect_inputs
from .shot import ShotError, ShotSource, select_frames

__all__ = [
    "MAX_RES",
    "MIN_RES",
    "JobSpecError",
    "build_request",
    "build_shot_request",
    "chunk_options",
    "resolve_model",
    "snap_resolution",
]

# The resolutions the UI offers: multiples of the patch within the protocol's limits (defined there).
MIN_RES, MAX_RES = snap_process_res(PROCESS_RES_RANGE[0]), snap_process_res(PROCESS_RES_RANGE[1])


class JobSpecError(ValueError):
    """The settings cannot make a job; the message tells the user what to change."""


def snap_resolution(value: int) -> int:
    """The nearest multiple of the network's 14-pixel patch within the protocol's limits."""
    return snap_process_res(value)


def resolve_model(choice: str, default_model: str, custom_folder: str = "") -> str:
    """The engine's model source: a hub id from the catalogue, or a local checkpoint folder.

    ``choice`` is a catalogue key, ``"DEFAULT"`` (the preferences' default) or ``"CUSTOM"`` (a folder).
    """
    if choice == "CUSTOM":
        folder = os.path.abspath(os.path.expanduser(custom_folder)) if custom_folder else ""
        if not folder or not os.path.isdir(folder):
            raise JobSpecError(
                "Choose the model folder (it holds config.json and model.safetensors), "
                "or pick a model from the list."
            )
        missing = [
            n for n in ("config.json", "model.safetensors") if not os.path.isfile(os.path.join(folder, n))
        ]
        if missing:
            raise JobSpecError(
                f"The model folder {folder} lacks {' and '.join(missing)}: choose the folder that holds "
                "the files downloaded from the hub."
            )
        return folder
    key = default_model if choice == "DEFAULT" else choice
    try:
        return models.model_info(key).repo_id
    except KeyError as exc:
        raise JobSpecError(f"Unknown model {key!r}: pick one from the list.") from exc


def build_request(
    settings: Mapping[str, Any], prefs: Mapping[str, Any], output_root: str
) -> ReconstructRequest:
    """A job from the panel's ``settings`` and the add-on ``prefs`` (both plain dicts; keys as in
    ``panels``/``preferences``). Its bundle goes to ``output_root/<job id>``."""
    try:
        inputs = collect_inputs(
            settings["input_mode"], settings.get("images", ()), settings.get("folder", "")
        )
    except InputError as exc:
        raise JobSpecError(str(exc)) from exc
    options = _options(settings, prefs, **_with_mesh(settings, _gaussian_options(settings, prefs)))
    job = new_job_id()
    return ReconstructRequest(
        job=job,
        inputs=tuple(inputs),
        output=os.path.join(output_root, job),
        model=_model(settings, prefs),
        options=options,
    )


def _model(settings: Mapping[str, Any], prefs: Mapping[str, Any]) -> str:
    return resolve_model(
        settings.get("model", "DEFAULT"), prefs["default_model"], settings.get("custom_model", "")
    )


def _gaussian_options(settings: Mapping[str, Any], prefs: Mapping[str, Any]) -> dict[str, Any]:
    """Gaussians for a still job when asked for and the model has the head (giant and nested; for a
    custom folder, its config says)."""
    if not settings.get("gaussians", False):
        return {}
    choice = settings.get("model", "DEFAULT")
    if choice == "CUSTOM":
        if not _folder_has_gaussians(settings.get("custom_model", "")):
            return {}
    else:
        key = prefs["default_model"] if choice == "DEFAULT" else choice
        if key not in {m.key for m in models.MODELS} or not models.model_info(key).gaussians:
            return {}
    return {"infer_gs": True, "exports": ("gaussians",)}


def _with_mesh(settings: Mapping[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` job options plus the fused mesh's when the panel asks for it: the ``mesh`` export, its
    detail, voxel size (0: automatic) and face budget (0: keep all)."""
    if not settings.get("mesh", False):
        return extra
    faces = int(settings.get("mesh_max_faces", 0))
    if 0 < faces < MESH_MIN_FACES:
        raise JobSpecError(
            f"Max Faces must be 0 (keep every face) or at least {MESH_MIN_FACES}, got {faces}."
        )
    voxel = float(settings.get("mesh_voxel_size", 0.0))
    return {
        **extra,
        "exports": (*extra.get("exports", ()), "mesh"),
        "mesh_detail": float(settings.get("mesh_detail", 1.0)),
        "mesh_voxel_size": voxel if voxel > 0 else None,
        "mesh_max_faces": faces or None,
    }


def _folder_has_gaussians(folder: str) -> bool:
    """A checkpoint folder's ``config.json`` names a giant network (``da3-giant``, or the nested model
    built on it): the ones with the Gaussian head. Unreadable: no (the job reports the folder itself)."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
            name = json.load(fh).get("model_name", "")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(name, str) and "giant" in name.lower()


def _options(settings: Mapping[str, Any], prefs: Mapping[str, Any], **extra: Any) -> JobOptions:
    """The job options the panel and the preferences give (``extra``: shot options such as frames)."""
    res = int(settings.get("process_res", 504))
    if res % PATCH_SIZE or not MIN_RES <= res <= MAX_RES:
        raise JobSpecError(
            f"Process resolution {res} must be a multiple of {PATCH_SIZE} between {MIN_RES} and {MAX_RES} "
            f"(for example {snap_resolution(res)})."
        )
    return JobOptions(
        process_res=res,
        process_res_method=settings.get("process_res_method", "upper_bound_resize"),
        ref_view_strategy=settings.get("ref_view_strategy", "saddle_balanced"),
        use_ray_pose=bool(settings.get("use_ray_pose", False)),
        metric=bool(settings.get("metric", False)),
        device=prefs.get("device", "auto"),
        dtype=prefs.get("precision", "auto"),
        **extra,
    )


def chunk_options(chunk_size: int, chunk_overlap: int) -> dict[str, int | None]:
    """``chunk_size``/``chunk_overlap`` for JobOptions: 0 means automatic (None); a fixed overlap must be
    smaller than a fixed chunk size."""
    size = int(chunk_size) or None
    overlap = int(chunk_overlap) or None
    problem = chunking_problem(size, overlap)  # the protocol's limits, defined once
    if problem is not None and problem[0] == "chunk_size":
        raise JobSpecError(
            f"A chunk needs at least {CHUNK_SIZE_MIN} frames, got {size} (0 chooses from the memory)."
        )
    if problem is not None:
        raise JobSpecError(
            f"The chunk overlap ({overlap} frames) must be smaller than the chunk size ({size}); "
            "half the chunk size is a good choice."
        )
    return {"chunk_size": size, "chunk_overlap": overlap}


def build_shot_request(
    settings: Mapping[str, Any], prefs: Mapping[str, Any], output_root: str, source: ShotSource
) -> ReconstructRequest:
    """A video job that tracks ``source`` over the panel's frame range and stride, in chunks.

    ``settings`` also holds ``shot_range`` ((first, last) scene frames, or None for the whole movie),
    ``shot_stride``, ``chunk_size`` and ``chunk_overlap`` (0: automatic)."""
    first_last = settings.get("shot_range") or (None, None)
    try:
        frames = select_frames(source.frame_map, *first_last, int(settings.get("shot_stride", 1)))
    except ShotError as exc:
        raise JobSpecError(str(exc)) from exc
    chunks = chunk_options(settings.get("chunk_size", 0), settings.get("chunk_overlap", 0))
    positions = {"frame_positions_fps": source.fps} if source.fps > 0 else {}  # Blender's frame numbering
    options = _options(settings, prefs, **_with_mesh(settings, {"frames": frames, **chunks, **positions}))
    job = new_job_id()
    return ReconstructRequest(
        job=job,
        inputs=(source.path,),
        output=os.path.join(output_root, job),
        model=_model(settings, prefs),
        options=options,
    )
