"""Checkpoint lookup and strict loading: folders, the hub cache, offline, and every way a file can be wrong."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.io.safetensors_io import read_header, write_file  # noqa: E402
from engine.model.random_weights import random_state, write_random_checkpoint  # noqa: E402
from engine.weights import CheckpointError, load_model, resolve_checkpoint  # noqa: E402

RAY_LN = "model.head.scratch.output_conv2_aux.0.2.weight"


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "da3-small", "da3-small", seed=3)


def _copy_with(tmp_path, src, state_edit=None, config=None, metadata="keep"):
    """A copy of the checkpoint with its tensors edited."""
    dst = tmp_path / "edited"
    dst.mkdir()
    header = read_header(src / "model.safetensors")
    state = random_state("da3-small", seed=3)
    if state_edit:
        state_edit(state)
    write_file(dst / "model.safetensors", state, metadata=header.metadata if metadata == "keep" else metadata)
    (dst / "config.json").write_text(json.dumps(config or {"model_name": "da3-small"}))
    return dst


def test_loads_folder_in_official_layout(small_ckpt):
    header = read_header(small_ckpt / "model.safetensors")
    assert (
        RAY_LN in header.tensors and RAY_LN.replace(".0.2.", ".3.2.") not in header.tensors
    )  # alias dropped
    assert header.metadata[RAY_LN.replace(".0.2.", ".3.2.")] == RAY_LN  # and recorded, as the hub does
    model = load_model(small_ckpt, device="cpu")
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    assert model.model_name == "da3-small"
    ln = model.head.scratch.output_conv2_aux[3][2]  # the level the ray head uses gets the stored LayerNorm
    stored = random_state("da3-small", seed=3)[RAY_LN]
    assert np.array_equal(ln.weight.numpy(), stored)


def test_missing_key_is_listed(tmp_path, small_ckpt):
    folder = _copy_with(tmp_path, small_ckpt, lambda s: s.pop("model.cam_dec.fc_t.weight"))
    with pytest.raises(CheckpointError, match=r"1 missing: cam_dec\.fc_t\.weight"):
        load_model(folder)


def test_unexpected_key_is_listed(tmp_path, small_ckpt):
    def add(s):
        s["model.head.extra_layer.weight"] = np.zeros(3, np.float32)

    with pytest.raises(CheckpointError, match=r"1 unexpected: model\.head\.extra_layer\.weight"):
        load_model(_copy_with(tmp_path, small_ckpt, add))


def test_wrong_shape_is_listed(tmp_path, small_ckpt):
    def bad(s):
        s["model.cam_dec.fc_t.weight"] = np.zeros((4, 768), np.float32)

    with pytest.raises(CheckpointError, match=r"wrong shape: model\.cam_dec\.fc_t\.weight: file \[4, 768\]"):
        load_model(_copy_with(tmp_path, small_ckpt, bad))


def test_aliases_may_also_be_stored(tmp_path, small_ckpt):
    """Files written with every key (no alias map) load too."""

    def add_aliases(s):
        for level in (1, 2, 3):
            for leaf in ("weight", "bias"):
                s[f"model.head.scratch.output_conv2_aux.{level}.2.{leaf}"] = s[
                    f"model.head.scratch.output_conv2_aux.0.2.{leaf}"
                ]

    load_model(_copy_with(tmp_path, small_ckpt, add_aliases, metadata=None))


def test_pickle_checkpoints_are_refused(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_name": "da3-small"}))
    with open(folder / "model.pth", "wb") as f:
        pickle.dump({"x": 1}, f)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(folder)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(folder / "model.pth")


def test_not_a_safetensors_file(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_name": "da3-small"}))
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model(folder)


def test_unknown_model_name_and_missing_files(tmp_path, small_ckpt):
    folder = _copy_with(tmp_path, small_ckpt, config={"model_name": "da4-tiny"})
    with pytest.raises(CheckpointError, match="known models: da3-small"):
        load_model(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="lacks config.json and model.safetensors"):
        load_model(empty)
    with pytest.raises(CheckpointError, match="neither an existing folder nor a hub id"):
        load_model(tmp_path / "does-not-exist")


def test_offline_and_not_cached_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint("depth-anything/DA3-SMALL", cache_dir=str(tmp_path / "hub"))
    msg = str(err.value)
    assert str(tmp_path / "hub") in msg and "config.json and model.safetensors in a folder" in msg


def test_network_not_allowed_is_offline(tmp_path):
    with pytest.raises(CheckpointError, match="not in the local cache"):
        resolve_checkpoint("depth-anything/DA3-SMALL", cache_dir=str(tmp_path), allow_download=False)


def test_hub_id_loads_from_the_cache(tmp_path, small_ckpt, monkeypatch):
    """A repo id resolves through huggingface_hub's cache layout, honouring the revision."""
    commit = "e08cab65ca0ec38e7826075418411ab90cab4da3"
    repo = tmp_path / "hub" / "models--depth-anything--DA3-SMALL"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(small_ckpt / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = resolve_checkpoint("depth-anything/DA3-SMALL", cache_dir=str(tmp_path / "hub"))
    assert files.folder == snapshot and files.model_name == "da3-small"
    model = load_model("depth-anything/DA3-SMALL", cache_dir=str(tmp_path / "hub"), revision=commit)
    assert model.source == "depth-anything/DA3-SMALL"


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_keeps_geometry_in_fp32(small_ckpt, dtype):
    """Backbone matmul weights are stored in the run precision; everything else stays fp32 and the
    outputs stay close to the fp32 ones."""
    low = load_model(small_ckpt, device="cpu", dtype=dtype)
    full = load_model(small_ckpt, device="cpu", dtype="fp32")
    want = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    assert low.backbone.blocks[0].attn.qkv.weight.dtype == want
    assert low.backbone.blocks[0].norm1.weight.dtype == torch.float32
    assert low.head.scratch.output_conv1.weight.dtype == torch.float32
    x = torch.randn(1, 2, 3, 98, 140, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = low(x), full(x)
    assert a["head_depth"].dtype == torch.float32
    rel = ((a["head_depth"] - b["head_depth"]).abs() / b["head_depth"]).median()
    assert rel < 0.05, f"median relative depth change {rel:.3g} in {dtype}"
    nbytes = lambda m: sum(p.numel() * p.element_size() for p in m.parameters())  # noqa: E731
    assert nbytes(low.backbone) < 0.55 * nbytes(full.backbone)  # the bulk of the model is halved


def test_unknown_precision_and_device(small_ckpt):
    with pytest.raises(CheckpointError, match="use fp32, bf16 or fp16"):
        load_model(small_ckpt, dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointError, match="sees no CUDA GPU"):
            load_model(small_ckpt, device="cuda")


def test_loading_does_not_need_twice_the_model_in_memory(tmp_path):
    """Tensors are read one at a time into the network (no mmap, no full state dict beside it)."""
    import subprocess
    import sys

    folder = write_random_checkpoint(tmp_path / "base", "da3-base", seed=0)
    size_mb = (folder / "model.safetensors").stat().st_size / 2**20
    code = (
        "import resource, sys; sys.path.insert(0, '.'); import torch; import engine.model.loading\n"
        "from engine.weights import load_model\n"
        "rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        f"before = rss(); model = load_model({str(folder)!r}, device='cpu'); print(before, rss())"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(float, run.stdout.split())
    assert after - before < 1.25 * size_mb, (
        f"loading {size_mb:.0f} MB took {after - before:.0f} MB of peak memory"
    )
