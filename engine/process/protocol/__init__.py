"""Typed messages between Blender (the client) and the engine process (the worker).

Both sides import this package, so it needs the standard library and numpy only (no torch, no bpy).
``checked`` is the machinery (type-checked frozen dataclasses, ``ProtocolError``), ``options`` what a
job can be told and every limit on it (defined once, for the engine, the CLI and Blender), ``messages``
the requests and events.

Wire format: one JSON object per line (UTF-8, ASCII-escaped, no NaN or infinity); the ``"type"`` key
names the message and every other key is a field of that message's dataclass::

    {"type":"progress","job":"3f2a9c","stage":"network","current":2,"total":8,"message":""}

Requests travel client → worker (``reconstruct``, ``cancel``, ``unload``, ``status``, ``shutdown``);
events travel worker → client (``ready``, ``progress``, ``log``, ``result``, ``finished``,
``interrupted``, ``error``, ``status``). The two directions share the name ``status`` (question and
answer), so decode with :func:`decode_request` on the worker side and :func:`decode_event` on the
client side.

Every job ends with exactly one terminal event: ``finished``, ``interrupted`` or ``error`` (an
``error`` whose ``job`` is None is about the engine itself, not a job). Arrays never travel through the
pipe: the worker writes them to files (``.npz``, ``.ply``) and sends paths. No pickle anywhere.

Messages are frozen dataclasses that check their own fields on construction, so a message that exists
is a valid message: decoding rejects malformed JSON, unknown types, missing, extra and mistyped fields
with a :class:`ProtocolError` that says which field and what was expected.
"""

from __future__ import annotations

from ...version import ENGINE_VERSION, PROTOCOL_VERSION
from .checked import Checked, ProtocolError, new_job_id
from .messages import (
    LOG_LEVELS,
    CancelRequest,
    ErrorEvent,
    Event,
    EventType,
    FinishedEvent,
    InterruptedEvent,
    LogEvent,
    Message,
    ProgressEvent,
    ReadyEvent,
    ReconstructRequest,
    Request,
    RequestType,
    ResultEvent,
    ShutdownRequest,
    StatusEvent,
    StatusRequest,
    UnloadRequest,
    decode_event,
    decode_request,
)
from .options import (
    CHUNK_OVERLAP_MIN,
    CHUNK_SIZE_MIN,
    DATASET_POINTS_DEFAULT,
    DATASET_POINTS_RANGE,
    DEFAULT_METRIC_MODEL,
    DTYPES,
    EXPORTS,
    IMAGE_EXTENSIONS,
    MESH_DETAIL_RANGE,
    MESH_MIN_FACES,
    PATCH_SIZE,
    PROCESS_RES_METHODS,
    PROCESS_RES_RANGE,
    REF_VIEW_STRATEGIES,
    VIDEO_EXTENSIONS,
    JobOptions,
    chunking_problem,
    job_kind,
    snap_process_res,
)

__all__ = [
    "CHUNK_OVERLAP_MIN",
    "CHUNK_SIZE_MIN",
    "CancelRequest",
    "Checked",
    "DATASET_POINTS_DEFAULT",
    "DATASET_POINTS_RANGE",
    "DEFAULT_METRIC_MODEL",
    "DTYPES",
    "ENGINE_VERSION",
    "EXPORTS",
    "ErrorEvent",
    "Event",
    "EventType",
    "FinishedEvent",
    "IMAGE_EXTENSIONS",
    "InterruptedEvent",
    "JobOptions",
    "MESH_DETAIL_RANGE",
    "MESH_MIN_FACES",
    "LOG_LEVELS",
    "LogEvent",
    "Message",
    "PATCH_SIZE",
    "PROCESS_RES_METHODS",
    "PROCESS_RES_RANGE",
    "PROTOCOL_VERSION",
    "ProgressEvent",
    "ProtocolError",
    "REF_VIEW_STRATEGIES",
    "ReadyEvent",
    "ReconstructRequest",
    "Request",
    "RequestType",
    "ResultEvent",
    "ShutdownRequest",
    "StatusEvent",
    "StatusRequest",
    "UnloadRequest",
    "VIDEO_EXTENSIONS",
    "chunking_problem",
    "decode_event",
    "decode_request",
    "job_kind",
    "new_job_id",
    "snap_process_res",
]
