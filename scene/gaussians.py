"""3D Gaussian splats as a Blender object: one vertex per splat holding the file's own values.

The mesh keeps what a 3DGS PLY stores, unchanged (``SplatTable``): positions, ``log_scale``, the
``rotation`` quaternion as written, the ``opacity`` logit and one ``sh_k`` colour vector per SH
coefficient. The "DA3 Gaussians" modifier (``splat_nodes``) makes the renderable splats from them.
Deleting vertices in Edit Mode crops the splats; moving, turning and scaling the object (or its parent) moves them, and the export applies
that transform to the stored values (``engine.geometry.splat_transform``), so the file written opens in
other splat tools where the splats were in Blender. Bulk reads and writes only (``foreach_get/set``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import bpy
import numpy as np

from ..engine.formats.gaussians_ply import SplatTable, read_splat_table, splat_file_degree
from ..engine.formats.ply import PlyError
from ..engine.geometry.splat_transform import is_identity, transform_splats
from .compat import set_modifier_input
from .splat_material import COLOUR_MODES, sh_attribute, splat_material, splat_point_material
from .splat_nodes import (
    LOG_SCALE_ATTRIBUTE,
    MODIFIER_NAME,
    OPACITY_ATTRIBUTE,
    ROTATION_ATTRIBUTE,
    add_gaussians_modifier,
    gaussians_group,
)

__all__ = [
    "COLOURS_KEY",
    "GAUSSIANS_TAG",
    "SOURCE_MATRIX",
    "create_gaussians",
    "export_matrix",
    "import_splat_file",
    "is_gaussians",
    "keep_splats",
    "prepare_scene",
    "set_splat_colours",
    "splats_of",
    "transformed_splats",
]

GAUSSIANS_TAG = "da3_gaussians"  # object property: the SH degree its mesh holds
COLOURS_KEY = "da3_splat_colours"  # object property: the colour mode (splat_material.COLOUR_MODES)
SOURCE_MATRIX = "da3_source_matrix"  # object property: its world matrix when made (16 floats, rows)


def is_gaussians(obj: bpy.types.Object | None) -> bool:
    """True for an object made by ``create_gaussians`` (a mesh with the splat attributes)."""
    return obj is not None and obj.type == "MESH" and GAUSSIANS_TAG in obj


def _write(mesh: bpy.types.Mesh, table: SplatTable) -> None:
    m, k = len(table), table.sh.shape[2]
    mesh.vertices.add(m)
    mesh.attributes["position"].data.foreach_set(
        "vector", np.ascontiguousarray(table.means, np.float32).ravel()
    )
    new = mesh.attributes.new
    new(LOG_SCALE_ATTRIBUTE, "FLOAT_VECTOR", "POINT").data.foreach_set(
        "vector", np.ascontiguousarray(table.log_scales, np.float32).ravel()
    )
    new(ROTATION_ATTRIBUTE, "QUATERNION", "POINT").data.foreach_set(
        "value", np.ascontiguousarray(table.quaternions, np.float32).ravel()
    )
    new(OPACITY_ATTRIBUTE, "FLOAT", "POINT").data.foreach_set(
        "value", np.ascontiguousarray(table.opacity_logits, np.float32).ravel()
    )
    sh = np.asarray(table.sh, np.float32)
    for i in range(k):
        new(sh_attribute(i), "FLOAT_VECTOR", "POINT").data.foreach_set(
            "vector", np.ascontiguousarray(sh[:, :, i]).ravel()
        )
    mesh.update()


def create_gaussians(
    name: str,
    table: SplatTable,
    collection: bpy.types.Collection,
    *,
    parent: bpy.types.Object | None = None,
    source: str = "",
    colours: str = "SCENE",
) -> bpy.types.Object:
    """A Gaussians object in ``collection`` (under ``parent``) holding ``table``; its current world
    matrix is recorded as the file's frame, which the export writes back in."""
    mesh = bpy.data.meshes.new(name)
    _write(mesh, table)
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    obj.parent = parent
    obj[GAUSSIANS_TAG] = table.sh_degree
    obj["da3_source"] = str(source)
    obj[SOURCE_MATRIX] = _world_now(obj).ravel().tolist()
    obj[COLOURS_KEY] = colours
    add_gaussians_modifier(
        obj, table.sh_degree, splat_material(table.sh_degree, colours), splat_point_material()
    )
    return obj


