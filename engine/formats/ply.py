"""PLY point clouds: a fast binary writer and a reader for any vertex PLY (numpy only).

Writing builds one numpy structured array and dumps it with a single ``tofile``, so 5 M points take a
fraction of a second. Reading parses the header and maps the vertex element onto a structured dtype
(``binary_little_endian``, ``binary_big_endian`` or ``ascii``), which is how 3DGS files from SuGaR,
gsplat, nerfstudio or the official DA3 exporter (all-float32 ``x y z nx ny nz f_dc_* f_rest_* opacity
scale_* rot_*``, sometimes with extra properties) come in. Elements after the vertices (faces,
edges) are ignored; elements before them are skipped when their size can be computed.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

__all__ = [
    "PlyError",
    "PlyHeader",
    "read_ply",
    "read_ply_header",
    "read_ply_vertices",
    "write_points_ply",
    "write_vertex_ply",
    "write_vertex_table",
]

# PLY scalar type names (both the classic and the sized spellings) → numpy type codes (no byte order).
_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
# numpy kind+size → the PLY name we write
_NUMPY_TO_PLY = {
    "i1": "char",
    "u1": "uchar",
    "i2": "short",
    "u2": "ushort",
    "i4": "int",
    "u4": "uint",
    "f4": "float",
    "f8": "double",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}


class PlyError(ValueError):
    """The file is not a PLY we can read (the message says why)."""


class PlyHeader:
    """Parsed PLY header: ``fmt`` ('<', '>' or '=' for ascii), ``elements`` as
    ``[(name, count, [(prop, type_code | ('list', count_code, item_code))...])]``, comments and the
    byte offset where the body starts."""

    def __init__(self, fmt: str, elements: list, comments: list[str], body_offset: int):
        self.fmt = fmt
        self.elements = elements
        self.comments = comments
        self.body_offset = body_offset

    def element(self, name: str):
        for el in self.elements:
            if el[0] == name:
                return el
        return None


def read_ply_header(path: str | os.PathLike) -> PlyHeader:
    """Parse only the header of a PLY file."""
    path = Path(path)
    with open(path, "rb") as fh:
        first = fh.readline()
        if first.strip() != b"ply":
            raise PlyError(f"{path} is not a PLY file (it does not start with 'ply')")
        fmt = None
        elements: list = []
        comments: list[str] = []
        while True:
            raw = fh.readline()
            if not raw:
                raise PlyError(f"{path}: the PLY header has no 'end_header' line (truncated file?)")
            words = raw.decode("latin-1").split()
            if not words:
                continue
            key = words[0]
            if key == "end_header":
                break
            if key == "format":
                if len(words) < 2 or words[1] not in _FORMATS:
                    raise PlyError(f"{path}: unsupported PLY format line {raw!r}")
                fmt = _FORMATS[words[1]]
            elif key in ("comment", "obj_info"):
                comments.append(" ".join(words[1:]))
            elif key == "element":
                if len(words) != 3:
                    raise PlyError(f"{path}: bad element line {raw!r}")
                elements.append((words[1], int(words[2]), []))
            elif key == "property":
                if not elements:
                    raise PlyError(f"{path}: property before any element: {raw!r}")
                props = elements[-1][2]
                if words[1] == "list":
                    if len(words) != 5 or words[2] not in _PLY_TYPES or words[3] not in _PLY_TYPES:
                        raise PlyError(f"{path}: bad list property {raw!r}")
                    props.append((words[4], ("list", _PLY_TYPES[words[2]], _PLY_TYPES[words[3]])))
                else:
                    if len(words) != 3 or words[1] not in _PLY_TYPES:
                        raise PlyError(f"{path}: unknown property type in {raw!r}")
                    props.append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise PlyError(f"{path}: unexpected header line {raw!r}")
        if fmt is None:
            raise PlyError(f"{path}: the PLY header has no 'format' line")
        return PlyHeader(fmt, elements, comments, fh.tell())


def read_ply(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the vertex element of a PLY file: ``{property name: (M,) array}`` in the file's types.

    Works for binary (both byte orders) and ascii files; faces and other later elements are skipped.
    Property arrays are views of one structured array read with a single call (native byte order).
    """
    data = read_ply_vertices(path)
    return {name: data[name] for name in data.dtype.names}


