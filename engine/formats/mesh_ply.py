"""Triangle meshes as binary PLY (numpy only): the bundle's ``mesh.ply`` and per-view meshes.

Layout written (what Blender's, trimesh's, Meshlab's and plyfile's readers take)::

    element vertex V:  float x y z, [uchar red green blue], [float s t]
    element face F:    list uchar int vertex_indices   (always 3)

Writing builds the two structured arrays and dumps them with ``tofile``; reading maps a file in this
layout straight onto structured dtypes (``mapped``: a memory map, no copy) and falls back to a
per-face parse for other PLYs (quads and mixed polygons are fanned into triangles).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..geometry.mesh import Mesh
from .ply import PlyError, read_ply_header, read_ply_vertices

__all__ = ["read_mesh_ply", "write_mesh_ply"]

_FACE_DTYPE = np.dtype([("n", "u1"), ("i", "<i4", (3,))])


def write_mesh_ply(path: str | os.PathLike, mesh: Mesh, comments: list[str] | None = None) -> Path:
    """Write ``mesh`` as a binary little-endian PLY (to a temporary name, then renamed)."""
    path = Path(path)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if mesh.colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if mesh.uv is not None:
        fields += [("s", "<f4"), ("t", "<f4")]
    verts = np.empty(mesh.num_vertices, np.dtype(fields))
    for i, axis in enumerate("xyz"):
        verts[axis] = mesh.vertices[:, i]
    if mesh.colors is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            verts[channel] = mesh.colors[:, i]
    if mesh.uv is not None:
        verts["s"], verts["t"] = mesh.uv[:, 0], mesh.uv[:, 1]
    faces = np.empty(mesh.num_faces, _FACE_DTYPE)
    faces["n"] = 3
    faces["i"] = mesh.faces
    names = {"<f4": "float", "u1": "uchar"}
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comments or []]
    lines.append(f"element vertex {mesh.num_vertices}")
    lines += [f"property {names[t]} {n}" for n, t in fields]
    lines += [f"element face {mesh.num_faces}", "property list uchar int vertex_indices", "end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(("\n".join(lines) + "\n").encode("ascii"))
        verts.tofile(fh)
        faces.tofile(fh)
    os.replace(tmp, path)
    return path


def read_mesh_ply(path: str | os.PathLike, *, mapped: bool = False) -> Mesh:
    """A triangle mesh from a PLY: positions, ``red green blue`` colours (uchar, or float 0..1) and
    ``s t`` / ``u v`` texture coordinates when present. ``mapped``: memory-map a native binary file."""
    path = Path(path)
    header = read_ply_header(path)
    verts = read_ply_vertices(path, mapped=mapped)
    names = verts.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise PlyError(f"{path}: the vertices have no x, y, z")
    xyz = np.stack([verts["x"], verts["y"], verts["z"]], axis=1).astype(np.float32, copy=False)
    colors = None
    if {"red", "green", "blue"} <= set(names):
        rgb = np.stack([verts["red"], verts["green"], verts["blue"]], axis=1)
        colors = rgb if rgb.dtype == np.uint8 else np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    uv = None
    for s, t in (("s", "t"), ("u", "v"), ("texture_u", "texture_v")):
        if {s, t} <= set(names):
            uv = np.stack([verts[s], verts[t]], axis=1).astype(np.float32, copy=False)
            break
    faces = _read_faces(path, header, verts.dtype.itemsize, mapped)
    return Mesh(xyz, faces, colors, uv)


def _read_faces(path: Path, header, vertex_itemsize: int, mapped: bool) -> np.ndarray:
    names = [el[0] for el in header.elements]
    if "face" not in names:
        return np.zeros((0, 3), np.int32)
    if header.fmt == "=":
        raise PlyError(f"{path}: ascii meshes are not read here; save it as binary PLY")
    if names[0] != "vertex" or names.index("face") != 1:
        raise PlyError(f"{path}: expected the faces right after the vertices")
    _, count, props = header.elements[1]
    if len(props) != 1 or not isinstance(props[0][1], tuple):
        raise PlyError(f"{path}: the face element must hold one list property of vertex indices")
    _, count_code, item_code = props[0][1]
    offset = header.body_offset + header.elements[0][1] * vertex_itemsize
    order = header.fmt
    fixed = np.dtype([("n", order + count_code), ("i", order + item_code, (3,))])
    size = os.path.getsize(path)
    if size - offset == count * fixed.itemsize:  # every face a triangle: one structured read
        if mapped and np.dtype(order + item_code).isnative:
            table = np.memmap(path, fixed, "r", offset, (count,))
        else:
            table = np.fromfile(path, fixed, count, offset=offset)
        if count and not (table["n"] == 3).all():
            raise PlyError(f"{path}: the face list counts do not match its size")
        return np.asarray(table["i"], np.int32)
    return _fan_faces(np.fromfile(path, np.uint8, offset=offset), count, order, count_code, item_code, path)


def _fan_faces(raw: np.ndarray, count: int, order: str, count_code: str, item_code: str, path) -> np.ndarray:
    """Polygons of any size, fanned into triangles (one pass over the face records)."""
    cdt, idt = np.dtype(order + count_code), np.dtype(order + item_code)
    tris: list[np.ndarray] = []
    pos = 0
    for _ in range(count):
        n = int(raw[pos : pos + cdt.itemsize].view(cdt)[0])
        pos += cdt.itemsize
        idx = raw[pos : pos + n * idt.itemsize].view(idt).astype(np.int32)
        pos += n * idt.itemsize
        if n >= 3:
            tris.append(np.stack([np.full(n - 2, idx[0]), idx[1:-1], idx[2:]], axis=1))
    if pos != raw.size:
        raise PlyError(f"{path}: the faces do not fill the file (truncated or extra data)")
    return np.concatenate(tris).astype(np.int32) if tris else np.zeros((0, 3), np.int32)
