"""Shared test setup: where ../shared lives (parity fixtures, samples). Imports neither torch nor bpy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DA3_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden"
SAMPLES = SHARED / "samples"

if str(ROOT) not in sys.path:  # the engine process sees the extension folder on sys.path: so do tests
    sys.path.insert(0, str(ROOT))


def require_golden() -> Path:
    """The golden fixture folder, or skip the test when ../shared is absent (a user's fresh clone)."""
    if not (GOLDEN / "make_weights.py").is_file():
        pytest.skip("../shared/golden is not here (parity fixtures live beside the project)")
    return GOLDEN


def require_samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples is not here")
    return SAMPLES
