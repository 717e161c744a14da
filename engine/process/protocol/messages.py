"""The messages: requests (client → worker) and events (worker → client), one JSON line each, and their
decoding. Standard library and numpy only."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from .checked import Checked, ProtocolError, check_job_id, check_keys, short_repr
from .options import JobOptions, job_kind

__all__ = [
    "LOG_LEVELS",
    "CancelRequest",
    "ErrorEvent",
    "Event",
    "EventType",
    "FinishedEvent",
    "InterruptedEvent",
    "LogEvent",
    "Message",
    "ProgressEvent",
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
]

LOG_LEVELS = ("debug", "info", "warning", "error")


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


# --- messages -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message(Checked):
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
        raise ProtocolError(f"a {family} must be a JSON object, got {short_repr(data)}")
    type_name = data.get("type")
    # The id of a refused `reconstruct`, so the worker can still end that job with an error event.
    job = data.get("job") if type_name == "reconstruct" and isinstance(data.get("job"), str) else None
    if not isinstance(type_name, str):
        raise ProtocolError(f"{family} has no 'type' string (one of {', '.join(registry)})", job)
    cls = registry.get(type_name)
    if cls is None:
        raise ProtocolError(f"unknown {family} type {type_name!r} (known: {', '.join(registry)})", job)
    try:
        check_keys(cls, data, type_name, ignore=("type",))
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
        raise ProtocolError(f"not valid JSON ({exc.msg} at column {exc.colno}): {short_repr(text)}") from None


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
        check_job_id(self.job, f"{where}.job")
        if not self.inputs:
            raise ProtocolError(f"{where}.inputs: give at least one image, folder or video", self.job)
        if any(not path for path in self.inputs):
            raise ProtocolError(f"{where}.inputs: an input path is empty", self.job)
        if not self.output:
            raise ProtocolError(f"{where}.output: give the folder the result is written into", self.job)
        if not self.model:
            raise ProtocolError(f"{where}.model: give a hub model id or a checkpoint folder", self.job)

    @property
    def kind(self) -> str:
        """ "still" or "shot" (``options.job_kind``): how the job runs and what its bundle holds."""
        return job_kind(self.inputs, self.options)


@dataclass(frozen=True)
class CancelRequest(Request):
    """Cancel a running or queued job (ends it with ``interrupted``)."""

    TYPE = RequestType.cancel
    job: str

    def _validate(self, where: str) -> None:
        check_job_id(self.job, f"{where}.job")


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
        check_job_id(self.job, f"{where}.job")
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
        check_job_id(self.job, f"{where}.job")


@dataclass(frozen=True)
class FinishedEvent(Event):
    """Terminal: the job succeeded."""

    TYPE = EventType.finished
    TERMINAL = True
    job: str
    summary: dict[str, Any] = field(default_factory=dict)

    def _validate(self, where: str) -> None:
        check_job_id(self.job, f"{where}.job")


@dataclass(frozen=True)
class InterruptedEvent(Event):
    """Terminal: the job was cancelled (by the user or by shutdown)."""

    TYPE = EventType.interrupted
    TERMINAL = True
    job: str
    message: str = "Cancelled."

    def _validate(self, where: str) -> None:
        check_job_id(self.job, f"{where}.job")


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
