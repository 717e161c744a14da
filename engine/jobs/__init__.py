"""Jobs: a ``ReconstructRequest`` in, a finished result bundle out, in the engine process (``process.worker``)
and on the command line (``cli``) alike.

``run_job`` is the one entry point: it checks the options, then runs the request's kind (decided once,
``protocol.job_kind``): a still job (``still``: every frame through the network at once, per-view depth)
or a shot (``shot``: a video solved in overlapping chunks, one camera). ``context`` holds what jobs run
with (the model cache, the cancel flag), ``stages`` the stages both kinds share, ``exports`` the optional
files beside the bundle, ``chunking`` the chunk loop of a shot, ``chunk_choice`` its chunk size and
overlap (a measured cost model within memory), ``cameras_file`` known cameras.
"""

from __future__ import annotations

import time
from typing import Any

from ..process.protocol import ReconstructRequest
from .context import Context
from .shot import run_shot
from .stages import check_options
from .still import run_still

__all__ = ["run_job"]


def run_job(request: ReconstructRequest, context: Context) -> dict[str, Any]:
    """Run one job and write its bundle into ``request.output``; returns the summary for ``finished``."""
    started = time.perf_counter()
    check_options(request, context)
    run = run_shot if request.kind == "shot" else run_still
    return run(request, context, started)
