"""A video shot → one solved camera per frame: chunked inference, joining, floor, solve report (issue 5).

Which jobs are shots is decided once, by ``protocol.job_kind`` (``ReconstructRequest.kind``): one
video alone (the matchmoving flow) unless it gives known cameras or asks for Gaussians, or any frame
sequence with ``chunk_size`` set. A shot writes a *shot bundle* (docs/BUNDLE.md): per-frame cameras, a
reduced point cloud, the floor alignment, the solve report and the shot's facts, but no per-frame depth
or images — so memory and disk stay flat in the length of the shot, and Blender sees one format for
every video shot, however short.

Stages, each reported as ``progress(stage, current, total, message)``:

``decode``   frames are decoded once, in order, shrunk by DA3's per-image resize as they come
             (``stages.decode``) and appended to a raw frame cache file in the job folder
             (``FrameCache``); only a few numbers per frame stay in memory. Frames of mixed sizes
             (stills) are centre-cropped to the smallest, DA3's batch rule applied to the whole shot.
``load``     the model.
``network``  one event per chunk (``"chunk 3/12: frames 120–159"``, source frame numbers):
             ``pipeline.predict`` on the chunk's frames read back from the cache, spilled to the chunk
             store and joined to the previous chunk at once (``chunked.run_chunked``: a robust Sim(3)
             on the overlap frames). Cancel is checked between chunks (and between frames while
             decoding) and ends the job with ``JobCancelled``.
``metric``   with ``metric`` and a relative model: the metric model on the *first chunk's* frames
             (those the joined shot takes from it) fits one scale (``metric_scale.fit_scale``); the
             shot is joined in the first chunk's world and units, so that scale holds for all of it.
             Nested models give metres directly.
``solve``    the constant focal length (robust over all frames, plate pixels), the floor (RANSAC on
             the reduced cloud, cameras above it; the origin on the floor below the first camera) and
             the solve report (``build_solve_report`` over the joined frames, plate intrinsics).
``fuse``     with the ``mesh`` export: the joined frames fused into one mesh part by part (memory flat in
             the length of the shot; ``meshing.fuse_stage``).
``export``   points / glb / colmap / mesh from the cameras, the reduced cloud and the fused mesh, then
             the shot bundle.

Known cameras (``cameras``: one per solved frame, e.g. a camera track made in Blender) condition each
chunk on its frames' cameras, which the chunk then keeps exactly, with depth in their units. The chunks
thus share the known cameras' world already: they are joined by the identity (the joint is only
measured, see ``fit_chunk_transform(known=True)``), and no floor is fitted, so the shot's cameras are the
given ones and its points lie in their frame.

Chunking (``chunk_choice``): ``chunk_size`` from the options (with ``chunk_overlap``, else half a
chunk), else the plan that takes least time on this device (a measured cost model: per-frame work plus
global attention quadratic in the chunk, overlap frames computed twice) within the memory there is (free
CUDA memory on a GPU, half the available RAM elsewhere), its overlap at least 8 frames. Inside a chunk
the progress moves every backbone block and head view, with the time per frame and the time left once
the first chunk is done, and a cancel stops the pass at the next block.

The cache (frames, chunks, joined parts) lives in the job's scratch folder beside the output and is
deleted when the job ends, also on error or cancel (a killed job's is removed by the next job on that
output); with ``keep_chunk_cache`` it is kept as ``<output>/.shot_cache``.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import JobCancelled, UserError
from ..formats.bundle.publish import OutputFolder
from ..geometry.cameras import camera_centers
from ..geometry.filters import PointSet
from ..geometry.floor import NoFloorFound, fit_floor, up_from_cameras, world_alignment
from ..geometry.solve_report import SolveReport, build_solve_report
from ..geometry.streaming import CONF_OFFSET, ChunkStore, JoinedResult, plan_chunks
from ..geometry.trajectory import robust_focal
from ..io.frame_cache import FrameCache
from ..io.inputs import FrameRef, expand_inputs
from ..io.video import VideoReadError, probe_video
from ..preprocess import ImageTransform
from ..process.protocol import ReconstructRequest
from .cameras_file import KnownCameras, read_cameras
from .chunk_choice import choose_chunking, default_overlap, duration
from .chunking import chunk_from_prediction, run_chunked
from .context import Context
from .exports import JobResult, ShotGeometry
from .meshing import DepthBlock, fuse_stage
from .stages import (
    Stages,
    batch_side,
    bundle_meta,
    decode,
    export,
    job_summary,
    load_model,
    metric_needed,
    metric_scale,
    network_steps,
    open_output,
    per_view_arrays,
    refuse_non_finite,
    unprocess,
)

__all__ = ["SHOT_CACHE", "default_overlap", "run_shot"]

SHOT_CACHE = ".shot_cache"  # in the scratch folder; kept inside the result with keep_chunk_cache
DEFAULT_POINT_BUDGET = 400_000  # reduced cloud of a shot when the job sets no max_points


def run_shot(request: ReconstructRequest, context: Context, started: float) -> dict[str, Any]:
    """Run one shot job into ``request.output``; returns the summary for ``finished``."""
    options = request.options
    with open_output(request) as target:
        cache = target.scratch / SHOT_CACHE
        with FrameCache(cache / "frames.raw") as frame_cache:
            summary = _Shot(request, context, frame_cache, ChunkStore(cache / "chunks")).run(target, started)
        if options.keep_chunk_cache:  # for inspection, inside the published result (an earlier one goes)
            shutil.rmtree(target.out / SHOT_CACHE, ignore_errors=True)
            os.replace(cache, target.out / SHOT_CACHE)
    summary["seconds"] = round(time.perf_counter() - started, 3)  # the cache's removal included
    context.result(summary["files"], summary)
    return summary


# --- frames -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ShotFrames:
    """The decoded shot: where each frame came from and how it maps to the processed size."""

    refs: list[FrameRef]  # (F,)
    original_sizes: np.ndarray  # (F, 2) int64 (H, W) as decoded
    transforms: list[ImageTransform]  # (F,) original → processed pixels, the shot-wide crop included
    image_hw: tuple[int, int]  # processed size, the same for every frame

    @classmethod
    def from_decoded(cls, decoded) -> _ShotFrames:
        """Frames shrunk one by one (``stages.Frames``) → one size: the centre crop to the smallest."""
        h = min(t.final_hw[0] for t in decoded.transforms)
        w = min(t.final_hw[1] for t in decoded.transforms)
        transforms = []
        for t in decoded.transforms:
            top, left = int(round((t.final_hw[0] - h) / 2.0)), int(round((t.final_hw[1] - w) / 2.0))
            transforms.append(replace(t, batch_crop_offset_yx=(top, left), final_hw=(h, w)))
        return cls(list(decoded.refs), decoded.original_sizes, transforms, (h, w))

    def __len__(self) -> int:
        return len(self.refs)

    def read(self, cache: FrameCache, positions) -> list[np.ndarray]:
        """Processed (H, W, 3) uint8 frames at ``positions`` (a range or an int array), from the cache."""
        h, w = self.image_hw
        out = []
        for i in positions:
            top, left = self.transforms[i].batch_crop_offset_yx
            out.append(cache.read(int(i))[top : top + h, left : left + w])
        return out

    def label(self, position: int) -> int:
        """Source frame number of a position (the position itself for stills)."""
        index = self.refs[position].frame_index
        return index if index >= 0 else position

    def report_frames(self) -> np.ndarray:
        """(F,) int64 frame numbers for the solve report: source frames when they increase, else positions."""
        numbers = np.array([ref.frame_index for ref in self.refs], np.int64)
        if (numbers >= 0).all() and np.all(np.diff(numbers) > 0):
            return numbers
        return np.arange(len(self), dtype=np.int64)


# --- the job ------------------------------------------------------------------------------------------


@dataclass
class _FirstChunk:
    """What the shot takes from its first chunk's prediction (its world and units are the shot's)."""

    units: str
    is_metric: bool
    scale_factor: float | None
    ref_view_idx: int
    model_name: str
    has_conf: bool
    notes: tuple[str, ...]


class _Shot:
    """One shot job, stage by stage (``run``); see the module docstring."""

    def __init__(self, request: ReconstructRequest, context: Context, cache: FrameCache, store: ChunkStore):
        self.request, self.options, self.context = request, request.options, context
        self.cache, self.store = cache, store
        self.stages = Stages(context)
        self.known = read_cameras(self.options.cameras) if self.options.cameras else None
        if self.known is not None and self.known.extrinsics is None:
            raise UserError(
                f"The cameras file {self.known.path} has intrinsics only; a shot needs 'extrinsics' too "
                "(one pose per frame), or leave out the cameras file."
            )

    def run(self, target: OutputFolder, started: float) -> dict[str, Any]:
        frames = _ShotFrames.from_decoded(decode(self.request, self.context, self.stages, self.cache.append))
        if self.known is not None:
            self.known.check_count(len(frames))
        model = load_model(self.request, self.context, self.stages)
        chunk, overlap = self._chunking(model, frames)
        plan = plan_chunks(len(frames), chunk, overlap)
        joined, first = self._network(model, frames, plan, chunk, overlap)
        del model  # the context keeps it loaded; the metric model may take its place
        for note in first.notes:
            self.context.log("warning", note)
        scale = self._metric(joined, frames, first)
        solved = self._solve(joined, frames, scale, first)
        shot = self._shot_info(frames, solved, chunk, overlap, plan)
        result = JobResult(self.request, frames.refs, frames.original_sizes, solved.geometry, solved.k_plate)
        if "mesh" in self.options.exports:
            units = "metre" if scale is not None else first.units
            result.mesh = fuse_stage(
                self._depth_blocks(joined, solved, scale),
                len(frames),
                self.options,
                self.context,
                self.stages,
                units,
            )
        meta = bundle_meta(
            self.request,
            is_metric=scale is not None or first.is_metric,
            units="metre" if scale is not None else first.units,
            scale_factor=scale if scale is not None else first.scale_factor,
            ref_view_idx=first.ref_view_idx,
            report=solved.report.to_dict(),
            shot=shot,
        )
        files = export(target, result, self.context, self.stages, lambda r: _bundle_arrays(r, solved), meta)
        self.context.log("info", solved.report.summary())
        return job_summary(
            self.request,
            target.out,
            meta,
            views=len(frames),
            image_hw=frames.image_hw,
            model_name=first.model_name,
            ref_view=first.ref_view_idx,
            files=files,
            stages=self.stages,
            started=started,
            shot=True,
            chunks=len(plan),
            chunk_size=chunk,
            overlap=overlap,
            focal_px=shot["focal_px"],
            median_error_px=_finite_or_none(solved.report.median_error_px),
        )

    # --- chunks -------------------------------------------------------------------------------------

    def _chunking(self, model, frames: _ShotFrames) -> tuple[int, int]:
        """(chunk size, overlap): the user's, or the fastest plan within memory (``chunk_choice``)."""
        plan = choose_chunking(model, len(frames), frames.image_hw, self.options, self.context)
        return plan.chunk, plan.overlap

    def _network(
        self, model, frames: _ShotFrames, plan: list[range], chunk: int, overlap: int
    ) -> tuple[JoinedResult, _FirstChunk]:
        from ..pipeline import predict  # torch: imported when a job runs

        options, context = self.options, self.context
        side = batch_side(frames.transforms, options.process_res_method)
        timer = self.stages.clock()
        first: list[_FirstChunk] = []
        predicting = [0.0]
        pace = _Pace(len(frames), len(plan))

        # inside a chunk's pass: a cancel check at every step, progress at every block (counting chunks)
        step = network_steps(
            context, lambda e: context.progress("network", pace.done, pace.chunks, pace.inside(e[2]))
        )

        def predict_chunk(positions: range):
            t0 = time.perf_counter()
            given = _given_cameras(self.known, frames, positions)
            prediction = predict(
                model,
                frames.read(self.cache, positions),
                process_res=side,
                process_res_method=options.process_res_method,
                ref_view_strategy=options.ref_view_strategy,
                use_ray_pose=options.use_ray_pose,
                seed=options.seed,
                on_stage=timer,
                on_step=step,
                **given,
            )
            timer.close()
            predicting[0] += time.perf_counter() - t0
            pace.chunk_took(time.perf_counter() - t0)
            refs = [frames.refs[i] for i in positions]
            refuse_non_finite(refs, prediction.extrinsics, prediction.intrinsics, prediction.depth)
            if tuple(prediction.depth.shape[1:]) != frames.image_hw:
                raise RuntimeError(
                    f"predict resized pre-sized frames {frames.image_hw} to {prediction.depth.shape}"
                )
            if not first:
                first.append(
                    _FirstChunk(
                        prediction.units,
                        bool(prediction.is_metric),
                        prediction.scale_factor,
                        int(prediction.ref_view_idx),
                        prediction.model_name,
                        prediction.conf is not None,
                        tuple(prediction.notes),
                    )
                )
            return chunk_from_prediction(prediction, positions)

        def on_progress(done: int, total: int, message: str) -> None:
            if done > 0:
                span = plan[done - 1]
                detail = message.partition(", ")[2]
                message = (
                    f"chunk {done}/{total}: frames {frames.label(span.start)}–{frames.label(span.stop - 1)}"
                )
                message += f", {detail}" if detail else ""
                pace.done = done
                message += pace.eta()
                if done == 1 and total > 1:
                    context.log("info", pace.first_chunk_note())
            context.progress("network", done, total, message)

        self.stages.end()
        context.check_cancel()
        t0 = time.perf_counter()
        joined = run_chunked(
            len(frames),
            predict_chunk,
            self.store,
            chunk,
            overlap,
            should_cancel=context.cancelled,
            on_progress=on_progress,
            cancel_error=JobCancelled,
            point_budget=options.max_points or DEFAULT_POINT_BUDGET,
            keep_chunks=False,
            seed=options.seed,
            known_world=self.known is not None,
        )
        self.stages.add("join", time.perf_counter() - t0 - predicting[0])
        return joined, first[0]

    # --- metric ------------------------------------------------------------------------------------

    def _metric(self, joined: JoinedResult, frames: _ShotFrames, first: _FirstChunk) -> float | None:
        """With ``metric``: the metres per unit of the shot, from the first chunk's frames (else None)."""
        options, context = self.options, self.context
        if not metric_needed(options, first.units, first.model_name, context):
            return None
        block = next(joined.iter_blocks())  # the first chunk's own frames, in the shot's world and units
        scale, _ = metric_scale(
            frames.read(self.cache, block.frames),
            frames.transforms,
            joined.intrinsics[block.frames],  # processed pixels = the pixels both models see
            block.depth,
            block.conf,
            options,
            context,
            self.stages,
            where=f" on the first {len(block.frames)} frames",
        )
        return scale

    # --- solve -------------------------------------------------------------------------------------

    def _solve(self, joined: JoinedResult, frames: _ShotFrames, scale: float | None, first: _FirstChunk):
        """Cameras (scaled), plate intrinsics, the reduced cloud, the floor and the solve report."""
        options, context = self.options, self.context
        parts = len(self.store.joined_parts())
        self.stages.begin("solve", parts + 1, "Fitting the floor")
        s = 1.0 if scale is None else float(scale)
        w2c = np.array(joined.extrinsics, np.float64)  # (F, 3, 4)
        w2c[:, :, 3] *= s  # camera centres scale with t: the world is scaled about its origin
        k = np.asarray(joined.intrinsics, np.float64)  # (F, 3, 3) processed pixels
        k_plate = unprocess(frames.transforms, k)  # (F, 3, 3) plate pixels
        points = _point_set(joined.points(), s, w2c, k, frames.image_hw, first.has_conf)
        if self.known is None:
            floor_plane, alignment = self._floor(points, w2c)
        else:
            floor_plane, alignment = None, None
            context.log("info", "Known cameras: the shot keeps their world (no floor is fitted).")

        numbers = frames.report_frames()

        def blocks() -> Iterator[tuple]:
            for done, block in enumerate(joined.iter_blocks(), 1):
                context.check_cancel()
                depth = block.depth if s == 1.0 else block.depth * np.float32(s)
                yield numbers[block.frames], depth, block.conf, block.images
                context.progress(
                    "solve", done, parts + 1, f"Measured frames up to {numbers[block.frames[-1]]}"
                )

        report = build_solve_report(
            numbers,
            w2c,
            k,
            blocks(),
            image_hw=frames.image_hw,
            plate_intrinsics=k_plate,
            joints=joined.joints,
            seed=options.seed,
        )
        context.progress("solve", parts + 1, parts + 1, "Solve report ready")
        units = "metre" if scale is not None else first.units
        geometry = ShotGeometry(w2c, k, frames.image_hw, points, world_alignment=alignment, units=units)
        return _Solved(geometry, k_plate.astype(np.float32), report, floor_plane, alignment)

    def _depth_blocks(self, joined: JoinedResult, solved, scale: float | None) -> Iterator[DepthBlock]:
        """The joined frames part by part, scaled like the solved cameras, for the fuse stage."""
        s = np.float32(1.0 if scale is None else scale)
        w2c, k = solved.geometry.extrinsics, solved.geometry.intrinsics
        for block in joined.iter_blocks():
            depth = block.depth if s == 1.0 else block.depth * s
            yield DepthBlock(depth, w2c[block.frames], k[block.frames], block.images, block.conf, None)

    def _floor(self, points: PointSet, w2c: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(floor_plane (4,), world_alignment (4, 4)) or (None, None) with a warning when there is no floor."""
        centres = camera_centers(w2c)
        try:
            up = up_from_cameras(w2c)
        except ValueError:
            up = None
        try:
            floor = fit_floor(points.xyz, points.conf, centres, up_hint=up, seed=self.options.seed)
        except NoFloorFound as exc:
            self.context.log("warning", f"No floor found ({exc}); the shot keeps the camera's axes.")
            return None, None
        alignment = world_alignment(floor, centres[0], forward=w2c[0, 2, :3])  # the first camera looks +Y
        plane = np.append(floor.normal, -floor.offset)  # n·x − offset = 0 → (n, d = −offset)
        return plane, alignment

    def _shot_info(self, frames: _ShotFrames, solved, chunk: int, overlap: int, plan: list[range]) -> dict:
        """shot_json: the source's fps and frame count, the constant focal length, the chunking."""
        fps, nominal, count = None, None, len(expand_inputs(list(self.request.inputs)))
        video = next((ref.path for ref in frames.refs if ref.frame_index >= 0), None)
        if video is not None:
            try:
                info = probe_video(video)
                fps, count = info.fps if info.fps > 0 else None, info.frame_count
                nominal = info.nominal_fps if info.nominal_fps > 0 else fps
            except VideoReadError as exc:
                self.context.log("warning", f"Could not read the frame rate of {Path(video).name}: {exc}")
        k = solved.k_plate.astype(np.float64)
        focal, spread = robust_focal(k[:, 0, 0])
        focal_y, _ = robust_focal(k[:, 1, 1])
        return {
            "fps": fps,
            "nominal_fps": nominal,  # the declared rate players time frames by (differs from fps for VFR)
            "frame_count": int(count),
            "focal_px": focal,
            "focal_y_px": focal_y,
            "focal_spread_px": spread,
            "chunk_size": int(chunk),
            "overlap": int(overlap),
            "chunks": [[span.start, span.stop - 1] for span in plan],
        }


class _Pace:
    """How fast the chunks go: the time per frame and the time left, from the chunks done so far."""

    def __init__(self, frames: int, chunks: int) -> None:
        self.frames, self.chunks, self.done = frames, chunks, 0
        self.seconds: list[float] = []

    def chunk_took(self, seconds: float) -> None:
        self.seconds.append(seconds)

    def _per_chunk(self) -> float:
        return sum(self.seconds) / len(self.seconds)

    def per_frame(self) -> float:
        return self._per_chunk() * self.chunks / self.frames

    def left(self) -> float:
        return self._per_chunk() * (self.chunks - self.done)

    def eta(self) -> str:
        if not self.seconds or self.done >= self.chunks:
            return ""
        return f"; {self.per_frame():.2f} s per frame, about {duration(self.left())} left"

    def inside(self, step: str) -> str:
        return f"chunk {self.done + 1}/{self.chunks}: {step}{self.eta()}"

    def first_chunk_note(self) -> str:
        total = self._per_chunk() * self.chunks
        return (
            f"First chunk in {self.seconds[0]:.1f} s: {self.per_frame():.2f} s per frame, about "
            f"{duration(total)} for the network ({duration(self.left())} left)."
        )


@dataclass(frozen=True)
class _Solved:
    geometry: ShotGeometry
    k_plate: np.ndarray  # (F, 3, 3) float32 intrinsics at the plate size
    report: SolveReport
    floor_plane: np.ndarray | None  # (4,) float64
    alignment: np.ndarray | None  # (4, 4) float64


def _given_cameras(
    known: KnownCameras | None, frames: _ShotFrames, positions: range
) -> dict[str, np.ndarray]:
    """``predict``'s known cameras for the frames at ``positions`` (intrinsics in processed pixels); none
    without a cameras file."""
    if known is None:
        return {}
    rows = list(positions)
    k = np.stack([frames.transforms[i].apply_to_intrinsics(known.intrinsics[i]) for i in rows])
    return {"intrinsics": k, "extrinsics": known.extrinsics[rows]}


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _point_set(
    cloud: dict[str, np.ndarray],
    scale: float,
    w2c: np.ndarray,
    k: np.ndarray,
    image_hw: tuple[int, int],
    has_conf: bool,
) -> PointSet:
    """The joiner's reduced cloud (``JoinedResult.points()``) as a ``PointSet`` in the shot's units.

    The joiner stores DA3 confidence less its offset; it is given back (``conf ≥ 1`` as in points.ply
    of a still job), or 1.0 when the model has none. ``pixel`` is each point's projection in its view.
    """
    xyz = np.asarray(cloud["xyz"], np.float64) * scale  # (M, 3)
    view = np.asarray(cloud["frame"], np.int64)  # (M,) positions = rows of the cameras
    cam = np.einsum("mij,mj->mi", w2c[view, :, :3], xyz) + w2c[view, :, 3]
    uvw = np.einsum("mij,mj->mi", k[view], cam)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.floor(uvw[:, :2] / uvw[:, 2:3])
    uv = np.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0)
    h, w = image_hw
    pixel = np.stack([np.clip(uv[:, 0], 0, w - 1), np.clip(uv[:, 1], 0, h - 1)], -1).astype(np.int32)
    conf = np.asarray(cloud["conf"], np.float32)
    return PointSet(
        xyz=xyz.astype(np.float32),
        rgb=np.asarray(cloud["rgb"], np.uint8),
        conf=conf + np.float32(CONF_OFFSET) if has_conf else np.ones_like(conf),
        view=view.astype(np.int32),
        pixel=pixel,
    )


def _bundle_arrays(r: JobResult, solved: _Solved) -> dict[str, Any]:
    """The shot bundle's arrays (schema: docs/BUNDLE.md, "Shot bundles")."""
    g = solved.geometry
    arrays: dict[str, Any] = {
        "extrinsics": g.extrinsics,
        "intrinsics": g.intrinsics,
        **per_view_arrays(r),
        "points_xyz": g.points.xyz,
        "points_rgb": g.points.rgb,
        "points_conf": g.points.conf,
        "points_view": g.points.view,
        "image_hw": np.array(g.image_hw, np.int32),
    }
    if solved.alignment is not None:
        arrays["world_alignment"] = solved.alignment
        arrays["floor_plane"] = solved.floor_plane
    return arrays