def read_ply_vertices(path: str | os.PathLike, *, mapped: bool = False) -> np.ndarray:
    """The vertex element of a PLY file as one (M,) structured array (native byte order).

    ``mapped``: a read-only memory map of a native-order binary file instead of a copy in memory (no
    allocation and no page-faulting of a fresh buffer: callers that gather columns out of it anyway,
    such as the splat reader, save a full pass over the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PLY file not found: {path}")
    header = read_ply_header(path)
    names = [el[0] for el in header.elements]
    if "vertex" not in names:
        raise PlyError(f"{path}: the PLY file has no 'vertex' element (elements: {names})")
    vi = names.index("vertex")
    _, count, props = header.elements[vi]
    if any(isinstance(t, tuple) for _, t in props):
        raise PlyError(f"{path}: list properties on vertices are not supported")
    seen = set()
    for name, _ in props:
        if name in seen:
            raise PlyError(f"{path}: the vertex property {name!r} appears twice")
        seen.add(name)

    if header.fmt == "=":
        return _read_ascii_vertices(path, header, vi, count, props)

    dtype = np.dtype([(name, header.fmt + t) for name, t in props])
    offset = header.body_offset
    for name, n, eprops in header.elements[:vi]:  # skip fixed-size elements that precede the vertices
        if any(isinstance(t, tuple) for _, t in eprops):
            raise PlyError(f"{path}: cannot skip the list element {name!r} that comes before the vertices")
        offset += n * np.dtype([(p, header.fmt + t) for p, t in eprops]).itemsize
    need = offset + count * dtype.itemsize
    size = path.stat().st_size
    if size < need:
        raise PlyError(f"{path}: file is truncated ({size} bytes, the vertices need {need})")
    if mapped and dtype.isnative and count > 0:
        with open(path, "rb") as fh:
            view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(view, "madvise") and hasattr(mmap, "MADV_WILLNEED"):
            view.madvise(mmap.MADV_WILLNEED)  # read ahead: far fewer page faults on a file not yet cached
        return np.frombuffer(view, dtype=dtype, count=count, offset=offset)
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = np.fromfile(fh, dtype=dtype, count=count)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _read_ascii_vertices(path: Path, header: PlyHeader, vi: int, count: int, props) -> np.ndarray:
    skip = sum(el[1] for el in header.elements[:vi])  # every element item is one line in ascii PLY
    with open(path, "rb") as fh:
        fh.seek(header.body_offset)
        body = fh.read()
    lines = body.split(b"\n", skip + count)
    if len(lines) < skip + count:
        raise PlyError(f"{path}: file is truncated (fewer than {count} vertex lines)")
    text = b" ".join(lines[skip : skip + count]).decode("latin-1")
    values = np.array(text.split(), dtype=np.float64)
    if values.size != count * len(props):
        raise PlyError(f"{path}: expected {count}×{len(props)} vertex values, found {values.size}")
    table = values.reshape(count, len(props))
    data = np.empty(count, [(name, t) for name, t in props])
    for i, (name, _) in enumerate(props):
        data[name] = table[:, i]
    return data


def _ply_type(arr: np.ndarray) -> str:
    code = arr.dtype.kind + str(arr.dtype.itemsize)
    if arr.dtype.kind == "b":
        return "u1"
    if code not in _NUMPY_TO_PLY:
        raise ValueError(
            f"cannot store dtype {arr.dtype} in PLY (use int8..int32, uint8..uint32, float32/64)"
        )
    return code


def _write_ply(path: Path, names_types: list[tuple[str, str]], data: np.ndarray, comments) -> Path:
    for name, _ in names_types:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"bad PLY property name {name!r}")
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in (comments or [])]
    lines.append(f"element vertex {data.shape[0]}")
    lines += [f"property {_NUMPY_TO_PLY[t]} {name}" for name, t in names_types]
    lines.append("end_header")
    head = ("\n".join(lines) + "\n").encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(head)
        data.tofile(fh)
    os.replace(tmp, path)
    return path


def write_vertex_table(
    path: str | os.PathLike, names: list[str], table: np.ndarray, comments: list[str] | None = None
) -> Path:
    """Write a binary little-endian vertex PLY from one (M, P) table of a single dtype (fastest path).

    names: the P property names in column order; the dtype of ``table`` is kept (e.g. float32 for 3DGS).
    """
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[1] != len(names):
        raise ValueError(f"table must have shape (M, {len(names)}) for the names given, got {table.shape}")
    t = _ply_type(table)
    data = np.ascontiguousarray(table, dtype=np.dtype("<" + t) if table.dtype != np.bool_ else np.uint8)
    return _write_ply(Path(path), [(n, t) for n in names], data, comments)


def write_vertex_ply(
    path: str | os.PathLike, columns: dict[str, np.ndarray], comments: list[str] | None = None
) -> Path:
    """Write a binary little-endian vertex-only PLY from named columns.

    columns: ``{property: (M,) array}`` in file order; each column keeps its dtype (bool → uchar).
    Written to a temporary name and renamed, so readers never see half a file.
    """
    path = Path(path)
    if not columns:
        raise ValueError("no vertex properties to write")
    arrays = {name: np.asarray(col) for name, col in columns.items()}
    m = None
    for name, arr in arrays.items():
        if arr.ndim != 1:
            raise ValueError(f"PLY column {name!r} must be 1-D, got shape {arr.shape}")
        if m is None:
            m = arr.shape[0]
        elif arr.shape[0] != m:
            raise ValueError(f"PLY column {name!r} has {arr.shape[0]} values, expected {m}")
    types = [(name, _ply_type(arr)) for name, arr in arrays.items()]
    data = np.empty(m, np.dtype([(name, "<" + t) for name, t in types]))
    for name, arr in arrays.items():
        data[name] = arr
    return _write_ply(path, types, data, comments)


def write_points_ply(
    path: str | os.PathLike,
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Point cloud PLY with properties ``x y z [red green blue] [confidence] [extras...]``.

    xyz: (M, 3) → float32; rgb: (M, 3) uint8; conf: (M,) float32; extra: ``{name: (M,) array}`` kept
    in its own dtype. Meshlab, CloudCompare, Blender and trimesh read these properties directly.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must have shape (M, 3), got {xyz.shape}")
    m = xyz.shape[0]
    cols: dict[str, np.ndarray] = {
        "x": xyz[:, 0].astype(np.float32, copy=False),
        "y": xyz[:, 1].astype(np.float32, copy=False),
        "z": xyz[:, 2].astype(np.float32, copy=False),
    }
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (m, 3):
            raise ValueError(f"rgb must have shape ({m}, 3), got {rgb.shape}")
        if rgb.dtype != np.uint8:
            if rgb.dtype.kind == "f":
                raise ValueError("rgb must be uint8 0..255 (got floats; multiply by 255 and convert first)")
            rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        cols.update(red=rgb[:, 0], green=rgb[:, 1], blue=rgb[:, 2])
    if conf is not None:
        conf = np.asarray(conf, np.float32).reshape(-1)
        if conf.shape != (m,):
            raise ValueError(f"conf must have shape ({m},), got {conf.shape}")
        cols["confidence"] = conf
    for name, arr in (extra or {}).items():
        if name in cols:
            raise ValueError(f"extra property {name!r} clashes with a standard one")
        cols[name] = np.asarray(arr).reshape(-1)
    return write_vertex_ply(path, cols)
