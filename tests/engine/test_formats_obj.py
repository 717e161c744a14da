"""OBJ reader: the forms SuGaR (pytorch3d save_obj) and Blender write, polygons, negative indices,
materials, and clear errors for broken files."""

from __future__ import annotations

import numpy as np
import pytest

from engine.formats.obj_mesh import ObjError, read_obj


def _write(path, text):
    path.write_text(text)
    return path


def test_sugar_layout_with_texture(tmp_path):
    (tmp_path / "tex.png").write_bytes(b"\x89PNG")
    _write(tmp_path / "m.mtl", "newmtl mesh\nKd 0.5 0.5 0.5\nmap_Kd tex.png\n")
    obj = _write(
        tmp_path / "m.obj",
        "mtllib m.mtl\nusemtl mesh\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0.5\n"
        "vt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\nf 1/1 2/2 3/3\nf 2/2 4/4 3/3\n",
    )
    m = read_obj(obj)
    assert m.faces.tolist() == [[0, 1, 2], [1, 3, 2]]
    assert m.face_uv.tolist() == [[0, 1, 2], [1, 3, 2]]
    np.testing.assert_allclose(m.uv[3], [1, 1])
    np.testing.assert_allclose(m.vertices[3], [1, 1, 0.5])
    assert m.material_index.tolist() == [0, 0]
    assert m.materials[0].name == "mesh" and m.materials[0].texture == (tmp_path / "tex.png").resolve()
    assert m.materials[0].diffuse == (0.5, 0.5, 0.5) and m.colors is None


def test_polygons_normals_negative_indices_colours_and_materials(tmp_path):
    obj = _write(
        tmp_path / "q.obj",
        "# quad and a triangle\no thing\nv 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 1 1 0 0 0 1\nv 0 1 0 1 1 1\n"
        "vn 0 0 1\ns 1\nf 1//1 2//1 3//1 4//1\nusemtl red\nf -4//1 -2//1 -1//1\n",
    )
    m = read_obj(obj)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]
    assert m.face_uv is None and m.uv is None
    assert m.colors.tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]
    assert [mat.name for mat in m.materials] == ["Material", "red"]
    assert m.material_index.tolist() == [0, 0, 1]


def test_mixed_polygon_sizes_with_uv_and_normals(tmp_path):
    verts = "".join(f"v {i} {i * i} 0\nvt {i / 10} 0\n" for i in range(6))
    obj = _write(
        tmp_path / "p.obj", verts + "vn 0 0 1\nf 1/1/1 2/2/1 3/3/1 4/4/1 5/5/1\nf 1/6/1 5/5/1 6/4/1\n"
    )
    m = read_obj(obj)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 5]]
    assert m.face_uv.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4], [5, 4, 3]]


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        ("v 0 0 0\nv 1 0 0\n", "0 faces"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "outside 1..3"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2", "fewer than 3 corners"),
        ("v 0 0 0\nv 1 0 x\nv 0 1 0\nf 1 2 3\n", "not a number"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 1\nf 1 2 3\n", r"3 \(or 6"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/2 3/1\n", "texture coordinate outside"),
    ],
)
def test_broken_files_say_what_is_wrong(tmp_path, text, words):
    with pytest.raises(ObjError, match=words):
        read_obj(_write(tmp_path / "b.obj", text))
