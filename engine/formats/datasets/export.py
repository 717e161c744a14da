"""``export_dataset``: one dataset folder for a trainer, written whole or not at all.

It is written into a hidden sibling of the target (``.<name>.partial-<pid>``) and renamed into place at
the end; a failure or a cancel removes the sibling and leaves the target as it was. A target that exists
must be empty or an earlier DA3 dataset (it is replaced); anything else is refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .common import DatasetFrame, Steps
from .frame import DatasetError, Similarity
from .gs_dataset import gs_steps, write_gs_dataset
from .nerfstudio_dataset import nerfstudio_steps, write_nerfstudio_dataset
from .sidecar import SIDECAR_FILE, DatasetSidecar, write_sidecar
from .source import DatasetSource

__all__ = ["DATASET_TOOLS", "check_target", "export_dataset"]

DATASET_TOOLS = {  # tool → (writer, number of progress steps)
    "3dgs": (write_gs_dataset, gs_steps),
    "nerfstudio": (write_nerfstudio_dataset, nerfstudio_steps),
}


def check_target(target: str | os.PathLike) -> Path:
    """The target folder as an absolute path, or a ``DatasetError`` that says why it cannot be used."""
    target = Path(os.path.abspath(os.fspath(target)))
    if target.exists() and not target.is_dir():
        raise DatasetError(f"{target} is a file: choose a folder for the dataset.")
    if target.is_dir() and any(target.iterdir()) and not (target / SIDECAR_FILE).is_file():
        raise DatasetError(
            f"{target} is not empty and holds no DA3 dataset: choose an empty or new folder "
            "(an earlier DA3 dataset there is replaced)."
        )
    if target.is_dir():
        others = sorted(p.name for p in target.iterdir() if not _ours(p.name))
        if others:
            raise DatasetError(
                f"{target} holds an earlier DA3 dataset and also {', '.join(others[:3])}"
                f"{' …' if len(others) > 3 else ''} (a training run's results?), which replacing it would "
                "delete: move them out of the folder, or choose another folder."
            )
    parent = target.parent
    if not parent.is_dir():
        raise DatasetError(f"The folder {parent} does not exist: create it or choose another one.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DatasetError(f"The folder {parent} is not writable: choose a folder you can write to.")
    return target


# What the dataset writers put at the top of a dataset, and the downscaled copies the trainers add
# (nerfstudio's images_2, …; 3DGS's and gsplat's images_<factor>); anything else is not ours to delete.
DATASET_ENTRIES = frozenset(
    {
        "images",
        "sparse",
        "depths",
        "normals_from_pretrain",
        "masks",
        "transforms.json",
        "sparse_pc.ply",
        SIDECAR_FILE,
    }
)


def _ours(name: str) -> bool:
    stem, _, factor = name.rpartition("_")
    return name in DATASET_ENTRIES or (stem in ("images", "depths", "masks") and factor.isdigit())


def _replace(staging: Path, target: Path) -> None:
    old = None
    if target.exists():
        if any(target.iterdir()):
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        else:
            target.rmdir()
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_dataset(
    tool: str,
    target: str | os.PathLike,
    source: DatasetSource,
    root: np.ndarray,
    *,
    root_name: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> DatasetSidecar:
    """Write the ``tool`` dataset ("3dgs" or "nerfstudio") of ``source`` into ``target``, in the frame
    ``root`` (4, 4) puts the bundle in (the reconstruction root's transform); returns its sidecar.

    ``progress(done, total, message)`` after each step; ``check_cancel()`` raises to stop (nothing is left).
    """
    if tool not in DATASET_TOOLS:
        raise DatasetError(f"unknown dataset tool {tool!r}; choose one of {', '.join(DATASET_TOOLS)}")
    write, count = DATASET_TOOLS[tool]
    similarity = Similarity(root)
    target = check_target(target)
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    steps = Steps(count(source) + 1, progress, check_cancel)
    try:
        staging.mkdir()
        depth_scale = write(staging, source, DatasetFrame.of(source, similarity), steps)
        sidecar = DatasetSidecar(
            tool=tool,
            bundle=source.bundle_folder,
            bundle_id=source.bundle_id,
            root_name=root_name,
            dataset_to_root=similarity.inverse(),
            scale_to_metres=1.0 / similarity.scale if source.units == "metre" else None,
            depth_scale=depth_scale,
        )
        write_sidecar(staging, sidecar)
        steps.step(f"Wrote {SIDECAR_FILE}")
        _replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sidecar
