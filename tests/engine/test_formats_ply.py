"""Point PLY: our writer read by plyfile, and our reader on files written by plyfile (all encodings)."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from engine.formats.ply import PlyError, read_ply, read_ply_header, write_points_ply, write_vertex_ply


def cloud(m: int = 257, seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(m, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (m, 3), dtype=np.uint8)
    conf = rng.uniform(0, 10, m).astype(np.float32)
    return xyz, rgb, conf


def test_plyfile_reads_our_points_exactly(tmp_path):
    xyz, rgb, conf = cloud()
    view = np.arange(len(xyz), dtype=np.int32) % 7
    path = write_points_ply(tmp_path / "points.ply", xyz, rgb, conf, extra={"view": view})
    ply = PlyData.read(str(path))
    assert ply.text is False and ply.byte_order == "<"
    v = ply["vertex"]
    assert [p.name for p in v.properties] == ["x", "y", "z", "red", "green", "blue", "confidence", "view"]
    assert [v.data.dtype[p.name].str for p in v.properties] == ["<f4"] * 3 + ["|u1"] * 3 + ["<f4", "<i4"]
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), xyz)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), rgb)
    np.testing.assert_array_equal(v["confidence"], conf)
    np.testing.assert_array_equal(v["view"], view)


def test_round_trip_with_our_reader_and_optional_columns(tmp_path):
    xyz, rgb, conf = cloud(10)
    only_xyz = read_ply(write_points_ply(tmp_path / "a.ply", xyz))
    assert list(only_xyz) == ["x", "y", "z"]
    back = read_ply(write_points_ply(tmp_path / "b.ply", xyz.astype(np.float64), rgb, conf))
    np.testing.assert_array_equal(back["x"], xyz[:, 0])
    np.testing.assert_array_equal(back["blue"], rgb[:, 2])
    empty = read_ply(write_points_ply(tmp_path / "c.ply", np.zeros((0, 3))))
    assert empty["x"].shape == (0,)


def _plyfile_write(path, data: np.ndarray, text=False, byte_order="<", faces: bool = False, first=None):
    elements = []
    if first is not None:
        elements.append(PlyElement.describe(first, "camera"))
    elements.append(PlyElement.describe(data, "vertex"))
    if faces:
        f = np.empty(2, dtype=[("vertex_indices", "i4", (3,))])
        f["vertex_indices"] = [[0, 1, 2], [2, 3, 0]]
        elements.append(PlyElement.describe(f, "face"))
    PlyData(elements, text=text, byte_order=byte_order, comments=["written by plyfile"]).write(str(path))


def _mixed_vertices(m: int = 20) -> np.ndarray:
    rng = np.random.default_rng(1)
    dt = [
        ("x", "f4"),
        ("y", "f4"),
        ("z", "f4"),
        ("nx", "f8"),
        ("s", "i2"),
        ("u", "u2"),
        ("k", "i1"),
        ("w", "u4"),
    ]
    data = np.empty(m, dt)
    for name, t in dt:
        info = np.iinfo(t) if np.dtype(t).kind in "iu" else None
        data[name] = rng.integers(info.min, info.max, m) if info else rng.normal(size=m)
    return data


@pytest.mark.parametrize(
    ("text", "order"), [(False, "<"), (False, ">"), (True, "=")], ids=["binary_le", "binary_be", "ascii"]
)
@pytest.mark.parametrize("faces", [False, True], ids=["points", "with_faces"])
def test_our_reader_on_plyfile_files(tmp_path, text, order, faces):
    data = _mixed_vertices()
    path = tmp_path / "in.ply"
    _plyfile_write(path, data, text=text, byte_order=order, faces=faces)
    got = read_ply(path)
    assert list(got) == list(data.dtype.names)
    for name in data.dtype.names:
        assert got[name].dtype == data.dtype[name].newbyteorder("=")
        if text and data.dtype[name].kind == "f":
            np.testing.assert_allclose(got[name], data[name], rtol=1e-6)
        else:
            np.testing.assert_array_equal(got[name], data[name])
    assert "written by plyfile" in read_ply_header(path).comments


def test_fixed_size_element_before_the_vertices_is_skipped(tmp_path):
    cam = np.zeros(2, [("view", "i4"), ("fx", "f8")])
    cam["fx"] = [500, 600]
    data = _mixed_vertices(5)
    for text in (False, True):
        path = tmp_path / f"cam_first_{text}.ply"
        _plyfile_write(path, data, text=text, first=cam)
        np.testing.assert_array_equal(read_ply(path)["w"], data["w"])


def test_a_3dgs_file_with_extra_properties(tmp_path):
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(45)] + ["opacity", "scale_0", "scale_1", "scale_2"]
    names += ["rot_0", "rot_1", "rot_2", "rot_3", "filter_3D"]
    data = np.zeros(100, [(n, "f4") for n in names])
    data["f_rest_44"] = np.arange(100)
    path = tmp_path / "point_cloud.ply"
    _plyfile_write(path, data)
    got = read_ply(path)
    assert list(got) == names
    np.testing.assert_array_equal(got["f_rest_44"], np.arange(100))


def test_broken_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_ply(tmp_path / "missing.ply")
    (tmp_path / "not.ply").write_text("hello\n")
    with pytest.raises(PlyError, match="not a PLY"):
        read_ply(tmp_path / "not.ply")
    path = write_points_ply(tmp_path / "t.ply", *cloud(100))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PlyError, match="truncated"):
        read_ply(path)
    _plyfile_write(tmp_path / "nov.ply", np.zeros(1, [("a", "f4")]))
    (tmp_path / "nov.ply").write_bytes((tmp_path / "nov.ply").read_bytes().replace(b"vertex", b"camera"))
    with pytest.raises(PlyError, match="no 'vertex' element"):
        read_ply(tmp_path / "nov.ply")


def test_bad_input_to_the_writer():
    with pytest.raises(ValueError, match="xyz must have shape"):
        write_points_ply("x.ply", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="uint8"):
        write_points_ply("x.ply", np.zeros((4, 3)), rgb=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="has 3 values"):
        write_vertex_ply("x.ply", {"a": np.zeros(4), "b": np.zeros(3)})
