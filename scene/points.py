"""Point clouds: numpy arrays → a mesh of loose vertices with colour, confidence and view attributes.

Bulk writes only: positions go through the ``position`` attribute (about 100× faster than
``vertices.foreach_set('co')``), every attribute through one ``foreach_set`` of a flat float32/int32
array. The object gets the "DA3 Points" Geometry Nodes modifier (``nodes.point_cloud_group``), which
draws the vertices as points that Cycles and EEVEE render, sized relative to the scene, with a live
confidence cut.
"""

from __future__ import annotations

import bpy
import numpy as np

from . import materials, nodes

__all__ = [
    "COLOR_ATTRIBUTE",
    "CONF_ATTRIBUTE",
    "CONF_RANK_ATTRIBUTE",
    "VIEW_ATTRIBUTE",
    "confidence_rank",
    "create_point_cloud",
    "default_point_size",
    "linear_rgba",
    "robust_extent",
    "srgb_to_linear",
]

COLOR_ATTRIBUTE = "Color"  # FLOAT_COLOR, linear RGBA
CONF_ATTRIBUTE = "confidence"  # FLOAT, the model's confidence (larger is better)
CONF_RANK_ATTRIBUTE = "confidence_rank"  # FLOAT in [0, 1]: share of points less confident than this one
VIEW_ATTRIBUTE = "view_index"  # INT, the view (camera) the point comes from

_SRGB_LUT = None
_SRGB_PAIR_LUT = None


def _srgb_table() -> np.ndarray:
    global _SRGB_LUT
    if _SRGB_LUT is None:
        c = np.arange(256, dtype=np.float64) / 255.0
        _SRGB_LUT = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
    return _SRGB_LUT


def _srgb_pair_table() -> np.ndarray:
    """``(65536,)`` uint64: for each uint16, the two linear float32 values of its two sRGB bytes, in
    memory order (built through the same views it is read with, so it holds in either byte order)."""
    global _SRGB_PAIR_LUT
    if _SRGB_PAIR_LUT is None:
        pairs = np.arange(65536, dtype=np.uint16).view(np.uint8).reshape(-1, 2)
        _SRGB_PAIR_LUT = np.ascontiguousarray(_srgb_table()[pairs]).view(np.uint64).ravel()
    return _SRGB_PAIR_LUT


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB ``(N, 3)`` → linear float32 ``(N, 3)`` through a 256-entry table (no per-point math)."""
    return _srgb_table()[np.asarray(rgb, np.uint8)]


def linear_rgba(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB ``(N, 3)`` → linear float32 RGBA ``(N, 4)`` with alpha 1.

    The bytes are laid out as RGBA with alpha 255 (sRGB 255 is linear 1.0) and read as two uint16 per
    point; one gather from a table of byte pairs then writes two floats at a time, straight into the
    result (2N lookups in a 512 KiB table instead of 3N, no index copies: about 3× faster at 5M points).
    """
    rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
    n = len(rgb)
    rgbx = np.empty((n, 4), np.uint8)
    for channel in range(3):  # one strided copy per channel (a (N, 3) block copy is several times slower)
        rgbx[:, channel] = rgb[:, channel]
    rgbx[:, 3] = 255
    return _srgb_pair_table()[rgbx.view(np.uint16).ravel()].view(np.float32).reshape(n, 4)


