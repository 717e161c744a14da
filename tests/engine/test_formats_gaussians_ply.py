"""3DGS PLY: the standard layout (checked with plyfile), activations, and files from other tools."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from engine.formats.gaussians_ply import Gaussians, read_gaussians_ply, write_gaussians_ply
from engine.formats.ply import PlyError


def gaussians(m: int = 50, k: int = 9, seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    rot = rng.normal(size=(m, 4)).astype(np.float32)
    return Gaussians(
        means=rng.normal(size=(m, 3)).astype(np.float32),
        scales=rng.uniform(1e-3, 0.5, (m, 3)).astype(np.float32),
        rotations=(rot / np.linalg.norm(rot, axis=1, keepdims=True)).astype(np.float32),
        sh=rng.normal(size=(m, 3, k)).astype(np.float32),
        opacities=rng.uniform(0.01, 0.99, m).astype(np.float32),
    )


def write(path, g: Gaussians):
    return write_gaussians_ply(path, g.means, g.scales, g.rotations, g.sh, g.opacities)


def test_layout_matches_3dgs_as_read_by_plyfile(tmp_path):
    g = gaussians(k=16)  # SH degree 3: 45 f_rest
    v = PlyData.read(str(write(tmp_path / "g.ply", g)))["vertex"]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(45)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    expected += ["rot_0", "rot_1", "rot_2", "rot_3"]
    assert [p.name for p in v.properties] == expected
    assert all(v.data.dtype[n].str == "<f4" for n in expected)
    np.testing.assert_array_equal(v["nx"], 0)
    np.testing.assert_allclose(v["opacity"], np.log(g.opacities / (1 - g.opacities)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v["scale_2"], np.log(g.scales[:, 2]), rtol=1e-6)
    np.testing.assert_array_equal(v["rot_0"], g.rotations[:, 0])  # w first
    np.testing.assert_array_equal(v["f_dc_1"], g.sh[:, 1, 0])
    # channel-major f_rest: index c*(K-1) + (k-1)
    for c, k in [(0, 1), (0, 15), (1, 1), (2, 7), (2, 15)]:
        np.testing.assert_array_equal(v[f"f_rest_{c * 15 + k - 1}"], g.sh[:, c, k])


@pytest.mark.parametrize("k", [1, 4, 9, 16])
def test_round_trip_any_degree(tmp_path, k):
    g = gaussians(k=k, seed=k)
    back = read_gaussians_ply(write(tmp_path / "g.ply", g))
    assert back.sh.shape == (50, 3, k) and back.sh_degree == int(np.sqrt(k)) - 1
    np.testing.assert_array_equal(back.means, g.means)
    np.testing.assert_array_equal(back.sh, g.sh)
    np.testing.assert_allclose(back.scales, g.scales, rtol=1e-6)
    np.testing.assert_allclose(back.opacities, g.opacities, rtol=1e-5)
    np.testing.assert_allclose(back.rotations, g.rotations, atol=1e-6)


def _foreign(path, names, values: dict, m: int):
    data = np.zeros(m, [(n, "f4") for n in names])
    for n, val in values.items():
        data[n] = val
    PlyData([PlyElement.describe(data, "vertex")]).write(str(path))


def test_reads_da3_dc_only_files_and_normalises_rotations(tmp_path):
    """Official DA3 gs_ply: no f_rest; graphdeco keeps quaternions unnormalised."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    names += ["scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    m = 4
    _foreign(
        tmp_path / "0000.ply",
        names,
        {"x": [1, 2, 3, 4], "f_dc_2": 0.5, "opacity": [0, 100, -100, 2], "scale_0": np.log(0.25), "rot_0": 2},
        m,
    )
    g = read_gaussians_ply(tmp_path / "0000.ply")
    assert g.sh.shape == (m, 3, 1)
    np.testing.assert_array_equal(g.means[:, 0], [1, 2, 3, 4])
    np.testing.assert_allclose(g.opacities, [0.5, 1.0, 0.0, 1 / (1 + np.exp(-2))], rtol=1e-6)
    np.testing.assert_allclose(g.scales[:, 0], 0.25, rtol=1e-6)
    np.testing.assert_allclose(g.rotations, [[1, 0, 0, 0]] * m)
    np.testing.assert_allclose(g.base_colors()[:, 2], 0.5 + 0.28209479177387814 * 0.5, rtol=1e-6)


def test_reads_files_with_reordered_and_extra_properties(tmp_path):
    """gsplat/nerfstudio-style files: other property order, extra fields, zero quaternions."""
    names = ["x", "y", "z", "opacity", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(9)] + ["rot_0", "rot_1", "rot_2", "rot_3"]
    names += ["scale_0", "scale_1", "scale_2", "semantic_id"]
    vals = {f"f_rest_{i}": i for i in range(9)}
    _foreign(tmp_path / "splat.ply", names, {**vals, "rot_3": [0, 3]}, 2)
    g = read_gaussians_ply(tmp_path / "splat.ply")
    assert g.sh.shape == (2, 3, 4)
    np.testing.assert_array_equal(g.sh[0, :, 1:], np.arange(9).reshape(3, 3))  # channel-major
    np.testing.assert_allclose(g.rotations, [[1, 0, 0, 0], [0, 0, 0, 1]])


def test_a_plain_point_cloud_is_not_taken_for_gaussians(tmp_path):
    _foreign(tmp_path / "points.ply", ["x", "y", "z", "red"], {}, 3)
    with pytest.raises(PlyError, match="not a 3D Gaussian splat PLY"):
        read_gaussians_ply(tmp_path / "points.ply")


def test_bad_shapes_are_rejected(tmp_path):
    g = gaussians()
    with pytest.raises(ValueError, match="harmonics"):
        write_gaussians_ply(tmp_path / "x.ply", g.means, g.scales, g.rotations, g.sh[:, :2], g.opacities)
    with pytest.raises(ValueError, match="rotations_wxyz"):
        write_gaussians_ply(tmp_path / "x.ply", g.means, g.scales, g.rotations[:, :3], g.sh, g.opacities)


def test_damaged_splat_files_are_refused_with_what_is_wrong(tmp_path):
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2"]
    names += ["rot_0", "rot_1", "rot_2", "rot_3"]
    _foreign(tmp_path / "nan.ply", names, {"x": [0, np.nan, 2], "scale_1": [np.inf, 0, 0], "rot_0": 1}, 3)
    with pytest.raises(PlyError, match=r"2 of 3 splats hold NaN or infinite values \(x, scale_1\)"):
        read_gaussians_ply(tmp_path / "nan.ply")
    odd = names + [f"f_rest_{i}" for i in range(12)]  # 5 coefficients per colour: no SH degree
    _foreign(tmp_path / "odd.ply", odd, {"rot_0": 1}, 2)
    with pytest.raises(PlyError, match="no degree 0-3 set"):
        read_gaussians_ply(tmp_path / "odd.ply")
    _foreign(tmp_path / "cut.ply", names, {"rot_0": 1}, 50)
    data = (tmp_path / "cut.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) - 100])  # a download cut short
    with pytest.raises(PlyError, match="truncated"):
        read_gaussians_ply(tmp_path / "cut.ply")
