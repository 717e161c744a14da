"""What a job can be told (``JobOptions``), with every limit defined once: the engine process, the
command line and the Blender side all check options against these. Standard library and numpy only."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .checked import Checked, ProtocolError, short_repr

__all__ = [
    "CHUNK_OVERLAP_MIN",
    "CHUNK_SIZE_MIN",
    "DATASET_POINTS_DEFAULT",
    "DATASET_POINTS_RANGE",
    "DEFAULT_METRIC_MODEL",
    "DTYPES",
    "EXPORTS",
    "IMAGE_EXTENSIONS",
    "PATCH_SIZE",
    "PROCESS_RES_METHODS",
    "PROCESS_RES_RANGE",
    "REF_VIEW_STRATEGIES",
    "VIDEO_EXTENSIONS",
    "MESH_DETAIL_RANGE",
    "MESH_MIN_FACES",
    "JobOptions",
    "chunking_problem",
    "job_kind",
    "snap_process_res",
]

# Optional files a job can write beside the bundle (reconstruction.npz is always written). These names are
# also the keys of ResultEvent.files, together with "bundle" for reconstruction.npz. "depth" is the folder of
# depth and confidence PNG previews; "splat_previews" the folder of the Gaussians rendered from each view.
EXPORTS = ("points", "gaussians", "mesh", "colmap", "3dgs", "glb", "nerfstudio", "depth", "splat_previews")
PROCESS_RES_METHODS = ("upper_bound_resize", "lower_bound_resize", "upper_bound_crop", "lower_bound_crop")
REF_VIEW_STRATEGIES = ("saddle_balanced", "saddle_sim_range", "first", "middle")
DTYPES = ("auto", "float32", "float16", "bfloat16")
PROCESS_RES_RANGE = (14, 4096)
DEFAULT_METRIC_MODEL = "depth-anything/DA3METRIC-LARGE"
PATCH_SIZE = 14  # DA3's patch: processed image sides are multiples of it
CHUNK_SIZE_MIN = 2  # frames per network pass of a shot, at least
CHUNK_OVERLAP_MIN = 1  # frames consecutive chunks share, at least (and fewer than the chunk)
MESH_DETAIL_RANGE = (0.25, 4.0)  # multiplier of the automatic voxel count per side
MESH_MIN_FACES = 100  # the smallest face budget a decimated mesh can be asked for
DATASET_POINTS_DEFAULT = 300_000  # seed points of a 3dgs/nerfstudio dataset (3DGS chokes on tens of millions)
DATASET_POINTS_RANGE = (1_000, 20_000_000)
# The files a job takes: stills, and videos (one video alone is a shot, see ``job_kind``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".tga", ".exr")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mts", ".mpg", ".mpeg")

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def snap_process_res(value: int) -> int:
    """The nearest multiple of ``PATCH_SIZE`` within ``PROCESS_RES_RANGE`` (what the UI offers)."""
    low, high = PROCESS_RES_RANGE
    snapped = int(round(value / PATCH_SIZE)) * PATCH_SIZE
    return max(-(-low // PATCH_SIZE) * PATCH_SIZE, min(high // PATCH_SIZE * PATCH_SIZE, snapped))


def chunking_problem(chunk_size: int | None, chunk_overlap: int | None) -> tuple[str, str] | None:
    """``(field, what is wrong)`` with a chunk size and overlap (None: automatic), or None when fine."""
    if chunk_size is not None and chunk_size < CHUNK_SIZE_MIN:
        return (
            "chunk_size",
            f"must be at least {CHUNK_SIZE_MIN} frames (or null for automatic), got {chunk_size}",
        )
    if chunk_overlap is not None:
        if chunk_overlap < CHUNK_OVERLAP_MIN:
            return "chunk_overlap", f"must be at least {CHUNK_OVERLAP_MIN} frame, got {chunk_overlap}"
        if chunk_size is not None and chunk_overlap >= chunk_size:
            return "chunk_overlap", f"must be smaller than chunk_size ({chunk_size}), got {chunk_overlap}"
    return None


@dataclass(frozen=True)
class JobOptions(Checked):
    """Everything a reconstruction can be told besides its inputs, output folder and model.

    Defaults follow DA3's own (504 px, upper-bound resize, saddle-balanced reference view).
    """

    process_res: int = 504  # longer side (upper_bound_*) or shorter side (lower_bound_*) in pixels
    process_res_method: str = "upper_bound_resize"  # one of PROCESS_RES_METHODS
    ref_view_strategy: str = "saddle_balanced"  # one of REF_VIEW_STRATEGIES
    use_ray_pose: bool = False  # cameras from the ray head (slower, more precise within a chunk)
    infer_gs: bool = False  # run the Gaussian head (giant and nested models only)
    metric: bool = False  # also run a metric model and scale the result to metres
    metric_model: str = DEFAULT_METRIC_MODEL  # hub id or folder of that metric model
    frames: tuple[int, int | None, int] | None = None  # (start, end, step) over the input frames, end excl.
    target_fps: float | None = None  # resample video inputs to this rate (None: every decoded frame)
    frame_positions_fps: float | None = (
        None  # `frames` counts movie positions round(t·fps) (Blender's VFR numbering)
    )
    device: str = "auto"  # auto, cpu, mps, cuda, cuda:N
    dtype: str = (
        "auto"  # one of DTYPES (auto: bf16 where native on CUDA and CPU, fp16 on old CUDA, else fp32)
    )
    exports: tuple[str, ...] = ()  # extra files beside reconstruction.npz, from EXPORTS
    skip_unreadable: bool = True  # skip undecodable input files with a warning (False: fail the job)
    max_points: int | None = None  # point budget of the exported/imported cloud (None: keep all)
    conf_percentile: float = 40.0  # drop points below this percentile of confidence, in [0, 100)
    cameras: str | None = None  # file with known cameras to condition on (None: predict them)
    seed: int = 0  # seeds every random choice (subsampling, RANSAC) for repeatable results
    chunk_size: int | None = None  # frames per network pass (None: fastest within memory, by a cost model)
    chunk_overlap: int | None = None  # frames shared by chunks (None: ≥ 8 with auto chunks, half a set chunk)
    keep_chunk_cache: bool = False  # keep a shot's chunk cache (<output>/.shot_cache) for inspection
    mesh_voxel_size: float | None = None  # fused mesh voxel edge in scene units (None: from the scene)
    mesh_detail: float = 1.0  # with an automatic voxel size: 2 halves the voxel edge, 0.5 doubles it
    mesh_max_faces: int | None = None  # decimate the fused mesh to this many faces (None: keep all)
    dataset_max_points: int = DATASET_POINTS_DEFAULT  # seed points of the 3dgs and nerfstudio datasets

    def _where(self) -> str:
        return "options"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "options") -> JobOptions:
        """Options from a plain dict; unknown keys are rejected (with a did-you-mean hint)."""
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{where}: expected an object of options, got {short_repr(data)}")
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else f" Known options: {', '.join(names)}."
                raise ProtocolError(f"{where}: unknown option {key!r}.{hint}")
        return cls(**data)

    def _validate(self, where: str) -> None:
        def fail(name: str, message: str) -> None:
            raise ProtocolError(f"{where}.{name}: {message}")

        low, high = PROCESS_RES_RANGE
        if not low <= self.process_res <= high:
            fail("process_res", f"must be between {low} and {high} pixels, got {self.process_res}")
        if self.process_res_method not in PROCESS_RES_METHODS:
            fail("process_res_method", f"must be one of {', '.join(PROCESS_RES_METHODS)}")
        if self.ref_view_strategy not in REF_VIEW_STRATEGIES:
            fail("ref_view_strategy", f"must be one of {', '.join(REF_VIEW_STRATEGIES)}")
        if not self.metric_model:
            fail("metric_model", "must name a hub id or a folder")
        if self.frames is not None:
            start, end, step = self.frames
            if start < 0 or step < 1 or (end is not None and end <= start):
                fail("frames", f"(start, end, step) needs 0 <= start < end and step >= 1, got {self.frames}")
        if self.target_fps is not None and self.target_fps <= 0:
            fail("target_fps", f"must be positive, got {self.target_fps}")
        if self.frame_positions_fps is not None:
            if not self.frame_positions_fps > 0:
                fail("frame_positions_fps", f"must be positive, got {self.frame_positions_fps}")
            if self.target_fps is not None:
                fail("frame_positions_fps", "cannot be combined with target_fps")
        if not _DEVICE_RE.match(self.device):
            fail("device", f"must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if self.dtype not in DTYPES:
            fail("dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        unknown = [name for name in self.exports if name not in EXPORTS]
        if unknown:
            fail("exports", f"unknown export(s) {', '.join(map(repr, unknown))}; known: {', '.join(EXPORTS)}")
        if len(set(self.exports)) != len(self.exports):
            fail("exports", f"lists an export twice: {list(self.exports)}")
        if "gaussians" in self.exports and not self.infer_gs:
            fail("exports", "'gaussians' needs infer_gs=True (the Gaussian head)")
        if "splat_previews" in self.exports and not self.infer_gs:
            fail("exports", "'splat_previews' needs infer_gs=True (the Gaussian head)")
        if self.max_points is not None and self.max_points < 1:
            fail("max_points", f"must be at least 1 (or null for no budget), got {self.max_points}")
        if not 0.0 <= self.conf_percentile < 100.0:
            fail("conf_percentile", f"must be in [0, 100), got {self.conf_percentile}")
        if self.cameras is not None and not self.cameras:
            fail("cameras", "must be a file path or null")
        if not 0 <= self.seed < 2**32:
            fail("seed", f"must be in [0, 2**32), got {self.seed}")
        if self.mesh_voxel_size is not None and not self.mesh_voxel_size > 0:
            fail(
                "mesh_voxel_size",
                f"must be positive (or null: chosen from the scene), got {self.mesh_voxel_size}",
            )
        if not MESH_DETAIL_RANGE[0] <= self.mesh_detail <= MESH_DETAIL_RANGE[1]:
            fail(
                "mesh_detail",
                f"must be between {MESH_DETAIL_RANGE[0]} and {MESH_DETAIL_RANGE[1]}, got {self.mesh_detail}",
            )
        if self.mesh_max_faces is not None and self.mesh_max_faces < MESH_MIN_FACES:
            fail(
                "mesh_max_faces",
                f"must be at least {MESH_MIN_FACES} (or null for no budget), got {self.mesh_max_faces}",
            )
        low, high = DATASET_POINTS_RANGE
        if not low <= self.dataset_max_points <= high:
            fail(
                "dataset_max_points",
                f"must be between {low:,} and {high:,} seed points, got {self.dataset_max_points}",
            )
        problem = chunking_problem(self.chunk_size, self.chunk_overlap)
        if problem is not None:
            fail(*problem)


def job_kind(inputs: tuple[str, ...] | list[str], options: JobOptions) -> str:
    """ "shot" or "still": the one decision of how a job runs and what its bundle holds.

    A shot (one solved camera over a plate, run in overlapping chunks, a shot bundle) is any frame
    sequence when ``chunk_size`` is set, or a job whose only input is one video file — unless it asks
    for Gaussians: those need every frame in one network pass (a still job, with per-view depth). Known
    cameras (``cameras``, e.g. a camera track) keep a video a shot: each chunk is conditioned on its
    frames' cameras. Everything else is a still job.
    """
    if options.chunk_size is not None:
        return "shot"
    if options.infer_gs or len(inputs) != 1:
        return "still"
    return "shot" if str(inputs[0]).lower().endswith(VIDEO_EXTENSIONS) else "still"