def _sample(values: np.ndarray, limit: int = 200_000) -> np.ndarray:
    step = max(1, len(values) // limit)
    return values[::step]


def robust_extent(xyz: np.ndarray) -> float:
    """Size of the scene: the diagonal of the 2nd–98th percentile box (outliers do not count)."""
    if len(xyz) == 0:
        return 1.0
    sample = _sample(np.asarray(xyz), 50_000)  # the 2nd/98th percentiles of 50k points vary by under 1 %
    low, high = np.percentile(sample, [2.0, 98.0], axis=0)
    extent = float(np.linalg.norm(high - low))
    return extent if np.isfinite(extent) and extent > 0 else 1.0


def default_point_size(count: int) -> float:
    """Point radius as a fraction of the scene size: about half the spacing of ``count`` points spread
    over a surface as large as the scene, kept between 0.03 % and 1 %."""
    return float(np.clip(0.5 / np.sqrt(max(count, 1)), 0.0003, 0.01))


def confidence_rank(conf: np.ndarray, bins: int = 16384, block: int = 1 << 16) -> np.ndarray:
    """Approximate percentile rank in [0, 1] of each confidence ``(N,)`` → float32 ``(N,)``.

    A histogram of a sample (every point up to 200k points; the bins span its 0.5–99.5 percentiles and the
    tails clamp to the end bins) gives the cumulative share below each bin; each point then looks up its
    bin: O(N) with no sort, so a threshold of 0.3 hides about the least confident 30 % whatever the
    model's confidence scale (within 0.3 %). The lookup runs in cache-sized blocks, so 5M points touch no
    memory but the result's.
    """
    conf = np.asarray(conf, np.float32).ravel()
    n = len(conf)
    if n == 0:
        return conf.copy()
    sample = _sample(conf)
    low, high = np.percentile(sample, [0.5, 99.5])
    if not high > low:
        return np.full(n, 0.5, np.float32)
    offset, scale = np.float32(low), np.float32(bins / (high - low))

    def bin_of(values: np.ndarray, out: np.ndarray, index: np.ndarray) -> np.ndarray:
        np.subtract(values, offset, out=out)
        out *= scale
        np.fmax(out, 0, out=out)  # fmax/fmin, unlike clip, put a stray NaN in a bin (no bad index)
        np.fmin(out, bins - 1, out=out)
        index[...] = out  # float → intp: the index type bincount and take work in
        return index

    counts = np.bincount(
        bin_of(sample, np.empty(len(sample), np.float32), np.empty(len(sample), np.intp)), minlength=bins
    )
    below = ((np.cumsum(counts) - 0.5 * counts) / len(sample)).astype(np.float32)  # mid-bin share
    rank = np.empty(n, np.float32)
    scratch, indices = np.empty(min(n, block), np.float32), np.empty(min(n, block), np.intp)
    for start in range(0, n, block):
        stop = min(n, start + block)
        index = bin_of(conf[start:stop], scratch[: stop - start], indices[: stop - start])
        np.take(below, index, out=rank[start:stop], mode="clip")  # mode="clip": no buffered copy of out
    return rank


def fill_point_mesh(
    mesh: bpy.types.Mesh,
    xyz: np.ndarray,
    rgb: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    view: np.ndarray | None = None,
) -> None:
    """Write ``xyz (N, 3)`` as loose vertices plus POINT attributes: linear colour from uint8 sRGB
    ``rgb (N, 3)``, ``conf (N,)`` with its rank, ``view (N,)`` int."""
    xyz = np.ascontiguousarray(xyz, np.float32).reshape(-1, 3)
    n = len(xyz)
    mesh.vertices.add(n)
    mesh.attributes["position"].data.foreach_set("vector", xyz.ravel())
    if rgb is not None:
        rgba = linear_rgba(rgb)
        color = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
        color.data.foreach_set("color", rgba.ravel())
        mesh.color_attributes.active_color = color
        mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    if conf is not None:
        conf = np.ascontiguousarray(conf, np.float32).ravel()
        mesh.attributes.new(CONF_ATTRIBUTE, "FLOAT", "POINT").data.foreach_set("value", conf)
        rank = confidence_rank(conf)
        mesh.attributes.new(CONF_RANK_ATTRIBUTE, "FLOAT", "POINT").data.foreach_set("value", rank)
    if view is not None:
        view = np.ascontiguousarray(view, np.int32).ravel()
        mesh.attributes.new(VIEW_ATTRIBUTE, "INT", "POINT").data.foreach_set("value", view)
    mesh.update()


def create_point_cloud(
    name: str,
    xyz: np.ndarray,
    rgb: np.ndarray | None,
    conf: np.ndarray | None,
    view: np.ndarray | None,
    collection: bpy.types.Collection,
    *,
    parent: bpy.types.Object | None = None,
    point_size: float | None = None,
) -> bpy.types.Object:
    """A point cloud object in ``collection`` under ``parent``: the mesh, the "DA3 Points" modifier and
    the colour material.

    ``point_size`` is the radius as a fraction of the scene size (None: from the point count).
    """
    mesh = bpy.data.meshes.new(name)
    fill_point_mesh(mesh, xyz, rgb, conf, view)
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.parent = parent
    material = materials.point_color_material()
    mesh.materials.append(material)
    extent = robust_extent(xyz)
    size = default_point_size(len(mesh.vertices)) if point_size is None else point_size
    nodes.add_point_cloud_modifier(obj, material, scene_size=extent, point_size=size)
    obj["da3_scene_size"] = extent
    return obj
