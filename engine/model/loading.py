"""Build a network for a preset and fill it from a safetensors checkpoint, one tensor at a time.

The network is created on the ``meta`` device (no memory), then every parameter is read from
the file, converted and moved to the target device, and assigned. Peak host memory is about
the model plus one tensor (the file is read with plain reads, not memory-mapped).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..checkpoints import CheckpointError, CheckpointFiles, check_keys
from ..io.safetensors_io import SafetensorsHeader, read_bytes
from .dpt import DPTHead
from .network import DA3Net, NestedDA3Net
from .precision import auto_precision
from .presets import NESTED_PARTS, NESTED_PRESET, PRESETS, get_preset

TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
DTYPE_NAMES = {
    "fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}  # fmt: skip


def pick_device(device=None) -> torch.device:
    if device not in (None, "auto"):
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise CheckpointError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise CheckpointError("device 'mps' was asked for, but this PyTorch has no Metal (MPS) support")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in (None, "auto"):
        try:
            return DTYPE_NAMES[str(dtype).lower()]
        except KeyError:
            raise CheckpointError(f"unknown precision {dtype!r}: use fp32, bf16 or fp16") from None
    return auto_precision(device).torch_dtype  # bf16 on CPUs and GPUs that do it natively (model.precision)


def build_network(model_name: str) -> nn.Module:
    """An uninitialised network for a preset, on the current default device."""
    if model_name == NESTED_PRESET:
        return NestedDA3Net(PRESETS[NESTED_PARTS["da3"]], PRESETS[NESTED_PARTS["da3_metric"]])
    return DA3Net(get_preset(model_name))


def file_key_to_network(file_key: str) -> str | None:
    """Official key → ours: drop ``model.``; the wrapper level ``backbone.pretrained.`` is ``backbone.``."""
    if not file_key.startswith("model."):
        return None
    return file_key[len("model.") :].replace("backbone.pretrained.", "backbone.")


def network_key_to_file(key: str) -> str:
    """Ours → official (writing hub-layout checkpoints): re-insert ``pretrained`` after backbone."""
    parts = key.split(".")
    for i, p in enumerate(parts):
        if p == "backbone" and (i == 0 or parts[i - 1] in ("da3", "da3_metric")):
            parts.insert(i + 1, "pretrained")
            break
    return "model." + ".".join(parts)


LOW_PRECISION = re.compile(
    r"^backbone\.(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2|w12|w3))|patch_embed\.proj)\."
)


def _storage_dtype(key: str, dtype: torch.dtype) -> torch.dtype:
    """Backbone matmul weights are stored in the run precision; norms, tokens, gammas and heads stay fp32."""
    bare = key.removeprefix("da3_metric.").removeprefix("da3.")
    return dtype if LOW_PRECISION.match(bare) else torch.float32


def _matching_preset(header: SafetensorsHeader, tried: str) -> str | None:
    """The DA3 model whose network the file's tensors fit exactly (None when none does)."""
    for name in [*PRESETS, NESTED_PRESET]:
        if name == tried:
            continue
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build_network(name).state_dict(keep_vars=True).items()}
        try:
            check_keys(header, shapes, file_key_to_network)
        except CheckpointError:
            continue
        return name
    return None


def _mismatch_message(files: CheckpointFiles, header: SafetensorsHeader, exc: CheckpointError) -> str:
    """Why the weights do not fit: another model's weights under this config.json (said plainly), or
    not DA3 weights at all (with the first mismatched keys)."""
    config = files.folder / "config.json"
    actual = _matching_preset(header, files.model_name)
    if actual is not None:
        return (
            f"{config} says the model is {files.model_name}, but {header.path.name} holds the weights of "
            f'{actual}: set "model_name": "{actual}" in config.json, or download {files.model_name} again.'
        )
    return (
        f"{header.path.name} does not hold the weights of {files.model_name} (as {config.name} says) nor of any "
        f"other DA3 model: download the model again. Details: {exc}"
    )


def build_and_load(
    files: CheckpointFiles, header: SafetensorsHeader, *, device=None, dtype=None
) -> nn.Module:
    if files.model_name not in PRESETS and files.model_name != NESTED_PRESET:
        known = ", ".join([*PRESETS, NESTED_PRESET])
        raise CheckpointError(
            f"{files.folder / 'config.json'} names model {files.model_name!r}; known models: {known}"
        )
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    with torch.device("meta"):
        net = build_network(files.model_name)
    expected = {k: tuple(v.shape) for k, v in net.state_dict(keep_vars=True).items()}
    try:
        mapping = check_keys(header, expected, file_key_to_network)
    except CheckpointError as exc:
        raise CheckpointError(_mismatch_message(files, header, exc)) from None

    state: dict[str, torch.Tensor] = {}
    loaded: dict[str, torch.Tensor] = {}  # file key → tensor (tied aliases share one)
    with open(header.path, "rb") as f:
        for key, file_key in mapping.items():
            if file_key not in loaded:
                info = header.tensors[file_key]
                t = torch.frombuffer(read_bytes(f, info), dtype=TORCH_DTYPES[info.dtype]).reshape(info.shape)
                loaded[file_key] = t.to(device=dev, dtype=_storage_dtype(key, dt))
            state[key] = loaded[file_key]
    net.load_state_dict(state, strict=True, assign=True)
    net.autocast_dtype = None if dt == torch.float32 else dt
    net.head_chunk = 1 if dev.type == "cpu" else 4  # full-size maps of one view at a time on a CPU
    for module in net.modules():  # dense heads: NHWC convolutions are ~20 % faster (oneDNN, cuDNN)
        if isinstance(module, DPTHead):
            module.to(memory_format=torch.channels_last)
    net.eval().requires_grad_(False)
    net.model_name, net.source, net.run_device, net.run_dtype = files.model_name, files.source, dev, dt
    return net
