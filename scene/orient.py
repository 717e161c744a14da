"""Set Floor, Set Origin and Set Scale for a reconstruction: each changes its root's transform alone.

Like Blender's tracking tools (Floor, Set Origin, Set Scale) but on the reconstruction root, so nothing
is baked into points or keyframes and every step can be redone or undone. Points and cameras under the
root keep the engine's coordinates ("local" below); the root's matrix ``M`` (a similarity, ``s · R``
plus a translation) maps them into the scene.

- **Set Floor**: a plane through the selected points of the cloud (least squares, three or more
  points), or with nothing selected the robust floor of the whole cloud (``engine.geometry.floor``'s
  RANSAC, the cameras above it), becomes Z = 0 with the cameras' side up. The origin stays above the
  same spot (moved onto the new floor), the heading (what looks along +Y) and the scale stay.
- **Set Origin**: the world XY of a point (the 3D cursor or the active point) becomes the origin; the
  floor stays at Z = 0.
- **Set Scale**: the distance between two points becomes the distance the user types, scaling about
  the origin (so the floor stays at Z = 0 and the origin in place).
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from ..engine.geometry.cameras import quaternion_wxyz_to_matrix
from ..engine.geometry.floor import Floor, NoFloorFound, fit_floor, root_transform, world_alignment
from ..engine.geometry.trajectory import euler_xyz_to_matrix
from . import animation
from .root import ROOT_KEY

__all__ = [
    "OrientError",
    "active_point",
    "camera_poses",
    "cloud_of",
    "cloud_points",
    "context_root",
    "find_root",
    "floor_from_points",
    "reset_alignment",
    "selected_points",
    "set_floor",
    "set_origin",
    "set_scale",
]

MAX_FLOOR_POINTS = 200_000


class OrientError(ValueError):
    """The step cannot be done with this selection; the message says what to select."""


# --- finding things ----------------------------------------------------------------------------------


def find_root(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The reconstruction root ``obj`` belongs to (itself or an ancestor), or None."""
    while obj is not None:
        if ROOT_KEY in obj:
            return obj
        obj = obj.parent
    return None


def context_root(context: bpy.types.Context) -> bpy.types.Object | None:
    """The reconstruction of the object being edited, the active object, or else the scene camera."""
    for obj in (context.edit_object, context.active_object, context.scene.camera):
        root = find_root(obj)
        if root is not None:
            return root
    return None


def cloud_of(root: bpy.types.Object) -> bpy.types.Object | None:
    """The point cloud object under ``root`` (the mesh the importer made), or None."""
    for child in root.children:
        if child.type == "MESH" and "da3_scene_size" in child:
            return child
    return None


def _positions(mesh: bpy.types.Mesh) -> np.ndarray:
    xyz = np.empty(3 * len(mesh.vertices), np.float32)
    position = mesh.attributes.get("position")
    if position is not None:
        position.data.foreach_get("vector", xyz)
    else:  # a mesh fresh out of Edit Mode may not expose the attribute yet
        mesh.vertices.foreach_get("co", xyz)
    return xyz.reshape(-1, 3).astype(np.float64)


def cloud_points(cloud: bpy.types.Object) -> tuple[np.ndarray, np.ndarray | None]:
    """The cloud's points in the root's local (engine) coordinates ``(M, 3)`` and confidences ``(M,)``."""
    mesh = cloud.data
    conf = None
    if "confidence" in mesh.attributes:
        conf = np.empty(len(mesh.vertices), np.float32)
        mesh.attributes["confidence"].data.foreach_get("value", conf)
    return _to_root(cloud, _positions(mesh)), conf


def _to_root(cloud: bpy.types.Object, xyz: np.ndarray) -> np.ndarray:
    """Points in the cloud's own coordinates → the root's local coordinates (identity for imports)."""
    local = np.array(cloud.matrix_parent_inverse) @ np.array(cloud.matrix_basis)
    if np.allclose(local, np.eye(4)):
        return xyz
    return xyz @ local[:3, :3].T + local[:3, 3]


def _sync_edit_mode(cloud: bpy.types.Object) -> None:
    if cloud.mode == "EDIT":
        cloud.update_from_editmode()


def selected_points(cloud: bpy.types.Object) -> np.ndarray:
    """The selected vertices of the cloud (Edit Mode selection) in root-local coordinates ``(S, 3)``."""
    _sync_edit_mode(cloud)
    mesh = cloud.data
    selected = np.zeros(len(mesh.vertices), bool)
    mesh.vertices.foreach_get("select", selected)
    return _to_root(cloud, _positions(mesh)[selected])


def active_point(cloud: bpy.types.Object) -> np.ndarray | None:
    """The active vertex of the cloud in Edit Mode (root-local coordinates), or None."""
    if cloud.mode != "EDIT":
        return None
    import bmesh

    bm = bmesh.from_edit_mesh(cloud.data)
    active = bm.select_history.active
    if not isinstance(active, bmesh.types.BMVert):
        return None
    return _to_root(cloud, np.array(active.co, np.float64)[None])[0]


