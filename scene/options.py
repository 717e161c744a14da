"""What to build from a bundle: plain values that operators fill from their properties.

``ImportOptions`` is what File > Import and the Reconstruct button offer for any bundle;
``ShotImportOptions`` is what the shot importer takes, and ``ImportOptions.for_shot`` is the one place
that turns the first into the second.
"""

from __future__ import annotations

from dataclasses import dataclass

from .convert import DEFAULT_SENSOR_WIDTH

__all__ = ["ImportOptions", "ShotImportOptions"]


@dataclass(frozen=True)
class ShotImportOptions:
    """What to build from a shot bundle (plain values; operators fill it from their properties)."""

    points: bool = True
    max_points: int | None = 500_000
    mesh: bool = True  # the fused mesh (mesh.ply), when the bundle has one
    rotation_mode: str = "QUATERNION"  # or "EULER" (XYZ, Euler-filtered)
    animated_focal: bool = False  # key the lens per frame (zoom shots) instead of one robust focal length
    background: bool = True  # the plate behind the camera
    set_scene: bool = True  # scene camera, render size, pixel aspect, fps and frame range
    sensor_width: float = DEFAULT_SENSOR_WIDTH
    name: str = ""


@dataclass(frozen=True)
class ImportOptions:
    """What to build from a bundle (plain values; operators fill it from their properties)."""

    points: bool = True
    gaussians: bool = True  # the 3D Gaussians, when the bundle has them (giant and nested models)
    cameras: bool = True
    backgrounds: bool = True  # the view's image as the camera background
    animated_camera: str = "AUTO"  # AUTO: one animated camera for video frames; ALWAYS; NEVER
    max_points: int | None = 2_000_000
    conf_percentile: float = 40.0  # drop this percentile of the least confident pixels before import
    point_size: float | None = None  # radius as a fraction of the scene size (None: from the count)
    mesh: bool = True  # the fused mesh (mesh.ply), when the bundle has one
    view_meshes: bool = False  # one textured mesh per view from its depth map (still bundles only)
    view_mesh_step: int = 1  # per-view meshes use every n-th pixel in x and y
    set_render: bool = True  # render resolution, pixel aspect and scene camera from the reference view
    name: str = ""  # collection name (default: the bundle folder's name)
    camera_rotation: str = "QUATERNION"  # a shot camera's rotation keys: QUATERNION or EULER (filtered)
    animated_focal: bool = False  # a shot camera's lens keyed per frame (zoom) instead of one focal length

    def for_shot(self) -> ShotImportOptions:
        """The same choices for a shot bundle (one animated camera over the plate)."""
        return ShotImportOptions(
            points=self.points,
            max_points=self.max_points,
            mesh=self.mesh,
            rotation_mode=self.camera_rotation,
            animated_focal=self.animated_focal,
            background=self.backgrounds,
            set_scene=self.set_render,
            name=self.name,
        )
