"""Which images a job gets: files picked in the file browser, or every image in a folder.

The extensions and the natural order are the engine's own (``engine.io.inputs``), so Blender and the engine
agree on what a folder holds. The engine decodes the images; here we only check that each path exists and
looks like an image, so a bad choice is refused in Blender with a message that says what to do, before
any process starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..engine.io.inputs import IMAGE_EXTENSIONS, natural_sort_key

__all__ = ["IMAGE_EXTENSIONS", "InputError", "collect_inputs", "count_folder_images", "folder_images"]


class InputError(ValueError):
    """The chosen inputs cannot be reconstructed; the message tells the user what to do."""


def is_image(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def folder_images(folder: str | os.PathLike) -> list[str]:
    """Image files directly in ``folder`` (not in sub-folders), in natural order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        found = [e.path for e in entries if e.is_file() and not e.name.startswith(".") and is_image(e.name)]
    return sorted(found, key=lambda p: natural_sort_key(os.path.basename(p)))  # img2 before img10


_COUNT_CACHE: dict[str, tuple[float, int]] = {}


def count_folder_images(folder: str) -> int:
    """Number of images in ``folder``, cached by the folder's modification time (panels redraw often)."""
    try:
        mtime = os.stat(folder).st_mtime
    except OSError:
        return 0
    cached = _COUNT_CACHE.get(folder)
    if cached and cached[0] == mtime:
        return cached[1]
    count = len(folder_images(folder))
    _COUNT_CACHE[folder] = (mtime, count)
    return count


def collect_inputs(mode: str, files: Iterable[str] = (), folder: str = "") -> list[str]:
    """The absolute image paths of a job, in order. ``mode`` is ``"FILES"`` or ``"FOLDER"``.

    Raises InputError when nothing usable is chosen, a file is missing or is not an image.
    """
    if mode == "FOLDER":
        if not folder:
            raise InputError("No folder chosen: pick a folder of images in the Inputs section.")
        path = Path(folder)
        if not path.is_dir():
            raise InputError(f"The folder {folder} does not exist: pick a folder of images.")
        images = folder_images(path)
        if not images:
            raise InputError(
                f"The folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}): pick another folder."
            )
        return [os.path.abspath(p) for p in images]
    if mode != "FILES":
        raise InputError(f"Unknown input mode {mode!r}.")
    paths = [os.path.abspath(p) for p in files if p]
    if not paths:
        raise InputError("No images chosen: click 'Choose Images' or switch to a folder.")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"Image not found: {missing[0]}{more}. Choose the images again.")
    not_images = [p for p in paths if not is_image(p)]
    if not_images:
        raise InputError(
            f"{os.path.basename(not_images[0])} is not an image ({', '.join(IMAGE_EXTENSIONS)}). "
            "Remove it from the list and try again."
        )
    return paths
