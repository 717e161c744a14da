"""Fixtures shared by the engine tests: a tiny checkpoint we generate ourselves (official layout)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A random, well-conditioned da3-small checkpoint folder (config.json + model.safetensors), made once."""
    from engine.model.random_weights import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("checkpoint") / "da3-small", "da3-small", seed=0)
