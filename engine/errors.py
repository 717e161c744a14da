"""Exceptions that cross the job boundary inside the engine process (stdlib only).

A job runner raises these so the worker can pick the right terminal event:
``JobCancelled`` ends the job with ``interrupted``; ``UserError`` ends it with ``error`` whose message is
shown to the user exactly as written (say what went wrong and what to do); any other exception becomes
``error`` with a short ``"<ExceptionType>: <message>"`` text and the full traceback for the details box.
"""

from __future__ import annotations

import errno

__all__ = ["JobCancelled", "UserError", "explain", "explain_os_error"]


class JobCancelled(Exception):
    """The user cancelled the running job (raised by ``JobContext.check_cancel()``)."""

    def __init__(self, message: str = "Cancelled by the user.") -> None:
        super().__init__(message)


class UserError(Exception):
    """A failure the user can fix (bad input, missing model, out of memory): its message is shown as is."""


_OS_ERRORS = {
    errno.ENOSPC: "The disk is full{where}: free some space or choose an output folder on another disk.",
    errno.EDQUOT: "The disk quota is used up{where}: free some space or choose another output folder.",
    errno.ENAMETOOLONG: "A file or folder name is too long{where}: choose a shorter output name.",
    errno.EACCES: "Permission denied{where}: choose a folder you can write to.",
    errno.EPERM: "The operation is not permitted{where}: choose a folder you can write to.",
    errno.EROFS: "The disk is read-only{where}: choose a folder you can write to.",
}


def explain_os_error(exc: BaseException) -> str | None:
    """The one line for a system error we know (a full disk, a name too long, …), None for others."""
    for cause in (exc, exc.__cause__, exc.__context__):
        if isinstance(cause, OSError) and cause.errno in _OS_ERRORS:
            where = f" ({cause.filename})" if cause.filename else ""
            return _OS_ERRORS[cause.errno].format(where=where)
    return None


def explain(exc: BaseException) -> str:
    """One line for the user about an unexpected exception: what happened and, where we know, what to do
    (the traceback goes to the log). A disk that is full, a name too long, a folder that cannot be
    written, memory that runs out are said in words; anything else as 'Type: first line'."""
    known = explain_os_error(exc)
    if known is not None:
        return known
    name = type(exc).__name__
    if name == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, matched without importing torch
        return "Out of GPU memory. Try a lower resolution, a smaller chunk size or a smaller model."
    if isinstance(exc, MemoryError):
        return "Out of memory. Try a lower resolution, a smaller chunk size, fewer images or a smaller model."
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{name}: {text}" if text else name
