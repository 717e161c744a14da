"""Exceptions that cross the job boundary inside the engine process (stdlib only).

A job runner raises these so the worker can pick the right terminal event:
``JobCancelled`` ends the job with ``interrupted``; ``UserError`` ends it with ``error`` whose message is
shown to the user exactly as written (say what went wrong and what to do); any other exception becomes
``error`` with a short ``"<ExceptionType>: <message>"`` text and the full traceback for the details box.
"""

from __future__ import annotations


class JobCancelled(Exception):
    """The user cancelled the running job (raised by ``JobContext.check_cancel()``)."""

    def __init__(self, message: str = "Cancelled by the user.") -> None:
        super().__init__(message)


class UserError(Exception):
    """A failure the user can fix (bad input, missing model, out of memory): its message is shown as is."""
