"""Checkpoint lookup and key checks: a hub repo id or a local folder in the official layout.

A checkpoint is ``config.json`` (with ``model_name``, the preset) + ``model.safetensors``. Hub ids
go through huggingface_hub (its cache, ``revision``, ``HF_HUB_OFFLINE``). safetensors only:
pickle files are refused. Loading is strict: a missing, unexpected or wrongly shaped key is an
error listing them; the tied LayerNorm aliases of the ray head are expected and filled in.

No torch here: ``weights.load_model`` builds the network from what this module finds and checks.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .io.safetensors_io import SafetensorsError, SafetensorsHeader, read_header

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
ALIAS_RE = re.compile(r"(output_conv2_aux\.)[123](\.2\.(?:weight|bias))$")


class CheckpointError(UserError):
    """The checkpoint cannot be found or does not match the network."""


@dataclass(frozen=True)
class CheckpointFiles:
    source: str  # what the user asked for (hub id or folder)
    folder: Path
    config: dict
    model_name: str
    weights: Path


def canonical_key(key: str) -> str:
    """Stored name of a tied alias: ``…output_conv2_aux.{1,2,3}.2.*`` → ``…output_conv2_aux.0.2.*``."""
    return ALIAS_RE.sub(r"\g<1>0\2", key)


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path.name} is a pickle checkpoint, which can run code when loaded: DA3 Reconstruct only "
            "loads safetensors. Use the official hub files (config.json + model.safetensors)."
        )


def _from_folder(source: str, folder: Path) -> CheckpointFiles:
    config_path, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not weights.is_file():
        for p in sorted(folder.iterdir()):
            _refuse_pickle(p)
    missing = [p.name for p in (config_path, weights) if not p.is_file()]
    if missing:
        raise CheckpointError(
            f"the model folder {folder} lacks {' and '.join(missing)}: a DA3 checkpoint folder holds "
            f"{CONFIG_NAME} and {WEIGHTS_NAME} as downloaded from the hub"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_path} is not valid JSON: {e}") from None
    name = config.get("model_name") if isinstance(config, dict) else None
    if not isinstance(name, str):
        raise CheckpointError(
            f"{config_path} has no 'model_name' (e.g. \"da3-small\"): cannot tell which network"
        )
    return CheckpointFiles(source, folder, config, name, weights)


def _offline_message(repo_id: str, cache_dir: str | None) -> str:
    from huggingface_hub import constants

    cache = cache_dir or constants.HF_HUB_CACHE
    return (
        f"model {repo_id} is not in the local cache ({cache}) and downloading is not possible (offline or "
        f"network not allowed). Either allow online access and try again, download it on a connected machine "
        f"(`hf download {repo_id}`) and copy the cache, or put {CONFIG_NAME} and {WEIGHTS_NAME} in a folder "
        "and choose that folder as the model."
    )


HUB_PROBE_SECONDS = 3.0


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the hub (``HF_ENDPOINT``, default huggingface.co) accepts a connection within ``timeout``;
    False at once with ``HF_HUB_OFFLINE`` set."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_checkpoint(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    allow_download: bool = True,
) -> CheckpointFiles:
    """Find config.json + model.safetensors for a folder or a hub repo id (``depth-anything/DA3-SMALL``)."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        return _from_folder(str(source), path)
    if path.is_file():
        _refuse_pickle(path)
        if path.name == WEIGHTS_NAME or path.name == CONFIG_NAME:
            return _from_folder(str(source), path.parent)
        raise CheckpointError(
            f"{path} is not a model folder: choose the folder that holds {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    source = str(source)
    if source.count("/") != 1 or any(c in source for c in " \\:"):
        raise CheckpointError(
            f"model {source!r} is neither an existing folder nor a hub id like 'depth-anything/DA3-SMALL'"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # Without a connection huggingface_hub retries for half a minute: ask the network once, quickly, and
    # use the cache alone (or say at once that the model is not there) when it does not answer.
    local_only = not allow_download or not hub_reachable()
    try:
        files = [
            hf_hub_download(source, name, revision=revision, cache_dir=cache_dir, local_files_only=local_only)
            for name in (CONFIG_NAME, WEIGHTS_NAME)
        ]
    except LocalEntryNotFoundError:
        raise CheckpointError(_offline_message(source, cache_dir)) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
        raise CheckpointError(
            f"model {source} (revision {revision or 'main'}) was not found on the hub: {e}"
        ) from None
    except OSError as e:  # connection errors surface as OSError subclasses
        raise CheckpointError(
            f"could not download {source}: {e}. {_offline_message(source, cache_dir)}"
        ) from None
    return _from_folder(source, Path(files[0]).parent)


def read_checkpoint_header(files: CheckpointFiles) -> SafetensorsHeader:
    try:
        return read_header(files.weights)
    except SafetensorsError as e:
        raise CheckpointError(f"{files.weights}: {e}") from None


def check_keys(header: SafetensorsHeader, expected: dict[str, tuple[int, ...]], prefix_map) -> dict[str, str]:
    """Map file keys to network keys and check them strictly.

    ``expected``: network key → shape. ``prefix_map(file_key) -> network key or None``.
    Returns network key → file key (tied aliases point at their stored canonical tensor).
    """
    mapping, unexpected, wrong = {}, [], []
    for file_key, info in header.tensors.items():
        key = prefix_map(file_key)
        if key is None or key not in expected:
            unexpected.append(file_key)
        elif tuple(info.shape) != tuple(expected[key]):
            wrong.append(f"{file_key}: file {list(info.shape)}, network {list(expected[key])}")
        else:
            mapping[key] = file_key
    for key in expected:
        if key not in mapping and canonical_key(key) in mapping:
            mapping[key] = mapping[canonical_key(key)]
    missing = [k for k in expected if k not in mapping]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                shown = ", ".join(items[:8]) + (f" … and {len(items) - 8} more" if len(items) > 8 else "")
                parts.append(f"{len(items)} {label}: {shown}")
        raise CheckpointError(f"{header.path.name} does not match the network: " + "; ".join(parts))
    return mapping