def import_splat_file(
    path: str, collection: bpy.types.Collection, *, colours: str = "SCENE", name: str = ""
) -> bpy.types.Object:
    """Read a 3DGS PLY and make its Gaussians object. The file is read in a worker thread (numpy copies
    run without the GIL) while this thread builds the node group and materials for the degree the header
    names, so a first import costs about the larger of the two, not their sum. A file that cannot be read
    raises ``PlyError``/``OSError`` and leaves nothing behind (datablocks made meanwhile are removed)."""
    before = {*bpy.data.node_groups.keys()}, {*bpy.data.materials.keys()}
    with ThreadPoolExecutor(max_workers=1) as pool:
        reading = pool.submit(read_splat_table, path)
        degree = splat_file_degree(path)
        try:
            if degree is not None:
                gaussians_group(degree)
                splat_material(degree, colours)
                splat_point_material()
        finally:
            try:
                table = reading.result()
            except Exception:
                _remove_new(*before)
                raise
    if len(table) == 0:
        _remove_new(*before)
        raise PlyError(f"{path} holds no splats; nothing was imported")
    stem = os.path.splitext(os.path.basename(path))[0]
    return create_gaussians(name or stem or "Gaussians", table, collection, source=path, colours=colours)


def _remove_new(groups: set[str], materials: set[str]) -> None:
    for group in [g for g in bpy.data.node_groups if g.name not in groups and g.users == 0]:
        bpy.data.node_groups.remove(group)
    for material in [m for m in bpy.data.materials if m.name not in materials and m.users == 0]:
        bpy.data.materials.remove(material)


def set_splat_colours(obj: bpy.types.Object, colours: str, scene: bpy.types.Scene) -> str | None:
    """Switch ``obj``'s splats to a colour mode (``splat_material``): ``VIEWER`` needs the *Raw* view
    transform (set here), ``SCENE`` the *Standard* one (set back from Raw). Returns what changed in the
    scene, for the report."""
    if colours not in COLOUR_MODES:
        raise ValueError(f"colour mode must be one of {COLOUR_MODES}, got {colours!r}")
    obj[COLOURS_KEY] = colours
    material = splat_material(int(obj[GAUSSIANS_TAG]), colours)
    set_modifier_input(obj.modifiers[MODIFIER_NAME], "Splat Material", material)
    view = scene.view_settings
    want = "Raw" if colours == "VIEWER" else ("Standard" if view.view_transform == "Raw" else None)
    if want is None or view.view_transform == want:
        return None
    was, view.view_transform = view.view_transform, want
    return f"View transform set from {was} to {want} for {colours.lower()} colours"


def _world_now(obj: bpy.types.Object) -> np.ndarray:
    """``obj``'s world matrix from its parents' local matrices (valid before any depsgraph update)."""
    local = np.asarray(obj.matrix_parent_inverse, np.float64) @ np.asarray(obj.matrix_basis, np.float64)
    return local if obj.parent is None else _world_now(obj.parent) @ local


def prepare_scene(scene: bpy.types.Scene, depth: int = 128) -> str | None:
    """Let Cycles see through ``depth`` splat layers without Russian roulette on them (its defaults, 8
    layers and roulette after 8, stop rays inside the first few splats or kill them at random: dark
    speckles); returns what was changed, for the report, or None."""
    cycles = getattr(scene, "cycles", None)
    if cycles is None or min(cycles.transparent_max_bounces, cycles.min_transparent_bounces) >= depth:
        return None
    was = (cycles.transparent_max_bounces, cycles.min_transparent_bounces)
    cycles.transparent_max_bounces = max(depth, cycles.transparent_max_bounces)
    cycles.min_transparent_bounces = cycles.transparent_max_bounces
    return (
        f"Cycles transparent bounces set from {was[0]} (roulette after {was[1]}) to "
        f"{cycles.transparent_max_bounces} without roulette, so splats blend"
    )


