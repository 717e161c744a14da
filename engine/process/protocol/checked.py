"""The machinery of checked messages: frozen dataclasses whose fields are type-checked and normalised on
construction (``Checked``), JSON values only (no NaN, no arrays), and ``ProtocolError`` that says which
field and what was expected. Standard library and numpy only."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
import uuid
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np

__all__ = ["Checked", "ProtocolError", "check_job_id", "check_keys", "new_job_id", "short_repr"]

_JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ProtocolError(ValueError):
    """A message that is not valid protocol.

    ``job`` is the id of a refused ``reconstruct`` request when it could be read, so that job can still get
    its terminal ``error`` event; None otherwise.
    """

    def __init__(self, message: str, job: str | None = None) -> None:
        super().__init__(message)
        self.job = job


def new_job_id() -> str:
    """A fresh job id (12 hex digits): safe as a folder name on every OS."""
    return uuid.uuid4().hex[:12]


def short_repr(value: Any) -> str:
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
                raise ProtocolError(f"{where}: object keys must be strings, got {short_repr(key)}")
            out[key] = _json_value(item, f"{where}.{key}")
        return out
    raise ProtocolError(f"{where}: {type(value).__name__} is not a JSON value ({short_repr(value)})")


class _Mismatch(ProtocolError):
    """A value of the wrong type at ``where`` (lets a union report its whole type)."""

    def __init__(self, where: str, tp: Any, value: Any) -> None:
        super().__init__(f"{where}: expected {_type_name(tp)}, got {short_repr(value)}")
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
            raise ProtocolError(
                f"{where}: expected {len(args)} items {_type_name(tp)}, got {short_repr(value)}"
            )
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(item, arg, f"{where}[{i}]") for i, (item, arg) in pairs)
    if origin is dict:
        item_type = typing.get_args(tp)[1]
        if not isinstance(value, Mapping):
            raise _Mismatch(where, tp, value)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError(f"{where}: keys must be strings, got {short_repr(key)}")
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
    if isinstance(value, Checked):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items()}
    return value


def check_job_id(value: str, where: str) -> None:
    if not _JOB_ID_RE.match(value):
        raise ProtocolError(
            f"{where}: job id {short_repr(value)} must be 1-128 letters, digits, '.', '_' or '-' "
            "(use protocol.new_job_id())"
        )


def check_keys(cls: type, data: Mapping[str, Any], where: str, ignore: tuple[str, ...] = ()) -> None:
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


class Checked:
    """Mixin for frozen dataclasses: fields are type-checked and normalised in ``__post_init__``."""

    _hints_cache: ClassVar[dict[type, dict[str, Any]]] = {}

    def _where(self) -> str:
        return type(self).__name__

    def __post_init__(self) -> None:
        cls = type(self)
        hints = Checked._hints_cache.get(cls)
        if hints is None:
            hints = Checked._hints_cache[cls] = typing.get_type_hints(cls)
        where = self._where()
        for f in fields(self):  # type: ignore[arg-type]
            value = _coerce(getattr(self, f.name), hints[f.name], f"{where}.{f.name}")
            object.__setattr__(self, f.name, value)
        self._validate(where)

    def _validate(self, where: str) -> None:
        """Checks beyond types (ranges, choices); raise ProtocolError with a message for the user."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _to_json(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
