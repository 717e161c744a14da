"""Fixtures shared by the engine tests: a tiny checkpoint we generate ourselves (official layout)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A random, well-conditioned da3-small checkpoint folder (config.json + model.safetensors), made once."""
    from engine.model.random_weights import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("checkpoint") / "da3-small", "da3-small", seed=0)


@pytest.fixture(scope="session", autouse=True)
def engine_cache_dir(tmp_path_factory):
    """The engine's user cache (measured chunk costs) in a folder of this session, never the user's."""
    import os

    old = os.environ.get("DA3_CACHE_DIR")
    os.environ["DA3_CACHE_DIR"] = str(tmp_path_factory.mktemp("engine_cache"))
    yield Path(os.environ["DA3_CACHE_DIR"])
    if old is None:
        os.environ.pop("DA3_CACHE_DIR", None)
    else:
        os.environ["DA3_CACHE_DIR"] = old
