"""The reconstruction's place in the scene: its collection and root Empty, what an import built, and the
rollback that leaves nothing behind when an import fails.

Every importer (still, shot, and those to come) makes a new collection per job holding a root Empty whose
transform is the world alignment (``convert.ENGINE_TO_BLENDER``, or a shot's floor-aligned transform);
what it builds goes under the root and keeps the engine's coordinates, so the user can move, scale or
reset the world on one object. The root carries the bundle it came from (``ROOT_KEY``) and the alignment
it was imported with (what "Reset Alignment" goes back to).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import bpy
import numpy as np
from mathutils import Matrix

from ..engine.formats.bundle import Bundle, read_bundle

__all__ = ["ROOT_KEY", "ImportResult", "NewDatablocks", "build_reconstruction", "make_root", "open_bundle"]

ROOT_KEY = "da3_bundle"  # every reconstruction root carries its bundle folder under this key


@dataclass
class ImportResult:
    """What an import built (the shot importer's result adds its timing and solve report)."""

    collection: bpy.types.Collection
    root: bpy.types.Object
    points: bpy.types.Object | None
    cameras: list[bpy.types.Object] = field(default_factory=list)
    num_points: int = 0
    seconds: float = 0.0
    units: str = "relative"
    gaussians: bpy.types.Object | None = None
    num_gaussians: int = 0
    mesh: bpy.types.Object | None = None  # the fused mesh
    num_faces: int = 0  # the fused mesh's triangles
    view_meshes: list[bpy.types.Object] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was asked for and could not be built, and why

    @property
    def summary(self) -> str:
        parts = []
        if self.points is not None:
            parts.append(f"{self.num_points:,} points")
        if self.gaussians is not None:
            parts.append(f"{self.num_gaussians:,} splats")
        if self.mesh is not None:
            parts.append(f"a mesh of {self.num_faces:,} faces")
        if self.view_meshes:
            parts.append(f"{len(self.view_meshes)} view mesh{'es' if len(self.view_meshes) != 1 else ''}")
        if self.cameras:
            parts.append(f"{len(self.cameras)} camera{'s' if len(self.cameras) != 1 else ''}")
        units = "metres" if self.units == "metre" else "relative units"
        notes = "".join(f"; {note}" for note in self.notes)
        return f"Imported {', '.join(parts) or 'nothing'} ({units}) in {self.seconds:.1f} s{notes}"


def make_root(
    scene: bpy.types.Scene, name: str, bundle: Bundle, alignment: np.ndarray, kind: str | None = None
) -> tuple[bpy.types.Collection, bpy.types.Object]:
    """A new collection "DA3 ``name``" in ``scene`` holding the root Empty "``name`` Root", whose
    transform is ``alignment (4, 4)`` and whose properties say where it came from (``kind``, when given,
    says what the bundle holds)."""
    collection = bpy.data.collections.new(f"DA3 {name}")
    scene.collection.children.link(collection)
    matrix = np.asarray(alignment, np.float64)
    root = bpy.data.objects.new(f"{name} Root", None)
    root.empty_display_type = "ARROWS"
    collection.objects.link(root)
    root.matrix_basis = Matrix(matrix.tolist())
    root[ROOT_KEY] = str(bundle.folder)
    root["da3_model"] = bundle.model_id
    root["da3_units"] = bundle.units
    root["da3_views"] = bundle.num_views
    if kind is not None:
        root["da3_kind"] = kind
    root["da3_alignment"] = matrix.ravel().tolist()  # what "Reset Alignment" goes back to
    return collection, root


def open_bundle(source: str | os.PathLike | Bundle) -> Bundle:
    """``source`` itself when it is a read Bundle, else the bundle read from that folder."""
    return source if isinstance(source, Bundle) else read_bundle(source)


class NewDatablocks:
    """The datablocks made since this was created, for removing them again (an import that failed)."""

    KINDS = (
        "objects",
        "meshes",
        "cameras",
        "images",
        "materials",
        "collections",
        "actions",
        "movieclips",
        "texts",
    )

    def __init__(self) -> None:
        self.before = {name: set(getattr(bpy.data, name)) for name in self.KINDS}

    def remove(self) -> None:
        for name in self.KINDS:
            data = getattr(bpy.data, name)
            for block in [b for b in data if b not in self.before[name]]:
                data.remove(block)


def build_reconstruction(
    context: bpy.types.Context,
    source: str | os.PathLike | Bundle,
    build: Callable[[Bundle], ImportResult],
) -> ImportResult:
    """``build`` the bundle in ``source`` (a folder or a read Bundle) into the scene, timed.

    The view layer is updated at the end, so world matrices are right for the caller at once. When
    reading, building or updating fails, every datablock made meanwhile is removed and the error raised
    unchanged (the bundle reader's ``BundleError`` included).
    """
    start = time.perf_counter()
    bundle = open_bundle(source)
    created = NewDatablocks()
    try:
        result = build(bundle)
        context.view_layer.update()
    except BaseException:
        created.remove()
        raise
    result.seconds = time.perf_counter() - start
    return result