def _read(mesh: bpy.types.Mesh, name: str, field: str, width: int) -> np.ndarray:
    out = np.empty(len(mesh.vertices) * width, np.float32)
    mesh.attributes[name].data.foreach_get(field, out)
    return out.reshape(-1, width) if width > 1 else out


def splats_of(obj: bpy.types.Object) -> SplatTable:
    """The splats ``obj``'s mesh holds, as stored (Edit Mode changes included)."""
    if not is_gaussians(obj):
        raise ValueError(f"'{obj.name if obj else None}' is not a Gaussians object (import a 3DGS PLY first)")
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    mesh = obj.data
    k = (int(obj[GAUSSIANS_TAG]) + 1) ** 2
    missing = [
        n for n in (LOG_SCALE_ATTRIBUTE, ROTATION_ATTRIBUTE, OPACITY_ATTRIBUTE) if n not in mesh.attributes
    ]
    missing += [sh_attribute(i) for i in range(k) if sh_attribute(i) not in mesh.attributes]
    if missing:
        raise ValueError(f"'{obj.name}' lost the splat attributes {missing}; import the splats again")
    sh = np.empty((len(mesh.vertices), 3, k), np.float32)
    for i in range(k):
        sh[:, :, i] = _read(mesh, sh_attribute(i), "vector", 3)
    return SplatTable(
        means=_read(mesh, "position", "vector", 3),
        log_scales=_read(mesh, LOG_SCALE_ATTRIBUTE, "vector", 3),
        quaternions=_read(mesh, ROTATION_ATTRIBUTE, "value", 4),
        sh=sh,
        opacity_logits=_read(mesh, OPACITY_ATTRIBUTE, "value", 1),
    )


def export_matrix(obj: bpy.types.Object, frame: str = "SOURCE") -> np.ndarray:
    """The map from ``obj``'s stored values to the exported ones: every transform made in Blender since
    the import (``SOURCE``: the file's frame, so an unmoved import is the identity) or the whole world
    matrix (``WORLD``: Blender's Z-up world)."""
    world = np.asarray(obj.matrix_world, np.float64)
    if frame == "WORLD":
        return world
    source = np.asarray(obj.get(SOURCE_MATRIX, np.eye(4).ravel().tolist()), np.float64).reshape(4, 4)
    return np.linalg.solve(source, world)


def transformed_splats(obj: bpy.types.Object, frame: str = "SOURCE") -> SplatTable:
    """``obj``'s splats with ``export_matrix`` applied (unchanged values when it is the identity)."""
    table, matrix = splats_of(obj), export_matrix(obj, frame)
    return table if is_identity(matrix) else transform_splats(table, matrix)


def keep_splats(obj: bpy.types.Object, keep: np.ndarray, table: SplatTable | None = None) -> int:
    """Keep only the splats where ``keep`` (M,) is True (a crop); returns how many were removed.
    ``table``: ``obj``'s splats when the caller has already read them (else read here)."""
    table = splats_of(obj) if table is None else table
    keep = np.asarray(keep, bool)
    if keep.shape != (len(table),):
        raise ValueError(f"keep must have shape ({len(table)},), got {keep.shape}")
    removed = int((~keep).sum())
    if removed == 0:
        return 0
    kept = SplatTable(
        means=table.means[keep],
        log_scales=table.log_scales[keep],
        quaternions=table.quaternions[keep],
        sh=table.sh[keep],
        opacity_logits=table.opacity_logits[keep],
    )
    mesh = obj.data
    mesh.clear_geometry()
    for name in [a.name for a in mesh.attributes if not a.name.startswith(".") and a.name != "position"]:
        mesh.attributes.remove(mesh.attributes[name])
    _write(mesh, kept)
    return removed
