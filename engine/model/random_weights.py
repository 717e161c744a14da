"""Random but well-conditioned checkpoints in the official hub layout, for tests, demos and benchmarks.

PyTorch's default initialisation makes DA3 degenerate (a zero field of view, flat depth). These
rules keep every stage in a sensible range instead: LayerNorms near identity, small LayerScale,
fan-in scaled weights, a camera decoder biased to ~1 rad field of view and a near-identity
rotation, and spread-out camera centres. Each tensor has its own generator seeded by
``(seed, crc32(key))``, so a tensor depends on nothing but its key, shape and the seed.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import CONFIG_NAME, WEIGHTS_NAME, canonical_key
from ..io.safetensors_io import write_file
from .loading import build_network, network_key_to_file

GAINS = {"cam_dec.fc_fov.0.weight": 0.1, "cam_dec.fc_qvec.weight": 0.3, "cam_dec.fc_t.weight": 3.0}


def _tensor(key: str, shape: tuple[int, ...], one_d_weights: set[str], seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    normal = rng.standard_normal(shape).astype(np.float32)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "gamma":
        return (0.1 + 0.2 * rng.random(shape)).astype(np.float32)
    if leaf in ("cls_token", "camera_token"):
        return 0.5 * normal
    if leaf == "pos_embed":
        return 0.3 * normal
    if key.endswith("cam_dec.fc_fov.0.bias"):
        return 1.0 + 0.05 * normal
    if key.endswith("cam_dec.fc_qvec.bias"):
        return 0.02 * normal + np.array([0, 0, 0, 1], np.float32)
    if leaf == "weight" and len(shape) == 1:
        return 1.0 + 0.1 * normal
    if leaf == "bias":
        return (0.05 if key[:-4] + "weight" in one_d_weights else 0.02) * normal
    transpose_conv = ".resize_layers.0." in key or ".resize_layers.1." in key
    fan_in = shape[0] if transpose_conv else math.prod(shape[1:])
    gain = next((g for suffix, g in GAINS.items() if key.endswith(suffix)), 1.0)
    return normal * np.float32(gain / math.sqrt(fan_in))


def _network_shapes(model_name: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = build_network(model_name)
    return {k: tuple(v.shape) for k, v in net.state_dict(keep_vars=True).items()}


def random_state(model_name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Official key → float32 array for every tensor the hub file stores (tied aliases left out)."""
    shapes = _network_shapes(model_name)
    one_d = {k for k, s in shapes.items() if k.endswith("weight") and len(s) == 1}
    return {
        network_key_to_file(k): _tensor(k, s, one_d, seed) for k, s in shapes.items() if canonical_key(k) == k
    }


def write_random_checkpoint(folder: str | Path, model_name: str = "da3-small", seed: int = 0) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (aliases recorded in the metadata, as the hub does)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = random_state(model_name, seed)
    aliases = {
        network_key_to_file(k): network_key_to_file(canonical_key(k))
        for k in _network_shapes(model_name)
        if canonical_key(k) != k
    }
    write_file(folder / WEIGHTS_NAME, state, metadata=aliases or None)
    (folder / CONFIG_NAME).write_text(json.dumps({"model_name": model_name}), encoding="utf-8")
    return folder
