"""Wavefront OBJ meshes with their materials (numpy only): what SuGaR (pytorch3d ``save_obj``), Blender and
most tools write — ``v`` (with optional ``r g b``), ``vt``, ``f`` in any of the ``v``, ``v/vt``,
``v/vt/vn``, ``v//vn`` forms (polygons fanned into triangles, negative indices resolved), ``usemtl`` and
``mtllib`` with each material's ``Kd`` and ``map_Kd`` texture.

Fast without a per-line Python loop: lines are classified from their first bytes, each run of lines of
one kind is cut out of the file as one byte string and parsed by ``np.fromstring`` in one call.
Normals are not read (the importer smooths the triangles itself). A malformed or cut-off file raises
``ObjError`` saying where.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ObjError", "ObjMaterial", "ObjMesh", "read_obj"]

_NL, _SP, _TAB = 10, 32, 9


class ObjError(ValueError):
    """An OBJ (or its .mtl) that cannot be read; the message says what is wrong and where."""


@dataclass(frozen=True)
class ObjMaterial:
    name: str
    texture: Path | None = None  # map_Kd, absolute; None when the material has none
    diffuse: tuple[float, float, float] | None = None  # Kd
    missing_texture: str | None = None  # map_Kd named a file that is not there


@dataclass(frozen=True)
class ObjMesh:
    """Triangles with per-corner texture coordinates.

    vertices (V, 3) float32; faces (F, 3) int32; colors (V, 3) uint8 sRGB or None (``v x y z r g b``);
    uv (T, 2) float32 (v up, as OBJ and Blender have it) with face_uv (F, 3) int32 into it, or both None;
    material_index (F,) int32 into ``materials`` (faces before any ``usemtl``: 0, then ``materials`` has
    a default first entry).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    face_uv: np.ndarray | None = None
    material_index: np.ndarray | None = None
    materials: list[ObjMaterial] = field(default_factory=list)

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


