"""A triangle mesh as plain arrays (numpy only, so Blender can use it): what fusion and per-view
meshing return and what ``formats.mesh_ply`` writes and reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Mesh"]


@dataclass(frozen=True)
class Mesh:
    """Triangles over shared vertices, optionally with a colour and a texture coordinate per vertex.

    vertices: (V, 3) float32; faces: (F, 3) int32 indices into ``vertices``, counter-clockwise seen
    from outside (the side the cameras saw); colors: (V, 3) uint8 sRGB or None; uv: (V, 2) float32 in
    [0, 1] with v up (Blender's and glTF-flipped convention: v = 1 - y / H) or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    uv: np.ndarray | None = None

    def __post_init__(self) -> None:
        v, f = np.asarray(self.vertices), np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
        object.__setattr__(self, "vertices", np.ascontiguousarray(v, np.float32))
        object.__setattr__(self, "faces", np.ascontiguousarray(f, np.int32))
        for name, width, dtype in (("colors", 3, np.uint8), ("uv", 2, np.float32)):
            a = getattr(self, name)
            if a is None:
                continue
            a = np.asarray(a)
            if a.shape != (len(v), width):
                raise ValueError(f"{name} must have shape ({len(v)}, {width}), got {a.shape}")
            object.__setattr__(self, name, np.ascontiguousarray(a, dtype))

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @classmethod
    def empty(cls, *, colors: bool = True) -> Mesh:
        return cls(
            np.zeros((0, 3), np.float32),
            np.zeros((0, 3), np.int32),
            np.zeros((0, 3), np.uint8) if colors else None,
        )

    def transformed(self, matrix: np.ndarray) -> Mesh:
        """The mesh with its vertices moved by a 4x4 (or 3x4) affine ``matrix`` (winding kept when the
        matrix mirrors: faces are flipped then)."""
        m = np.asarray(matrix, np.float64)
        v = self.vertices.astype(np.float64) @ m[:3, :3].T + m[:3, 3]
        faces = self.faces if np.linalg.det(m[:3, :3]) > 0 else self.faces[:, ::-1]
        return Mesh(v.astype(np.float32), faces, self.colors, self.uv)

    def face_areas(self) -> np.ndarray:
        """(F,) float64 area of each triangle."""
        v = self.vertices.astype(np.float64)
        a, b, c = (v[self.faces[:, i]] for i in range(3))
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
