"""The one OpenCV ↔ Blender conversion (numpy only, no bpy: tests check it without Blender).

Engine convention (DESIGN.md §3): OpenCV camera axes (x right, y down, z forward), extrinsics
world-to-camera ``w2c (N, 3, 4)``, intrinsics ``K (N, 3, 3)`` in pixels with continuous coordinates
(pixel (u, v) covers [u, u+1) × [v, v+1); DA3 puts the principal point at (W/2, H/2), the image centre).

Blender: a camera looks down its −Z axis with +Y up, so a camera's rotation is
``R_blender_cam = R_cv_cam · diag(1, −1, −1)``. Lens and principal point map to ``lens``,
``sensor_width`` with ``sensor_fit = 'HORIZONTAL'`` (so lens and shift both refer to the image width),
``shift_x/shift_y``, and the render resolution and pixel aspect, so that rendering the camera reproduces
the input image pixel for pixel (the formula is checked against Blender's own projection matrix and
against Cycles renders in tests/blender).

The engine's world is the reference camera's frame (y down, z forward). ``ENGINE_TO_BLENDER`` turns it so
Blender's Z is up and the reference camera looks along +Y; it lives on the reconstruction's root Empty,
never baked into the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Engine world (x right, y down, z forward) → Blender world (X right, Y forward, Z up): X=x, Y=z, Z=-y;
# defined once in the engine (the datasets' frame uses it too).
from ..engine.geometry.floor import ENGINE_TO_BLENDER

__all__ = [
    "CV_TO_BLENDER_CAMERA",
    "ENGINE_TO_BLENDER",
    "DEFAULT_SENSOR_WIDTH",
    "LensParams",
    "blender_camera_matrices",
    "intrinsics_from_blender",
    "intrinsics_from_lens",
    "lens_params",
    "scale_intrinsics",
    "w2c_from_blender_matrices",
]

DEFAULT_SENSOR_WIDTH = 36.0  # mm, a full-frame sensor: lens values then read like photo lenses

# diag(1, -1, -1): OpenCV camera axes ↔ Blender camera axes (its own inverse).
CV_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])


# --- extrinsics -------------------------------------------------------------------------------------


def blender_camera_matrices(w2c: np.ndarray) -> np.ndarray:
    """World-to-camera ``(N, 3, 4)`` (OpenCV) → Blender camera object matrices ``(N, 4, 4)`` float64.

    The result is camera-to-world with Blender's camera axes, in the engine's world frame (so it is the
    camera's ``matrix_basis`` under the reconstruction root).
    """
    w2c = np.asarray(w2c, np.float64)
    if w2c.shape[-2:] not in ((3, 4), (4, 4)):
        raise ValueError(f"extrinsics must have shape (N, 3, 4), got {w2c.shape}")
    rot, t = w2c[..., :3, :3], w2c[..., :3, 3]  # (N, 3, 3), (N, 3)
    rot_c2w = np.swapaxes(rot, -1, -2)
    out = np.zeros(w2c.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot_c2w @ CV_TO_BLENDER_CAMERA
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot_c2w, t)  # camera centre C = -Rᵀ t
    out[..., 3, 3] = 1.0
    return out


def w2c_from_blender_matrices(matrices: np.ndarray) -> np.ndarray:
    """Blender camera matrices ``(N, 4, 4)`` (camera-to-world) → OpenCV w2c ``(N, 3, 4)``; the inverse of
    ``blender_camera_matrices``. An object's scale is left out (a camera's scale does not change its view)."""
    m = np.asarray(matrices, np.float64)
    axes = m[..., :3, :3] / np.linalg.norm(m[..., :3, :3], axis=-2, keepdims=True)
    rot_cv_c2w = axes @ CV_TO_BLENDER_CAMERA
    rot = np.swapaxes(rot_cv_c2w, -1, -2)
    out = np.empty(m.shape[:-2] + (3, 4))
    out[..., :3, :3] = rot
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", rot, m[..., :3, 3])
    return out


# --- intrinsics -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LensParams:
    """Blender camera and render settings that reproduce one OpenCV camera (arrays for many views)."""

    lens: np.ndarray  # (N,) mm
    sensor_width: float  # mm, with sensor_fit = 'HORIZONTAL'
    shift_x: np.ndarray  # (N,) fraction of the image width
    shift_y: np.ndarray  # (N,) fraction of the image width
    width: np.ndarray  # (N,) render resolution in pixels
    height: np.ndarray  # (N,)
    pixel_aspect_x: np.ndarray  # (N,) ≥ 1 when fy > fx
    pixel_aspect_y: np.ndarray  # (N,) ≥ 1 when fx > fy

    sensor_fit = "HORIZONTAL"


def lens_params(K: np.ndarray, sizes: np.ndarray, sensor_width: float = DEFAULT_SENSOR_WIDTH) -> LensParams:
    """Intrinsics ``(N, 3, 3)`` (or (3, 3)) of images of ``sizes (N, 2)`` (height, width) → Blender.

    ``lens = fx · sensor_width / W``; ``shift_x = (W/2 − cx) / W``; ``shift_y = (cy − H/2) · ycor / W``
    with ``ycor = pixel_aspect_y / pixel_aspect_x``; when fx ≠ fy the pixel aspect carries the ratio
    (Blender needs both aspects ≥ 1). Skew is ignored (DA3 predicts none).
    """
    K = np.asarray(K, np.float64).reshape(-1, 3, 3)
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    if len(sizes) == 1 and len(K) > 1:
        sizes = np.repeat(sizes, len(K), axis=0)
    if len(sizes) != len(K):
        raise ValueError(f"{len(K)} intrinsics but {len(sizes)} image sizes")
    h, w = sizes[:, 0], sizes[:, 1]
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    if np.any(fx <= 0) or np.any(fy <= 0):
        raise ValueError("focal lengths must be positive")
    pax = np.where(fx >= fy, 1.0, fy / fx)
    pay = np.where(fx >= fy, fx / fy, 1.0)
    ycor = pay / pax
    return LensParams(
        lens=fx * sensor_width / w,
        sensor_width=float(sensor_width),
        shift_x=(w / 2.0 - cx) / w,
        shift_y=(cy - h / 2.0) * ycor / w,
        width=np.rint(w).astype(np.int64),
        height=np.rint(h).astype(np.int64),
        pixel_aspect_x=pax,
        pixel_aspect_y=pay,
    )


def intrinsics_from_lens(
    lens: float,
    sensor_width: float,
    shift_x: float,
    shift_y: float,
    width: int,
    height: int,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
) -> np.ndarray:
    """The inverse of ``lens_params`` for one camera with ``sensor_fit = 'HORIZONTAL'`` → K (3, 3)."""
    return intrinsics_from_blender(
        lens, sensor_width, sensor_width, "HORIZONTAL", shift_x, shift_y, width, height,
        pixel_aspect_x, pixel_aspect_y,
    )  # fmt: skip


def intrinsics_from_blender(
    lens,
    sensor_width,
    sensor_height,
    sensor_fit: str,
    shift_x,
    shift_y,
    width,
    height,
    pixel_aspect_x=1.0,
    pixel_aspect_y=1.0,
) -> np.ndarray:
    """Any Blender perspective camera rendered at ``width`` × ``height`` pixels → K ``(..., 3, 3)``.

    The inverse of ``lens_params`` (which always writes ``HORIZONTAL``), for every sensor fit. Blender's
    view plane (``BKE_camera_params_compute_viewplane``): the sensor size is ``sensor_height`` for
    ``VERTICAL``, else ``sensor_width``; ``AUTO`` fits the larger side of the image in aspect-corrected
    pixels (``pax·W ≥ pay·H``: horizontal). With ``ycor = pay / pax`` the fitted side spans
    ``viewfac = W`` (horizontal) or ``ycor · H`` (vertical) units, and shifts are fractions of it:
    ``fx = lens · viewfac / sensor``, ``fy = fx / ycor``, ``cx = W/2 − shift_x · viewfac``,
    ``cy = H/2 + shift_y · viewfac / ycor``. Arguments broadcast (an animated lens gives one K per frame).
    """
    if sensor_fit not in ("AUTO", "HORIZONTAL", "VERTICAL"):
        raise ValueError(f"unknown sensor fit {sensor_fit!r}")
    lens, sw, sh, sx, sy, w, h, pax, pay = np.broadcast_arrays(
        *(np.asarray(v, np.float64) for v in (
            lens, sensor_width, sensor_height, shift_x, shift_y, width, height, pixel_aspect_x, pixel_aspect_y
        ))
    )  # fmt: skip
    ycor = pay / pax
    horizontal = (
        (pax * w >= pay * h) if sensor_fit == "AUTO" else np.full(w.shape, sensor_fit == "HORIZONTAL")
    )
    sensor = np.where(sensor_fit == "VERTICAL", sh, sw)
    viewfac = np.where(horizontal, w, ycor * h)
    fx = lens * viewfac / sensor
    K = np.zeros(w.shape + (3, 3))
    K[..., 0, 0] = fx
    K[..., 1, 1] = fx / ycor
    K[..., 0, 2] = w / 2.0 - sx * viewfac
    K[..., 1, 2] = h / 2.0 + sy * viewfac / ycor
    K[..., 2, 2] = 1.0
    return K


def scale_intrinsics(K: np.ndarray, processed_hw: np.ndarray, original_hw: np.ndarray) -> np.ndarray:
    """Intrinsics of processed images ``(N, 3, 3)`` → of the original images (exact for resizes under the
    continuous-pixel convention: row 0 scales by W_orig / W, row 1 by H_orig / H)."""
    K = np.array(K, np.float64, copy=True).reshape(-1, 3, 3)
    proc = np.asarray(processed_hw, np.float64).reshape(-1, 2)
    orig = np.asarray(original_hw, np.float64).reshape(-1, 2)
    K[:, 0, :] *= (orig[:, 1] / proc[:, 1])[:, None]
    K[:, 1, :] *= (orig[:, 0] / proc[:, 0])[:, None]
    return K
