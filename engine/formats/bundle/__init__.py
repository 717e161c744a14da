"""The job result bundle: one folder per reconstruction job (numpy only).

Layout::

    <job folder>/
        reconstruction.npz     the arrays below (uncompressed .npz, no pickled objects)
        points.ply, gaussians.ply, mesh.ply, colmap/, previews/ …   optional extra files
        manifest.json          written LAST: the bundle is complete once it exists

Every file is written under a temporary name, flushed, fsync'ed and moved into place with
``os.replace``; the manifest is written after everything else and lists every file with its size.
A folder without a valid manifest, or whose files do not match it, is an incomplete bundle and
``read_bundle`` raises ``IncompleteBundle``. The full schema is in docs/BUNDLE.md; in short:

================  ===============  =================================================================
key               dtype, shape     meaning
================  ===============  =================================================================
images            uint8 (N,H,W,3)  processed RGB images (what the network saw)
depth             float32 (N,H,W)  z-depth along the optical axis, in ``units``
conf              float32 (N,H,W)  confidence, larger is better (optional: metric/mono have none)
sky               bool (N,H,W)     True where the model sees sky (optional)
extrinsics        float32 (N,3,4)  world-to-camera, OpenCV axes (x right, y down, z forward)
intrinsics        float32 (N,3,3)  pixels of the processed image; pixel (u, v) centred at u+.5, v+.5
intrinsics_orig…  float32 (N,3,3)  ``intrinsics_original``: the same cameras in pixels of the original image
source_paths      <U (N,)          input file of each view ('' when unknown)
frame_indices     int64 (N,)       frame number in the source video, −1 for stills
timestamps_s      float64 (N,)     time of the frame in the video in seconds, NaN for stills
original_sizes    int32 (N,2)      (height, width) of the original input image
is_metric         bool ()          the model predicts metric depth
units             <U ()            "metre", "relative" or "input" (the units of given cameras)
scale_factor      float64 ()       scale applied to reach ``units`` (NaN when none)
model_id          <U ()            checkpoint name or hub id
options_json      <U ()            job options as JSON
engine_version    <U ()            engine version that wrote the bundle
timings_json      <U ()            stage timings in seconds as JSON
gs_means          float32 (M,3)    Gaussian centres (optional; the five gs_* come together)
gs_scales         float32 (M,3)    Gaussian standard deviations, linear
gs_rotations      float32 (M,4)    unit quaternions (w, x, y, z)
gs_harmonics      float32 (M,3,K)  SH coefficients per colour channel, K = (degree + 1)²
gs_opacities      float32 (M,)     opacity in [0, 1]
ref_view_idx      int64 ()         view used as the reference (world) frame (optional)
points_xyz        float32 (M,3)    a reduced point cloud of the whole job, world frame (optional;
points_rgb        uint8 (M,3)        the four points_* come together) and its colours,
points_conf       float32 (M,)       confidences (1.0 when the model has none)
points_view       int32 (M,)         and the view (row of extrinsics) each point came from
image_hw          int32 (2,)       (H, W) of the processed frames; required when ``images`` is absent
world_alignment   float64 (4,4)    engine world → aligned world (floor at Z = 0, +Z up, origin below the
                                   first camera, metres when units are metres); for the root object
floor_plane       float64 (4,)     the fitted floor (nx, ny, nz, d), n·x + d = 0, n towards the cameras
report_json       <U ()            the solve report (``SolveReport.to_dict()``) as JSON (optional)
shot_json         <U ()            a video shot: fps, frame_count, focal_px, chunks … as JSON (optional)
================  ===============  =================================================================

A *shot bundle* (a long video solved in chunks) leaves out ``images``, ``depth``, ``conf`` and
``sky``, which would grow with the shot: it carries ``points_*`` and ``image_hw`` instead, and the
number of views N comes from ``extrinsics``. The world frame is the job's reference camera frame
(OpenCV axes); ``world_alignment`` is never baked into points or poses.
"""

from __future__ import annotations

# the parts: schema (keys, files, errors), writer, reader
from .reader import Bundle, BundlePoints, is_complete, read_bundle, read_manifest
from .schema import (
    ARRAYS_FILE,
    BUNDLE_FORMAT,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    SHOT_KEYS,
    BundleError,
    BundleNotFound,
    IncompleteBundle,
    scale_to_original,
)
from .writer import BundleWriter, begin_bundle, finish_bundle, write_bundle

__all__ = [
    "ARRAYS_FILE",
    "BUNDLE_FORMAT",
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "SHOT_KEYS",
    "Bundle",
    "BundleError",
    "BundleNotFound",
    "BundlePoints",
    "BundleWriter",
    "IncompleteBundle",
    "begin_bundle",
    "finish_bundle",
    "is_complete",
    "read_bundle",
    "read_manifest",
    "scale_to_original",
    "write_bundle",
]
