"""Results of the splatting tools: classification (checkpoints refused), finding the dataset and
nerfstudio's run, undoing nerfstudio's dataparser normalisation, and splats bound to mesh faces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.formats.datasets.results import (
    ResultError,
    classify_result,
    dataparser_to_dataset,
    find_dataparser_transforms,
    find_dataset,
    sugar_companion,
)
from engine.formats.gaussians_ply import SplatTable, write_splat_table
from engine.formats.mesh_ply import write_mesh_ply
from engine.formats.ply import PlyError
from engine.geometry.cameras import quaternion_wxyz_to_matrix
from engine.geometry.mesh import Mesh
from engine.geometry.splat_binding import bind_splats, bound_positions, bound_rotations


def _rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def _splats(m, rng):
    return SplatTable(
        means=rng.normal(size=(m, 3)).astype(np.float32),
        log_scales=rng.normal(size=(m, 3)).astype(np.float32),
        quaternions=rng.normal(size=(m, 4)).astype(np.float32),
        sh=rng.normal(size=(m, 3, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=m).astype(np.float32),
    )


def test_classify(tmp_path):
    rng = np.random.default_rng(0)
    write_splat_table(tmp_path / "splat.ply", _splats(5, rng))
    write_mesh_ply(tmp_path / "mesh.ply", Mesh(rng.normal(size=(3, 3)), [[0, 1, 2]]))
    (tmp_path / "points.ply").write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nend_header\n"
    )
    assert classify_result(tmp_path / "splat.ply") == "splats"
    assert classify_result(tmp_path / "mesh.ply") == "mesh"
    assert classify_result(tmp_path / "a.obj") == "obj"
    with pytest.raises(PlyError, match="neither"):
        classify_result(tmp_path / "points.ply")
    for name in ("sugarfine.pt", "step-000029999.ckpt"):
        (tmp_path / name).write_bytes(b"\x80\x04")
        with pytest.raises(ResultError, match="never opened"):
            classify_result(tmp_path / name)


def test_find_dataset_and_runs(tmp_path):
    dataset = tmp_path / "ds"
    run = dataset / "outputs" / "ds" / "splatfacto" / "2025-01-01_000000"
    run.mkdir(parents=True)
    (dataset / "da3_dataset.json").write_text("{}")
    (run / "dataparser_transforms.json").write_text("{}")
    splat = dataset / "exports" / "splat.ply"
    assert find_dataset(splat) == dataset
    assert find_dataset(tmp_path / "elsewhere" / "x.obj") is None
    assert find_dataset(tmp_path / "elsewhere" / "x.obj", hint=dataset / "da3_dataset.json") == dataset
    assert find_dataparser_transforms(splat, dataset) == run / "dataparser_transforms.json"
    assert find_dataparser_transforms(run / "splat.ply", dataset) == run / "dataparser_transforms.json"
    assert find_dataparser_transforms(tmp_path / "x" / "splat.ply", None) is None


def test_sugar_companion(tmp_path):
    mesh = tmp_path / "output" / "refined_mesh" / "scene" / "sugarfine_x.obj"
    ply = tmp_path / "output" / "refined_ply" / "scene" / "sugarfine_x.ply"
    for p in (mesh, ply):
        p.parent.mkdir(parents=True)
        p.write_text("")
    assert sugar_companion(mesh) == ply and sugar_companion(ply) == mesh
    assert sugar_companion(tmp_path / "a.obj") is None


@pytest.mark.parametrize("applied", [None, "json", "colmap"])
def test_dataparser_inverse(tmp_path, applied):
    """nerfstudio's forward map (its dataparser: applied_transform, then the orientation/centring
    transform, then the scale) undone exactly."""
    rng = np.random.default_rng(1)
    transform = np.hstack([_rotation(rng), rng.normal(size=(3, 1))])
    scale = 0.37
    a = np.eye(4)
    meta = {"frames": []}
    if applied == "json":
        a[:3] = np.hstack([_rotation(rng), np.zeros((3, 1))])
        meta["applied_transform"] = a[:3].tolist()
    elif applied == "colmap":
        a[:3] = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]]
        (tmp_path / "colmap" / "sparse" / "0").mkdir(parents=True)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    dp = tmp_path / "dataparser_transforms.json"
    dp.write_text(json.dumps({"transform": transform.tolist(), "scale": scale}))
    p_dataset = rng.normal(size=(100, 3))  # transforms.json world ("saved coordinates")
    p_orig = (np.linalg.inv(a) @ np.c_[p_dataset, np.ones(100)].T).T  # nerfstudio's original coordinates
    p_ns = scale * (transform @ p_orig.T).T  # p_ns = scale * (T @ [p; 1])
    back = dataparser_to_dataset(dp, tmp_path)
    np.testing.assert_allclose((back @ np.c_[p_ns, np.ones(100)].T).T[:, :3], p_dataset, atol=1e-12)


def test_dataparser_file_errors(tmp_path):
    bad = tmp_path / "dataparser_transforms.json"
    bad.write_text('{"transform": [[1, 0, 0]], "scale": 1}')
    with pytest.raises(ResultError, match="3x4"):
        dataparser_to_dataset(bad, None)


def test_bound_splats_follow_rigid_and_stay_put():
    rng = np.random.default_rng(2)
    verts = rng.normal(size=(50, 3))
    faces = rng.integers(0, 50, size=(40, 3))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    m = 500
    face = rng.integers(0, len(faces), m)
    means = rng.normal(size=(m, 3))
    quats = rng.normal(size=(m, 4))
    b = bind_splats(verts, faces, face, means, quats)
    np.testing.assert_allclose(bound_positions(verts, faces, b), means, atol=1e-4)
    unit = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    got = bound_rotations(verts, faces, b)
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs((got * unit).sum(1)), 1.0, atol=1e-5)
    r, t = _rotation(rng), rng.normal(size=3)
    moved = verts @ r.T + t
    np.testing.assert_allclose(bound_positions(moved, faces, b), means @ r.T + t, atol=1e-4)
    turned = quaternion_wxyz_to_matrix(bound_rotations(moved, faces, b))
    np.testing.assert_allclose(turned, r @ quaternion_wxyz_to_matrix(quats), atol=1e-5)
