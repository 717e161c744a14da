"""The repository imported as the package ``da3_reconstruct``, for scripts that use the extension's
modules in a Python with bpy (no extension install; the root ``__init__`` imports nothing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["load_extension"]


def load_extension() -> ModuleType:
    """Import the repository as ``da3_reconstruct`` (its modules then import as ``da3_reconstruct.…``)."""
    spec = importlib.util.spec_from_file_location(
        "da3_reconstruct", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["da3_reconstruct"] = module
    spec.loader.exec_module(module)
    return module