def _parse(text: bytes, dtype, what: str, path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.fromstring(text, dtype=dtype, sep=" ")
        except (DeprecationWarning, ValueError) as exc:
            raise ObjError(f"{path}: the {what} lines hold something that is not a number ({exc})") from None


def _runs(kind: np.ndarray, value: int) -> np.ndarray:
    """(R, 2) [first, last + 1) line ranges where ``kind == value``."""
    hit = np.concatenate([[False], kind == value, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(hit))
    return edges.reshape(-1, 2)


def _block(data: bytes, starts: np.ndarray, ends: np.ndarray, runs: np.ndarray) -> bytes:
    return b"\n".join(data[starts[a] : ends[b - 1]] for a, b in runs)


def read_obj(path: str | os.PathLike) -> ObjMesh:
    """Read an OBJ and its materials (``mtllib``, resolved next to the file)."""
    path = Path(path)
    data = path.read_bytes().replace(b"\r", b" ")
    if not data:
        raise ObjError(f"{path} is empty")
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == _NL)
    starts = np.concatenate([[0], ends + 1])
    ends = np.concatenate([ends, [len(buf)]])
    keep = starts < ends
    starts, ends = starts[keep], ends[keep]
    padded = np.concatenate([buf, np.zeros(3, np.uint8)])
    c0, c1, c2 = padded[starts], padded[starts + 1], padded[starts + 2]
    blank1 = (c1 == _SP) | (c1 == _TAB)
    blank2 = (c2 == _SP) | (c2 == _TAB)
    kind = np.zeros(len(starts), np.int8)  # 0 other, 1 v, 2 vt, 3 f, 4 usemtl, 5 mtllib
    kind[(c0 == ord("v")) & blank1] = 1
    kind[(c0 == ord("v")) & (c1 == ord("t")) & blank2] = 2
    kind[(c0 == ord("f")) & blank1] = 3
    kind[(c0 == ord("u")) & (c1 == ord("s"))] = 4
    kind[(c0 == ord("m")) & (c1 == ord("t"))] = 5

    counts = [int((kind == k).sum()) for k in (1, 2, 3)]
    nv, nt, nf = counts
    if nv == 0 or nf == 0:
        raise ObjError(f"{path} holds {nv} vertices and {nf} faces: not a mesh")

    # vertices: 3 numbers each, 6 with a colour (4 or 7 with a w we drop)
    vtext = _block(data, starts, ends, _runs(kind, 1)).replace(b"v", b" ")
    values = _parse(vtext, np.float64, "vertex", path)
    width = values.size // nv if values.size % nv == 0 else 0
    if width not in (3, 4, 6, 7):
        raise ObjError(f"{path}: the vertex lines do not all hold 3 (or 6, with a colour) numbers")
    values = values.reshape(nv, width)
    vertices = values[:, :3].astype(np.float32)
    if not np.isfinite(vertices).all():
        raise ObjError(f"{path}: some vertex positions are not finite numbers")
    colors = None
    if width >= 6:
        rgb = values[:, width - 3 :]
        colors = np.clip(np.round(rgb * (255.0 if rgb.max(initial=0.0) <= 1.0 else 1.0)), 0, 255)
        colors = colors.astype(np.uint8)

    uv = None
    if nt:
        ttext = _block(data, starts, ends, _runs(kind, 2)).replace(b"vt", b"  ")
        values = _parse(ttext, np.float64, "texture coordinate", path)
        twidth = values.size // nt if values.size % nt == 0 else 0
        if twidth not in (2, 3):
            raise ObjError(f"{path}: the vt lines do not all hold 2 (or 3) numbers")
        uv = values.reshape(nt, twidth)[:, :2].astype(np.float32)

    faces, face_uv, face_lines = _faces(data, starts, ends, kind, path, nv, nt)
    names, material_index = _usemtl(data, starts, ends, kind, face_lines)
    materials = _materials(data, starts, ends, kind, path, names)
    return ObjMesh(vertices, faces, colors, uv, face_uv, material_index, materials)


def _faces(data, starts, ends, kind, path, nv, nt):
    """(F, 3) vertex and texture indices (0-based) of the fanned triangles, and each one's line."""
    first = int(np.flatnonzero(kind == 3)[0])
    corner = data[starts[first] : ends[first]].split()[1]
    slots = corner.split(b"/")
    has_vt = len(slots) >= 2 and slots[1] != b""
    per_corner = len([s for s in slots if s != b""])  # numbers per corner: 1, 2 (v/vt or v//vn), 3
    runs = _runs(kind, 3)
    text = _block(data, starts, ends, runs).replace(b"f", b" ").replace(b"/", b" ")
    values = _parse(text, np.int64, "face", path)
    line_index = np.flatnonzero(kind == 3)
    nlines = len(line_index)
    if values.size == nlines * 3 * per_corner:
        sizes = np.full(nlines, 3, np.int64)
    else:  # polygons (or a form change): count the numbers on each face line
        tb = np.frombuffer(text, np.uint8)
        word = (tb != _SP) & (tb != _TAB) & (tb != _NL)
        begin = word & ~np.concatenate([[False], word[:-1]])
        line_of = np.cumsum(tb == _NL)[begin]
        numbers = np.bincount(line_of, minlength=nlines)
        if numbers.size != nlines or values.size != numbers.sum() or (numbers % per_corner).any():
            raise ObjError(
                f"{path}: the face lines do not all use the same 'v/vt/vn' form, or one is cut off"
            )
        sizes = numbers // per_corner
        if (sizes < 3).any():
            raise ObjError(
                f"{path}: a face has fewer than 3 corners (line {int(line_index[sizes < 3][0]) + 1})"
            )
    table = values.reshape(-1, per_corner)
    vidx, tidx = table[:, 0], (table[:, 1] if has_vt else None)
    if (vidx < 0).any() or (tidx is not None and (tidx < 0).any()):  # relative: count from the line's past
        kinds_before = np.cumsum(np.stack([kind == 1, kind == 2]), axis=1)[:, line_index]
        corner_line = np.repeat(np.arange(nlines), sizes)
        vidx = np.where(vidx < 0, kinds_before[0][corner_line] + vidx + 1, vidx)
        if tidx is not None:
            tidx = np.where(tidx < 0, kinds_before[1][corner_line] + tidx + 1, tidx)
    vidx = vidx - 1
    if vidx.min() < 0 or vidx.max() >= nv:
        raise ObjError(f"{path}: a face names a vertex outside 1..{nv}")
    if tidx is not None:
        tidx = tidx - 1
        if tidx.min() < 0 or tidx.max() >= nt:
            raise ObjError(f"{path}: a face names a texture coordinate outside 1..{nt}")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    tris = sizes - 2
    face_line = np.repeat(np.arange(nlines), tris)
    j = np.arange(int(tris.sum())) - np.repeat(np.cumsum(tris) - tris, tris)  # triangle within its polygon
    base = offsets[face_line]
    corners = np.stack([base, base + j + 1, base + j + 2], axis=1)
    faces = vidx[corners].astype(np.int32)
    face_uv = tidx[corners].astype(np.int32) if tidx is not None else None
    return faces, face_uv, line_index[face_line]


def _usemtl(data, starts, ends, kind, face_lines):
    lines = np.flatnonzero(kind == 4)
    if len(lines) == 0:
        return [], None
    names = [b" ".join(data[starts[i] : ends[i]].split()[1:]).decode("utf-8", "replace") for i in lines]
    unique = list(dict.fromkeys(names))
    slot = np.searchsorted(lines, face_lines) - 1  # the last usemtl above each face; -1: none
    lookup = np.array([unique.index(n) for n in names], np.int32)
    if (slot < 0).any():
        unique.insert(0, "")
        lookup += 1
        index = np.where(slot < 0, 0, lookup[np.maximum(slot, 0)])
    else:
        index = lookup[slot]
    return unique, index.astype(np.int32)


def _materials(data, starts, ends, kind, path: Path, names: list[str]) -> list[ObjMaterial]:
    found: dict[str, ObjMaterial] = {}
    for i in np.flatnonzero(kind == 5):
        parts = data[starts[i] : ends[i]].split(maxsplit=1)
        if len(parts) == 2 and parts[0] == b"mtllib":
            found.update(_read_mtl(path.parent / parts[1].strip().decode("utf-8", "replace")))
    return [found.get(n, ObjMaterial(n or "Material")) for n in names]


def _read_mtl(mtl: Path) -> dict[str, ObjMaterial]:
    """name → material of a .mtl (Kd and map_Kd only; a missing .mtl gives none)."""
    if not mtl.is_file():
        return {}
    out: dict[str, dict] = {}
    current = None
    for raw in mtl.read_text("utf-8", "replace").splitlines():
        parts = raw.strip().split()
        if not parts:
            continue
        key = parts[0]
        if key == "newmtl" and len(parts) > 1:
            current = " ".join(parts[1:])
            out[current] = {"name": current}
        elif current is None:
            continue
        elif key == "Kd" and len(parts) >= 4:
            try:
                out[current]["diffuse"] = tuple(float(v) for v in parts[1:4])
            except ValueError:
                raise ObjError(f"{mtl}: 'Kd' must be three numbers, got {raw.strip()!r}") from None
        elif key == "map_Kd" and len(parts) > 1:
            texture = (mtl.parent / parts[-1]).resolve()  # options (-s, -o …) come before the file name
            if texture.is_file():
                out[current]["texture"] = texture
            else:
                out[current]["missing_texture"] = str(texture)
    return {name: ObjMaterial(**fields) for name, fields in out.items()}
