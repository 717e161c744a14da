"""Typed messages between Blender (the client) and the engine process (the worker).

Both sides import this module, so it needs the standard library and numpy only (no torch, no bpy).

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

import dataclasses
import difflib
import json
import math
import os
import re
import types
import typing
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

from ..version import ENGINE_VERSION, PROTOCOL_VERSION

__all__ = [
    "ENGINE_VERSION",
    "PROTOCOL_VERSION",
    "EXPORTS",
    "LOG_LEVELS",
    "CancelRequest",
    "ErrorEvent",
    "Event",
    "EventType",
    "FinishedEvent",
    "InterruptedEvent",
    "JobOptions",
    "LogEvent",
    "Message",
    "ProgressEvent",
    "ProtocolError",
    "ReadyEvent",
    "ReconstructRequest",
    "Request",
    "RequestType",
    "ResultEvent",
    "ShutdownRequest",
    "StatusEvent",
    "StatusRequest",
    "UnloadRequest",
    "decode_event",
    "decode_request",
    "new_job_id",
]


class ProtocolError(ValueError):
    """A message that is not valid protocol.

    ``job`` is the id of a refused ``reconstruct`` request when it could be read, so that job can still get
    its terminal ``error`` event; None otherwise.
    """

    def __init__(self, message: str, job: str | None = None) -> None:
        super().__init__(message)
        self.job = job


class RequestType(StrEnum):
    reconstruct = "reconstruct"
    cancel = "cancel"
    unload = "unload"
    status = "status"
    shutdown = "shutdown"


class EventType(StrEnum):
    ready = "ready"
    progress = "progress"
    log = "log"
    result = "result"
    finished = "finished"
    interrupted = "interrupted"
    error = "error"
    status = "status"


LOG_LEVELS = ("debug", "info", "warning", "error")

# Optional files a job can write beside the bundle (reconstruction.npz is always written). These names are
# also the keys of ResultEvent.files, together with "bundle" for reconstruction.npz. "depth" is the folder of
# depth and confidence PNG previews.
EXPORTS = ("points", "gaussians", "mesh", "colmap", "glb", "nerfstudio", "depth")
PROCESS_RES_METHODS = ("upper_bound_resize", "lower_bound_resize", "upper_bound_crop", "lower_bound_crop")
REF_VIEW_STRATEGIES = ("saddle_balanced", "saddle_sim_range", "first", "middle")
DTYPES = ("auto", "float32", "float16", "bfloat16")
PROCESS_RES_RANGE = (14, 4096)
DEFAULT_METRIC_MODEL = "depth-anything/DA3METRIC-LARGE"

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_job_id() -> str:
    """A fresh job id (12 hex digits): safe as a folder name on every OS."""
    return uuid.uuid4().hex[:12]


# --- field checking -----------------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if tp is Any:
        return "JSON value"
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(arg) for arg in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}"
        return "[" + ", ".join(_type_name(arg) for arg in args) + "]"
    if origin is dict:
        return f"object of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "object"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _json_value(value: Any, where: str) -> Any:
    """A plain JSON value (numpy scalars and paths converted); arrays and non-finite floats are refused."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not math.isfinite(float(value)):
            raise ProtocolError(f"{where}: non-finite number {value!r} is not allowed (JSON has no NaN)")
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        raise ProtocolError(f"{where}: arrays never travel through the pipe; write a file and send its path")
    if isinstance(value, list | tuple):
        return [_json_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError(f"{where}: object keys must be strings, got {_short(key)}")
            out[key] = _json_value(item, f"{where}.{key}")
        return out
    raise ProtocolError(f"{where}: {type(value).__name__} is not a JSON value ({_short(value)})")


class _Mismatch(ProtocolError):
    """A value of the wrong type at ``where`` (lets a union report its whole type)."""

    def __init__(self, where: str, tp: Any, value: Any) -> None:
        super().__init__(f"{where}: expected {_type_name(tp)}, got {_short(value)}")
        self.where = where


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form (lists become tuples)."""
    if tp is Any:
        return _json_value(value, where)
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _Mismatch(where, tp, value)
        (inner,) = [arg for arg in args if arg is not type(None)]  # only Optional[X] is used here
        try:
            return _coerce(value, inner, where)
        except _Mismatch as exc:
            if exc.where == where:
                raise _Mismatch(where, tp, value) from None
            raise
    if tp is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        raise _Mismatch(where, tp, value)
    if tp is int:
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            return int(value)
        raise _Mismatch(where, tp, value)
    if tp is float:
        is_bool = isinstance(value, bool | np.bool_)
        if isinstance(value, int | float | np.integer | np.floating) and not is_bool:
            number = float(value)
            if not math.isfinite(number):
                raise ProtocolError(f"{where}: non-finite number {value!r} is not allowed (JSON has no NaN)")
            return number
        raise _Mismatch(where, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
            return os.fspath(value)
        raise _Mismatch(where, tp, value)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise _Mismatch(where, tp, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0], f"{where}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ProtocolError(f"{where}: expected {len(args)} items {_type_name(tp)}, got {_short(value)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(item, arg, f"{where}[{i}]") for i, (item, arg) in pairs)
    if origin is dict:
        item_type = typing.get_args(tp)[1]
        if not isinstance(value, Mapping):
            raise _Mismatch(where, tp, value)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError(f"{where}: keys must be strings, got {_short(key)}")
            out[key] = _coerce(item, item_type, f"{where}.{key}")
        return out
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return tp.from_dict(value, where=where)
        raise _Mismatch(where, tp, value)
    raise TypeError(f"unsupported annotation {tp!r} at {where}")  # a bug in this module, not in the input


def _to_json(value: Any) -> Any:
    if isinstance(value, _Checked):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    return value


def _check_job_id(value: str, where: str) -> None:
    if not _JOB_ID_RE.match(value):
        raise ProtocolError(
            f"{where}: job id {_short(value)} must be 1-128 letters, digits, '.', '_' or '-' "
            "(use protocol.new_job_id())"
        )


def _check_keys(cls: type, data: Mapping[str, Any], where: str, ignore: tuple[str, ...] = ()) -> None:
    names = [f.name for f in fields(cls)]
    extra = [key for key in data if key not in names and key not in ignore]
    if extra:
        hints = []
        for key in extra:
            close = difflib.get_close_matches(str(key), names, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        known = f"known: {', '.join(names)}" if names else f"{where} takes no fields"
        raise ProtocolError(f"{where}: unknown field(s) {', '.join(hints)}; {known}")
    no_default = dataclasses.MISSING
    required = [f.name for f in fields(cls) if f.default is no_default and f.default_factory is no_default]
    missing = [name for name in required if name not in data]
    if missing:
        raise ProtocolError(f"{where}: missing field(s) {', '.join(repr(name) for name in missing)}")


class _Checked:
    """Mixin for frozen dataclasses: fields are type-checked and normalised in ``__post_init__``."""

    _hints_cache: ClassVar[dict[type, dict[str, Any]]] = {}

    def _where(self) -> str:
        return type(self).__name__

    def __post_init__(self) -> None:
        cls = type(self)
        hints = _Checked._hints_cache.get(cls)
        if hints is None:
            hints = _Checked._hints_cache[cls] = typing.get_type_hints(cls)
        where = self._where()
        for f in fields(self):  # type: ignore[arg-type]
            value = _coerce(getattr(self, f.name), hints[f.name], f"{where}.{f.name}")
            object.__setattr__(self, f.name, value)
        self._validate(where)

    def _validate(self, where: str) -> None:
        """Checks beyond types (ranges, choices); raise ProtocolError with a message for the user."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_json(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


# --- job options ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobOptions(_Checked):
    """Everything a reconstruction can be told besides its inputs, output folder and model.

    Defaults follow DA3's own (504 px, upper-bound resize, saddle-balanced reference view).
    """

    process_res: int = 504  # longer side (upper_bound_*) or shorter side (lower_bound_*) in pixels
    process_res_method: str = "upper_bound_resize"  # one of PROCESS_RES_METHODS
    ref_view_strategy: str = "saddle_balanced"  # one of REF_VIEW_STRATEGIES
    use_ray_pose: bool = False  # cameras from the ray head (slower, more precise within a chunk)
    infer_gs: bool = False  # run the Gaussian head (giant and nested models only)
    metric: bool = False  # also run a metric model and scale the result to metres
    metric_model: str = DEFAULT_METRIC_MODEL  # hub id or folder of that metric model
    frames: tuple[int, int | None, int] | None = None  # (start, end, step) over the input frames, end excl.
    target_fps: float | None = None  # resample video inputs to this rate (None: every decoded frame)
    frame_positions_fps: float | None = (
        None  # `frames` counts movie positions round(t·fps) (Blender's VFR numbering)
    )
    device: str = "auto"  # auto, cpu, mps, cuda, cuda:N
    dtype: str = "auto"  # one of DTYPES (auto: bf16/fp16 on CUDA, float32 elsewhere)
    exports: tuple[str, ...] = ()  # extra files beside reconstruction.npz, from EXPORTS
    skip_unreadable: bool = True  # skip undecodable input files with a warning (False: fail the job)
    max_points: int | None = None  # point budget of the exported/imported cloud (None: keep all)
    conf_percentile: float = 40.0  # drop points below this percentile of confidence, in [0, 100)
    cameras: str | None = None  # file with known cameras to condition on (None: predict them)
    seed: int = 0  # seeds every random choice (subsampling, RANSAC) for repeatable results
    chunk_size: int | None = None  # frames per network pass (None: choose from memory)
    chunk_overlap: int | None = None  # frames shared by consecutive chunks (None: half a chunk)
    keep_chunk_cache: bool = False  # keep a shot's chunk cache (<output>/.shot_cache) for inspection

    def _where(self) -> str:
        return "options"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "options") -> JobOptions:
        """Options from a plain dict; unknown keys are rejected (with a did-you-mean hint)."""
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{where}: expected an object of options, got {_short(data)}")
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else f" Known options: {', '.join(names)}."
                raise ProtocolError(f"{where}: unknown option {key!r}.{hint}")
        return cls(**data)

    def _validate(self, where: str) -> None:
        def fail(name: str, message: str) -> None:
            raise ProtocolError(f"{where}.{name}: {message}")

        low, high = PROCESS_RES_RANGE
        if not low <= self.process_res <= high:
            fail("process_res", f"must be between {low} and {high} pixels, got {self.process_res}")
        if self.process_res_method not in PROCESS_RES_METHODS:
            fail("process_res_method", f"must be one of {', '.join(PROCESS_RES_METHODS)}")
        if self.ref_view_strategy not in REF_VIEW_STRATEGIES:
            fail("ref_view_strategy", f"must be one of {', '.join(REF_VIEW_STRATEGIES)}")
        if not self.metric_model:
            fail("metric_model", "must name a hub id or a folder")
        if self.frames is not None:
            start, end, step = self.frames
            if start < 0 or step < 1 or (end is not None and end <= start):
                fail("frames", f"(start, end, step) needs 0 <= start < end and step >= 1, got {self.frames}")
        if self.target_fps is not None and self.target_fps <= 0:
            fail("target_fps", f"must be positive, got {self.target_fps}")
        if self.frame_positions_fps is not None:
            if not self.frame_positions_fps > 0:
                fail("frame_positions_fps", f"must be positive, got {self.frame_positions_fps}")
            if self.target_fps is not None:
                fail("frame_positions_fps", "cannot be combined with target_fps")
        if not _DEVICE_RE.match(self.device):
            fail("device", f"must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if self.dtype not in DTYPES:
            fail("dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        unknown = [name for name in self.exports if name not in EXPORTS]
        if unknown:
            fail("exports", f"unknown export(s) {', '.join(map(repr, unknown))}; known: {', '.join(EXPORTS)}")
        if len(set(self.exports)) != len(self.exports):
            fail("exports", f"lists an export twice: {list(self.exports)}")
        if "gaussians" in self.exports and not self.infer_gs:
            fail("exports", "'gaussians' needs infer_gs=True (the Gaussian head)")
        if self.max_points is not None and self.max_points < 1:
            fail("max_points", f"must be at least 1 (or null for no budget), got {self.max_points}")
        if not 0.0 <= self.conf_percentile < 100.0:
            fail("conf_percentile", f"must be in [0, 100), got {self.conf_percentile}")
        if self.cameras is not None and not self.cameras:
            fail("cameras", "must be a file path or null")
        if not 0 <= self.seed < 2**32:
            fail("seed", f"must be in [0, 2**32), got {self.seed}")
        if self.chunk_size is not None and self.chunk_size < 2:
            fail("chunk_size", f"must be at least 2 frames (or null for automatic), got {self.chunk_size}")
        if self.chunk_overlap is not None:
            if self.chunk_overlap < 1:
                fail("chunk_overlap", f"must be at least 1 frame, got {self.chunk_overlap}")
            if self.chunk_size is not None and self.chunk_overlap >= self.chunk_size:
                size, overlap = self.chunk_size, self.chunk_overlap
                fail("chunk_overlap", f"must be smaller than chunk_size ({size}), got {overlap}")


# --- messages -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message(_Checked):
    """Base of requests and events: ``to_dict()`` adds the ``type`` key, ``encode()`` gives one JSON line."""

    TYPE: ClassVar[str] = ""

    def _where(self) -> str:
        return str(self.TYPE)

    def to_dict(self) -> dict[str, Any]:
        return {"type": str(self.TYPE), **super().to_dict()}

    def encode(self) -> str:
        """One line of JSON without the newline; non-finite floats are refused."""
        try:
            return json.dumps(self.to_dict(), allow_nan=False, ensure_ascii=True, separators=(",", ":"))
        except ValueError as exc:  # a dict field mutated after construction
            raise ProtocolError(f"{self.TYPE}: cannot encode: {exc}") from None


def _message_from_dict(data: Any, registry: Mapping[str, type[Message]], family: str) -> Message:
    if not isinstance(data, Mapping):
        raise ProtocolError(f"a {family} must be a JSON object, got {_short(data)}")
    type_name = data.get("type")
    # The id of a refused `reconstruct`, so the worker can still end that job with an error event.
    job = data.get("job") if type_name == "reconstruct" and isinstance(data.get("job"), str) else None
    if not isinstance(type_name, str):
        raise ProtocolError(f"{family} has no 'type' string (one of {', '.join(registry)})", job)
    cls = registry.get(type_name)
    if cls is None:
        raise ProtocolError(f"unknown {family} type {type_name!r} (known: {', '.join(registry)})", job)
    try:
        _check_keys(cls, data, type_name, ignore=("type",))
        return cls(**{key: value for key, value in data.items() if key != "type"})
    except ProtocolError as exc:
        exc.job = job
        raise


def _loads(line: str | bytes) -> Any:
    """Parse one line of JSON, refusing NaN/Infinity (Python's json accepts them by default)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"line is not UTF-8: {exc}") from None
    text = line.strip()
    if not text:
        raise ProtocolError("empty line")

    def no_constant(name: str) -> Any:
        raise ProtocolError(f"non-finite number {name} is not allowed (JSON has no NaN)")

    def finite_float(text_number: str) -> float:
        number = float(text_number)
        if not math.isfinite(number):
            raise ProtocolError(f"number {text_number} overflows to infinity")
        return number

    try:
        return json.loads(text, parse_constant=no_constant, parse_float=finite_float)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not valid JSON ({exc.msg} at column {exc.colno}): {_short(text)}") from None


# --- requests (client → worker) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Request(Message):
    """A message from the client to the worker."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        message = _message_from_dict(data, REQUESTS, "request")
        if not isinstance(message, cls):
            raise ProtocolError(f"expected a {cls.TYPE or 'request'} message, got {str(message.TYPE)!r}")
        return message  # type: ignore[return-value]


@dataclass(frozen=True)
class ReconstructRequest(Request):
    """Run one reconstruction: ``inputs`` (image or video paths) → a bundle in ``output``."""

    TYPE = RequestType.reconstruct
    job: str
    inputs: tuple[str, ...]  # image files, folders or videos, in order
    output: str  # folder the bundle is written into (created if missing)
    model: str  # hub repo id ("depth-anything/DA3-LARGE-1.1") or a local checkpoint folder
    options: JobOptions = field(default_factory=JobOptions)

    def _validate(self, where: str) -> None:
        _check_job_id(self.job, f"{where}.job")
        if not self.inputs:
            raise ProtocolError(f"{where}.inputs: give at least one image, folder or video", self.job)
        if any(not path for path in self.inputs):
            raise ProtocolError(f"{where}.inputs: an input path is empty", self.job)
        if not self.output:
            raise ProtocolError(f"{where}.output: give the folder the result is written into", self.job)
        if not self.model:
            raise ProtocolError(f"{where}.model: give a hub model id or a checkpoint folder", self.job)


@dataclass(frozen=True)
class CancelRequest(Request):
    """Cancel a running or queued job (ends it with ``interrupted``)."""

    TYPE = RequestType.cancel
    job: str

    def _validate(self, where: str) -> None:
        _check_job_id(self.job, f"{where}.job")


@dataclass(frozen=True)
class UnloadRequest(Request):
    """Free the loaded model (after the running job, if any)."""

    TYPE = RequestType.unload


@dataclass(frozen=True)
class StatusRequest(Request):
    """Ask for a ``status`` event; answered at once, even while a job runs."""

    TYPE = RequestType.status


@dataclass(frozen=True)
class ShutdownRequest(Request):
    """Cancel the running job, interrupt queued ones, and exit 0."""

    TYPE = RequestType.shutdown


# --- events (worker → client) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event(Message):
    """A message from the worker to the client. ``TERMINAL`` events end a job."""

    TERMINAL: ClassVar[bool] = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        message = _message_from_dict(data, EVENTS, "event")
        if not isinstance(message, cls):
            raise ProtocolError(f"expected a {cls.TYPE or 'event'} message, got {str(message.TYPE)!r}")
        return message  # type: ignore[return-value]

    @property
    def terminal_job(self) -> str | None:
        """The job this event ends, or None (not terminal, or an engine-level error)."""
        return getattr(self, "job", None) if self.TERMINAL else None


@dataclass(frozen=True)
class ReadyEvent(Event):
    """The engine is up: sent once, after torch is imported and the device is known."""

    TYPE = EventType.ready
    protocol: int  # PROTOCOL_VERSION of the engine; the client refuses a different one
    engine: str  # ENGINE_VERSION
    device: str  # default device: "cuda", "mps" or "cpu"
    torch: str | None  # torch version, None when torch is missing (jobs then fail with a clear error)
    cuda: str | None  # CUDA version torch was built with, None on CPU/MPS builds
    model: str | None = None  # model source loaded right now
    pid: int = 0  # process id of the engine

    def _validate(self, where: str) -> None:
        if self.protocol < 1:
            raise ProtocolError(f"{where}.protocol: must be >= 1, got {self.protocol}")


@dataclass(frozen=True)
class ProgressEvent(Event):
    """``current`` of ``total`` steps of one stage done (``total`` 0: unknown)."""

    TYPE = EventType.progress
    job: str
    stage: str  # e.g. "load", "decode", "network", "fuse", "write"
    current: int
    total: int
    message: str = ""

    def _validate(self, where: str) -> None:
        _check_job_id(self.job, f"{where}.job")
        if self.current < 0 or self.total < 0:
            raise ProtocolError(f"{where}: current and total must be >= 0, got {self.current}/{self.total}")

    @property
    def fraction(self) -> float | None:
        """Progress of this stage in [0, 1], None when the total is unknown."""
        return min(1.0, self.current / self.total) if self.total else None


@dataclass(frozen=True)
class LogEvent(Event):
    """A line for the engine log (and the status bar when level is warning or error)."""

    TYPE = EventType.log
    level: str  # one of LOG_LEVELS
    message: str
    job: str | None = None

    def _validate(self, where: str) -> None:
        if self.level not in LOG_LEVELS:
            raise ProtocolError(f"{where}.level: must be one of {', '.join(LOG_LEVELS)}, got {self.level!r}")


@dataclass(frozen=True)
class ResultEvent(Event):
    """Files a job wrote: name ("bundle", or a name from EXPORTS) → path, plus a JSON summary."""

    TYPE = EventType.result
    job: str
    files: dict[str, str]
    summary: dict[str, Any] = field(default_factory=dict)

    def _validate(self, where: str) -> None:
        _check_job_id(self.job, f"{where}.job")


@dataclass(frozen=True)
class FinishedEvent(Event):
    """Terminal: the job succeeded."""

    TYPE = EventType.finished
    TERMINAL = True
    job: str
    summary: dict[str, Any] = field(default_factory=dict)

    def _validate(self, where: str) -> None:
        _check_job_id(self.job, f"{where}.job")


@dataclass(frozen=True)
class InterruptedEvent(Event):
    """Terminal: the job was cancelled (by the user or by shutdown)."""

    TYPE = EventType.interrupted
    TERMINAL = True
    job: str
    message: str = "Cancelled."

    def _validate(self, where: str) -> None:
        _check_job_id(self.job, f"{where}.job")


@dataclass(frozen=True)
class ErrorEvent(Event):
    """Terminal for ``job``; with ``job`` None it is about the engine itself (a bad request, a crash).

    ``message`` is short text for the user; ``traceback`` the details (a Python traceback, or the last
    stderr lines of an engine that died); ``exit_code`` is set when the engine process died.
    """

    TYPE = EventType.error
    TERMINAL = True
    job: str | None
    message: str
    traceback: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class StatusEvent(Event):
    """Answer to a ``status`` request."""

    TYPE = EventType.status
    busy: str | None  # id of the running job
    model: str | None  # model source loaded right now
    device: str
    idle_seconds: float  # since the last job ended (0 while busy)
    queued: tuple[str, ...] = ()  # ids of jobs waiting, in order

    @property
    def queue_length(self) -> int:
        return len(self.queued)


REQUESTS: dict[str, type[Request]] = {
    cls.TYPE: cls
    for cls in (ReconstructRequest, CancelRequest, UnloadRequest, StatusRequest, ShutdownRequest)
}
EVENTS: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        ReadyEvent,
        ProgressEvent,
        LogEvent,
        ResultEvent,
        FinishedEvent,
        InterruptedEvent,
        ErrorEvent,
        StatusEvent,
    )
}


def decode_request(line: str | bytes) -> Request:
    """One JSON line → a Request; raises ProtocolError (with ``.job`` when readable) if it is not one."""
    return Request.from_dict(_loads(line))


def decode_event(line: str | bytes) -> Event:
    """One JSON line → an Event; raises ProtocolError if it is not one."""
    return Event.from_dict(_loads(line))