def camera_poses(root: bpy.types.Object) -> tuple[np.ndarray, np.ndarray]:
    """Every camera position under ``root`` ``(F, 3)`` (each key of an animated camera) and the cameras'
    mean up direction ``(3,)`` (their +Y axis), both in root-local coordinates."""
    centres, ups = [], []
    for cam in (c for c in root.children if c.type == "CAMERA"):
        loc = animation.key_values(cam, "location", 3)
        rot = None
        if cam.rotation_mode == "QUATERNION":
            keys = animation.key_values(cam, "rotation_quaternion", 4)
            rot = quaternion_wxyz_to_matrix(keys[1]) if keys is not None else None
        elif cam.rotation_mode == "XYZ":
            keys = animation.key_values(cam, "rotation_euler", 3)
            rot = euler_xyz_to_matrix(keys[1]) if keys is not None else None
        basis = np.array(cam.matrix_basis)
        centres.append(loc[1] if loc is not None else basis[None, :3, 3])
        ups.append(rot[:, :, 1] if rot is not None else basis[None, :3, 1])
    if not centres:
        raise OrientError("The reconstruction has no camera: the floor needs to know which side is up.")
    up = np.concatenate(ups).sum(0)
    return np.concatenate(centres), up / max(np.linalg.norm(up), 1e-12)


# --- the root's transform ---------------------------------------------------------------------------


def _matrix(root: bpy.types.Object) -> np.ndarray:
    return np.array(root.matrix_world, np.float64)


def _apply(root: bpy.types.Object, matrix: np.ndarray) -> None:
    root.matrix_world = Matrix(np.asarray(matrix, np.float64).tolist())


def _scale_of(matrix: np.ndarray) -> float:
    return float(np.cbrt(abs(np.linalg.det(matrix[:3, :3]))))


def floor_from_points(points: np.ndarray, cameras: np.ndarray) -> Floor:
    """The least-squares plane through ``points (S, 3)`` (S ≥ 3), its normal towards ``cameras (F, 3)``."""
    p = np.asarray(points, np.float64)
    if len(p) < 3:
        raise OrientError(
            f"Select at least 3 points on the floor ({len(p)} selected), or none to find the floor "
            "in the whole cloud."
        )
    centroid = p.mean(0)
    _, sv, vt = np.linalg.svd(p - centroid, full_matrices=False)
    if sv[1] < 1e-9 * max(sv[0], 1e-30):
        raise OrientError("The selected points lie on a line: select points that span the floor.")
    normal = vt[-1]
    if np.median((cameras - centroid) @ normal) < 0:
        normal = -normal
    return Floor(normal, float(normal @ centroid), 1.0, 0.0)


def set_floor(root: bpy.types.Object, selected: np.ndarray | None = None) -> Floor:
    """Make the floor Z = 0 (cameras above), keeping the origin's spot, the heading and the scale.

    ``selected (S, 3)``: points on the floor in root-local coordinates; None fits the whole cloud.
    """
    cameras, up = camera_poses(root)
    if selected is not None and len(selected):
        floor = floor_from_points(selected, cameras)
    else:
        cloud = cloud_of(root)
        if cloud is None:
            raise OrientError("The reconstruction has no point cloud: select three points on the floor.")
        xyz, conf = cloud_points(cloud)
        try:
            floor = fit_floor(xyz, conf, cameras, up_hint=up, sample_size=MAX_FLOOR_POINTS)
        except NoFloorFound as exc:
            raise OrientError(str(exc)) from exc
    m = _matrix(root)
    inverse = np.linalg.inv(m)
    origin = inverse[:3, 3]  # the root-local point at the world origin
    forward = inverse[:3, :3] @ np.array([0.0, 1.0, 0.0])  # what looks along +Y now
    forward_on_floor = forward - (forward @ floor.normal) * floor.normal
    heading = forward_on_floor if np.linalg.norm(forward_on_floor) > 1e-6 * np.linalg.norm(forward) else None
    alignment = world_alignment(floor, origin, forward=heading)
    _apply(root, root_transform(alignment, _scale_of(m)))
    return floor


def set_origin(root: bpy.types.Object, world_point: np.ndarray) -> None:
    """Move the root so the world XY of ``world_point`` becomes the origin (Z, the floor, stays)."""
    p = np.asarray(world_point, np.float64).reshape(3)
    m = _matrix(root)
    m[0, 3] -= p[0]
    m[1, 3] -= p[1]
    _apply(root, m)


def set_scale(root: bpy.types.Object, p: np.ndarray, q: np.ndarray, distance: float) -> float:
    """Scale the root about the world origin so world points ``p`` and ``q`` end up ``distance`` apart.
    Returns the factor applied."""
    from ..engine.geometry.floor import scale_from_distance

    try:
        factor = scale_from_distance(p, q, distance)
    except ValueError as exc:
        raise OrientError(str(exc)) from exc
    m = _matrix(root)
    m[:3, :] *= factor
    _apply(root, m)
    return factor


def reset_alignment(root: bpy.types.Object) -> None:
    """Back to the transform the root was imported with (the bundle's world alignment)."""
    saved = root.get("da3_alignment")
    if saved is None or len(saved) != 16:
        raise OrientError("This reconstruction has no saved alignment to go back to.")
    _apply(root, np.asarray(saved, np.float64).reshape(4, 4))
