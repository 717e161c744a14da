"""The one import entry point: open a bundle, decide once what it holds, build it into the scene.

``import_bundle`` reads the bundle and dispatches on ``Bundle.kind`` (the job's own still-or-shot
decision as the bundle records it): a still reconstruction goes to ``still.import_still`` (a point cloud
and cameras), a video shot to ``shot.import_shot`` (one animated camera over the plate, the solve
report). File > Import and the Reconstruct button both call it; each importer removes everything it made
when it fails (``root.build_reconstruction``).
"""

from __future__ import annotations

import os
import time

import bpy

from ..engine.formats.bundle import Bundle
from ..session.shot import ShotSource
from .options import ImportOptions
from .root import ImportResult, open_bundle
from .shot import import_shot
from .still import import_still

__all__ = ["ImportOptions", "ImportResult", "import_bundle"]


def import_bundle(
    context: bpy.types.Context,
    source: str | os.PathLike | Bundle,
    options: ImportOptions | None = None,
    shot_source: ShotSource | None = None,
) -> ImportResult:
    """Build the reconstruction in ``source`` (a bundle folder or a read Bundle) into ``context.scene``.

    A shot bundle (a video solved in chunks) becomes one animated camera over the plate, placed on the
    timeline by ``shot_source`` (the input the job tracked; None: its movie from scene frame 1). Raises
    the bundle reader's errors (``BundleError``: incomplete, missing, newer schema) unchanged.
    """
    options = options or ImportOptions()
    start = time.perf_counter()
    bundle = open_bundle(source)
    if bundle.kind == "shot":
        result = import_shot(context, bundle, options.for_shot(), shot_source)
        if options.view_meshes:
            result.notes.append("no per-view meshes: a tracked shot keeps no depth maps")
    else:
        result = import_still(context, bundle, options)
    result.seconds = time.perf_counter() - start  # reading the bundle included
    return result
