"""Splats bound to the triangles of a mesh (numpy only): each splat keeps its face, its barycentric place
on the face's plane, its height above it and its rotation in the face's frame, so a moved or deformed mesh
carries it (SuGaR's refined Gaussians on its refined mesh; Blender evaluates ``bound_positions`` and
``bound_rotations`` with Geometry Nodes).

A face's frame is the rotation whose columns are ``e1 = (p1 − p0)/|p1 − p0|``, ``e2 = n × e1`` and the unit
normal ``n`` of ``(p1 − p0) × (p2 − p0)``; a splat at ``x`` with rotation ``q`` on face f is stored as
``x = Σ bᵢ pᵢ + h n`` (b: the barycentric coordinates of x's foot on the plane, which need not lie in
the triangle) and ``q_local = R_fᵀ q``. Rigid motions of a face move its splats exactly; any other
deformation moves the foot affinely with the triangle and keeps the height and the turn with its frame.
"""

from __future__ import annotations

import numpy as np

from .cameras import matrix_to_quaternion_wxyz
from .splat_transform import quaternion_multiply

__all__ = ["SplatBinding", "bind_splats", "bound_positions", "bound_rotations", "face_frames"]


class SplatBinding:
    """face (M,) int32, bary (M, 3) float32, height (M,) float32, rotation (M, 4) float32 (w, x, y, z)."""

    def __init__(self, face: np.ndarray, bary: np.ndarray, height: np.ndarray, rotation: np.ndarray):
        self.face, self.bary, self.height, self.rotation = face, bary, height, rotation


def face_frames(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3, 3) float64 rotations, columns e1, e2, n (degenerate faces: a frame anyway, never NaN)."""
    return _frames(np.asarray(vertices, np.float64)[np.asarray(faces)])


def _frames(p: np.ndarray) -> np.ndarray:
    a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    n = np.cross(a, b)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    e1 = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-300)
    e2 = np.cross(n, e1)
    return np.stack([e1, e2, n], axis=2)


def bind_splats(
    vertices: np.ndarray, faces: np.ndarray, face: np.ndarray, means: np.ndarray, quaternions: np.ndarray
) -> SplatBinding:
    """Bind each splat (``means`` (M, 3), ``quaternions`` (M, 4) w x y z) to ``faces[face]``."""
    face = np.asarray(face, np.int64)
    p = np.asarray(vertices, np.float64)[np.asarray(faces)[face]]  # (M, 3, 3) corners
    frames = _frames(p)
    x = np.asarray(means, np.float64)
    rel = x - p[:, 0]
    height = np.einsum("mi,mi->m", rel, frames[:, :, 2])
    foot = rel - height[:, None] * frames[:, :, 2]
    a, b = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    aa, ab, bb = (a * a).sum(1), (a * b).sum(1), (b * b).sum(1)
    fa, fb = (foot * a).sum(1), (foot * b).sum(1)
    det = np.where(np.abs(aa * bb - ab * ab) > 1e-300, aa * bb - ab * ab, 1e-300)
    u, v = (bb * fa - ab * fb) / det, (aa * fb - ab * fa) / det
    bary = np.stack([1.0 - u - v, u, v], axis=1)
    turn = matrix_to_quaternion_wxyz(np.swapaxes(frames, 1, 2))
    local = quaternion_multiply(turn, quaternions)
    return SplatBinding(
        face.astype(np.int32), bary.astype(np.float32), height.astype(np.float32), local.astype(np.float32)
    )


def bound_positions(vertices: np.ndarray, faces: np.ndarray, binding: SplatBinding) -> np.ndarray:
    """(M, 3) float64 splat centres on the (moved) mesh ``vertices``/``faces``."""
    p = np.asarray(vertices, np.float64)[np.asarray(faces)[binding.face]]
    n = _frames(p)[:, :, 2]
    return np.einsum("mk,mki->mi", binding.bary.astype(np.float64), p) + binding.height[:, None] * n


def bound_rotations(vertices: np.ndarray, faces: np.ndarray, binding: SplatBinding) -> np.ndarray:
    """(M, 4) float64 splat rotations (w x y z) on the (moved) mesh."""
    frames = _frames(np.asarray(vertices, np.float64)[np.asarray(faces)[binding.face]])
    return quaternion_multiply(matrix_to_quaternion_wxyz(frames), binding.rotation)
