"""What the splatting tools trained on a DA3 dataset, back in the scene, in place.

For each picked file (``engine.formats.datasets.results`` says what it is and which frame it is in):
the dataset is found (the folder above it with ``da3_dataset.json``, or the one the user named), the
file's frame is mapped to the dataset's (nerfstudio's normalisation undone: positions, splat shapes and SH
alike), and the object goes under the reconstruction root the dataset was exported from with the local
matrix ``dataset_to_root``, so it lines up with the cameras and points and follows the root. Without
that root in the scene, a new root stands in for it at the dataset's frame (where the export had it).
SuGaR's Gaussians are bound to SuGaR's mesh (``splat_binding``). Everything made is removed again when
any file fails.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..engine.formats.datasets.results import (
    ResultError,
    classify_result,
    dataparser_to_dataset,
    find_dataparser_transforms,
    find_dataset,
    sugar_companion,
)
from ..engine.formats.datasets.sidecar import DatasetSidecar, read_sidecar
from ..engine.formats.gaussians_ply import read_splat_table
from ..engine.formats.mesh_ply import read_mesh_ply
from ..engine.formats.obj_mesh import ObjMaterial, ObjMesh, read_obj
from ..engine.formats.ply import PlyError
from ..engine.geometry.mesh import Mesh
from ..engine.geometry.splat_transform import is_identity, transform_splats
from .compat import ensure_node_tree
from .gaussians import SOURCE_MATRIX, create_gaussians
from .mesh import COLOR_ATTRIBUTE, UV_MAP, create_fused_mesh, fill_triangle_mesh
from .mesh_material import mesh_color_material
from .root import ROOT_KEY, NewDatablocks
from .splat_binding import bind_to_mesh

__all__ = ["RESULT_KEY", "ResultsImport", "find_root", "import_results"]

RESULT_KEY = "da3_result"  # on imported objects: "sugar_mesh", "sugar_splats", "splats", "mesh"
DATASET_KEY = "da3_dataset"  # on imported objects: the dataset folder
LAST_DATASET_KEY = "da3_last_dataset"  # on the scene: the dataset folder the user named last
ERRORS = (ResultError, PlyError, OSError, ValueError)


@dataclass
class ResultsImport:
    objects: list = field(default_factory=list)
    root: bpy.types.Object | None = None
    notes: list[str] = field(default_factory=list)
    bound: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Item:
    path: Path
    kind: str  # "obj", "splats", "mesh"
    dataset: Path
    sidecar: DatasetSidecar
    to_dataset: np.ndarray  # (4, 4) the file's frame → the dataset frame
    sugar: bool


def _is_sugar(path: Path) -> bool:
    return "refined_mesh" in path.parts or "refined_ply" in path.parts or path.name.startswith("sugarfine")


def _plan(path: Path, dataset_hint: str, dataparser_hint: str) -> _Item:
    kind = classify_result(path)
    dataset = find_dataset(path, dataset_hint or None)
    if dataset is None:
        raise ResultError(
            f"No DA3 dataset (da3_dataset.json) above {path}: set Dataset in the importer's options to the "
            "folder you exported and trained on (SuGaR writes into its own output folder)"
        )
    sidecar = read_sidecar(dataset)
    to_dataset = np.eye(4)
    dataparser = None  # only nerfstudio's exports are in its normalised frame (3DGS, gsplat, SuGaR: none)
    if sidecar.tool == "nerfstudio":
        dataparser = dataparser_hint or find_dataparser_transforms(path, dataset)
    if sidecar.tool == "nerfstudio" and not dataparser:
        raise ResultError(
            f"{path.name} is in nerfstudio's normalised frame, and no dataparser_transforms.json was found "
            f"next to it or under {dataset / 'outputs'}: set nerfstudio Run in the importer's options to the "
            "run's dataparser_transforms.json (outputs/<name>/<method>/<timestamp>/)"
        )
    if dataparser:
        to_dataset = dataparser_to_dataset(dataparser, dataset)
    return _Item(path, kind, dataset, sidecar, to_dataset, _is_sugar(path))


def find_root(scene: bpy.types.Scene, sidecar: DatasetSidecar) -> bpy.types.Object | None:
    """The reconstruction root the dataset was exported from: the same bundle folder, else the same bundle
    name, else the root name the export recorded."""
    roots = [o for o in scene.objects if ROOT_KEY in o]

    def norm(p: str) -> str:
        return os.path.normcase(os.path.abspath(p)) if p else ""

    for test in (
        lambda r: sidecar.bundle and norm(str(r[ROOT_KEY])) == norm(sidecar.bundle),
        lambda r: sidecar.bundle_id and Path(str(r[ROOT_KEY])).name == sidecar.bundle_id,
        lambda r: sidecar.root_name and r.name == sidecar.root_name,
    ):
        found = [r for r in roots if test(r)]
        if found:
            return found[0]
    return None


def _stand_in_root(context: bpy.types.Context, sidecar: DatasetSidecar) -> bpy.types.Object:
    """A root at the dataset's frame (children land where the dataset has them), marked with the bundle so
    the next result from this dataset joins it."""
    name = sidecar.bundle_id or "Dataset"
    collection = bpy.data.collections.new(f"DA3 {name} (dataset)")
    context.scene.collection.children.link(collection)
    root = bpy.data.objects.new(f"{name} Root", None)
    root.empty_display_type = "ARROWS"
    collection.objects.link(root)
    root.matrix_basis = Matrix(np.linalg.inv(sidecar.dataset_to_root).tolist())
    root[ROOT_KEY] = sidecar.bundle or name
    root["da3_kind"] = "dataset"
    context.view_layer.update()
    return root


def _texture_material(material: ObjMaterial, colors: bool) -> bpy.types.Material:
    """A lit material from an OBJ material: its texture through ``UV_MAP`` (or Kd) as the base colour."""
    if material.texture is None and colors:
        return mesh_color_material(COLOR_ATTRIBUTE)
    mat = bpy.data.materials.new(material.name or "Material")
    tree = ensure_node_tree(mat)
    bsdf = next((n for n in tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled"), None)
    if bsdf is None:
        tree.nodes.clear()
        bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
        out = tree.nodes.new("ShaderNodeOutputMaterial")
        tree.links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    bsdf.inputs["Roughness"].default_value = 0.8
    if material.diffuse is not None:
        bsdf.inputs["Base Color"].default_value = (*material.diffuse, 1.0)
    if material.texture is not None:
        uv = tree.nodes.new("ShaderNodeUVMap")
        uv.uv_map = UV_MAP
        uv.location = (-700, 0)
        tex = tree.nodes.new("ShaderNodeTexImage")
        tex.image = bpy.data.images.load(str(material.texture), check_existing=True)
        tex.location = (-450, 0)
        tree.links.new(uv.outputs["UV"], tex.inputs["Vector"])
        tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _obj_object(name: str, obj_mesh: ObjMesh, to_dataset: np.ndarray, collection) -> bpy.types.Object:
    vertices = obj_mesh.vertices
    if not is_identity(to_dataset):
        vertices = vertices.astype(np.float64) @ to_dataset[:3, :3].T + to_dataset[:3, 3]
    me = bpy.data.meshes.new(name)
    fill_triangle_mesh(me, Mesh(vertices, obj_mesh.faces, obj_mesh.colors))
    if obj_mesh.uv is not None:
        layer = me.uv_layers.new(name=UV_MAP)
        layer.uv.foreach_set("vector", np.ascontiguousarray(obj_mesh.uv[obj_mesh.face_uv]).ravel())
    for material in obj_mesh.materials or [ObjMaterial("Material")]:
        me.materials.append(_texture_material(material, obj_mesh.colors is not None))
    if obj_mesh.material_index is not None:
        me.polygons.foreach_set("material_index", obj_mesh.material_index)
    obj = bpy.data.objects.new(name, me)
    collection.objects.link(obj)
    return obj


def _build(context, item: _Item, root: bpy.types.Object, colours: str) -> tuple[bpy.types.Object, str]:
    collection = root.users_collection[0] if root.users_collection else context.scene.collection
    tool = "nerfstudio" if item.sidecar.tool == "nerfstudio" else ("SuGaR" if item.sugar else "3DGS")
    if item.kind == "obj":
        name, kind = f"{tool} Mesh", ("sugar_mesh" if item.sugar else "mesh")
        obj = _obj_object(name, read_obj(item.path), item.to_dataset, collection)
    elif item.kind == "mesh":
        mesh = read_mesh_ply(item.path)
        if not is_identity(item.to_dataset):
            mesh = mesh.transformed(item.to_dataset)
        name, kind = f"{'DN-Splatter' if tool == 'nerfstudio' else tool} Mesh", "mesh"
        obj = create_fused_mesh(name, mesh, collection)
    else:
        table = read_splat_table(item.path)
        if len(table) == 0:
            raise PlyError(f"{item.path} holds no splats; nothing was imported")
        if not is_identity(item.to_dataset):
            table = transform_splats(table, item.to_dataset)
        kind = "sugar_splats" if item.sugar else "splats"
        obj = create_gaussians(f"{tool} Gaussians", table, collection, source=str(item.path), colours=colours)
    obj.parent = root
    obj.matrix_parent_inverse = Matrix.Identity(4)
    obj.matrix_basis = Matrix(np.asarray(item.sidecar.dataset_to_root, np.float64).tolist())
    obj[RESULT_KEY] = kind
    obj[DATASET_KEY] = str(item.dataset)
    obj["da3_source"] = str(item.path)
    if kind.endswith("splats"):  # the export's "original frame" is the dataset frame
        world = np.asarray(root.matrix_world, np.float64) @ np.asarray(item.sidecar.dataset_to_root)
        obj[SOURCE_MATRIX] = world.ravel().tolist()
    return obj, kind


def _sugar_mesh_under(root: bpy.types.Object, dataset: Path) -> bpy.types.Object | None:
    for child in root.children:
        if child.get(RESULT_KEY) == "sugar_mesh" and child.get(DATASET_KEY) == str(dataset):
            return child
    return None


def import_results(
    context: bpy.types.Context,
    paths: list[str],
    *,
    dataset: str = "",
    dataparser: str = "",
    companions: bool = True,
    bind: bool = True,
    colours: str = "SCENE",
) -> ResultsImport:
    """Import the results in ``paths`` (see the module docstring); raises ``ERRORS`` leaving nothing."""
    start = time.perf_counter()
    paths = [Path(os.path.abspath(p)) for p in paths]
    if companions:
        for p in list(paths):
            other = sugar_companion(p)
            if other is not None and other not in paths:
                paths.append(other)
    items = [_plan(p, dataset, dataparser) for p in paths]  # every file checked before anything is built
    groups_before = set(bpy.data.node_groups)
    created = NewDatablocks()
    out = ResultsImport()
    try:
        for item in sorted(items, key=lambda i: i.kind != "obj"):  # meshes first: splats bind to them
            root = find_root(context.scene, item.sidecar)
            if root is None:
                root = _stand_in_root(context, item.sidecar)
                out.notes.append(
                    f"no reconstruction of {item.sidecar.bundle_id or item.sidecar.bundle} in this scene: "
                    f"placed at the dataset's frame under the new '{root.name}'"
                )
            obj, kind = _build(context, item, root, colours)
            out.objects.append(obj)
            out.root = root
            if kind == "sugar_splats" and bind:
                mesh_obj = _sugar_mesh_under(root, item.dataset)
                if mesh_obj is None:
                    out.notes.append("no SuGaR mesh of this dataset under the root: the splats are not bound")
                else:
                    out.bound += bind_to_mesh(context, obj, mesh_obj)
        context.view_layer.update()
    except BaseException:
        created.remove()
        for group in [g for g in bpy.data.node_groups if g not in groups_before and g.users == 0]:
            bpy.data.node_groups.remove(group)
        raise
    if dataset:
        context.scene[LAST_DATASET_KEY] = dataset
    out.seconds = time.perf_counter() - start
    return out
