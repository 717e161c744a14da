"""Run any "predict one chunk" function over a long shot, with flat memory (numpy only, no torch).

``run_chunked`` plans overlapping chunks (``geometry.streaming.plan_chunks``), calls
``predict_chunk(frames)`` for each, spills each prediction to the job folder (``ChunkStore``) and
joins it to the previous one right away (``StreamingJoiner``), so at most two chunks are in memory
and every chunk's final frames reach the disk as soon as they are known. Between chunks it checks
``should_cancel`` and reports progress; the job runner plugs ``pipeline.predict`` in through a small
adapter (see ``chunk_from_prediction``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..geometry.streaming import ChunkPrediction, ChunkStore, JoinedResult, StreamingJoiner, plan_chunks
from ..io.inputs import Cancelled

__all__ = ["chunk_from_prediction", "run_chunked"]

ProgressCallback = Callable[[int, int, str], None]  # (chunks done, chunks total, message)


def chunk_from_prediction(prediction, frames: range | np.ndarray) -> ChunkPrediction:
    """A ``pipeline.Prediction`` (any object with its fields) → ``ChunkPrediction`` for global ``frames``.

    Sky pixels (when the model has a sky mask) become invalid depth (NaN), so they never join.
    """
    depth = np.asarray(prediction.depth, np.float32)
    sky = getattr(prediction, "sky", None)
    if sky is not None:
        depth = np.where(np.asarray(sky, bool), np.float32(np.nan), depth)
    return ChunkPrediction(
        frames=np.asarray(frames, np.int64),
        depth=depth,
        extrinsics=np.asarray(prediction.extrinsics),
        intrinsics=np.asarray(prediction.intrinsics),
        conf=getattr(prediction, "conf", None),
        images=getattr(prediction, "processed_images", None),
    )


def run_chunked(
    frames_count: int,
    predict_chunk: Callable[[range], ChunkPrediction],
    store: ChunkStore,
    chunk_size: int,
    overlap: int,
    should_cancel: Callable[[], bool] | None = None,
    on_progress: ProgressCallback | None = None,
    *,
    cancel_error: type[BaseException] = Cancelled,
    point_budget: int = 400_000,
    keep_chunks: bool = True,
    seed: int = 0,
    known_world: bool = False,
) -> JoinedResult:
    """Predict ``frames_count`` frames in overlapping chunks and join them into chunk 0's world.

    Frames are positions ``0 … frames_count − 1`` in the shot as solved (after any stride); the
    caller maps them to source frames. predict_chunk(frames: range) → ChunkPrediction for exactly
    those frames (its ``frames`` field must equal the range); store: where chunks and joined parts
    are written;
    should_cancel() is checked before every chunk and before the final join (``cancel_error`` is
    raised when it returns True; a ``should_cancel`` that raises its own exception works too);
    on_progress(done, total, message) after every chunk, with the joint's residual;
    point_budget: size of the reduced point cloud of the whole shot; keep_chunks=False deletes each
    raw chunk file once it has been joined (the joined parts stay); known_world: the chunks share the
    world of known cameras, so they are joined by the identity (``StreamingJoiner``).
    """
    chunks = plan_chunks(frames_count, chunk_size, overlap)
    total = len(chunks)
    cancel = should_cancel or (lambda: False)
    progress = on_progress or (lambda done, total, message: None)
    joiner = StreamingJoiner(
        store,
        points_per_frame=max(1, int(point_budget) // int(frames_count)),
        seed=seed,
        known_world=known_world,
    )
    what = f"{total} chunks of {chunk_size} frames overlapping by {overlap}" if total > 1 else "one chunk"
    progress(0, total, f"{frames_count} frames in {what}")
    for k, frames in enumerate(chunks):
        if cancel():
            raise cancel_error(f"Cancelled before chunk {k + 1} of {total}.")
        chunk = predict_chunk(frames)
        if not isinstance(chunk, ChunkPrediction):
            raise TypeError(f"predict_chunk must return a ChunkPrediction, got {type(chunk).__name__}")
        if not np.array_equal(chunk.frames, np.arange(frames.start, frames.stop)):
            raise ValueError(
                f"predict_chunk returned frames {chunk.frames[0]}…{chunk.frames[-1]} ({len(chunk)}) for "
                f"chunk {k} that asked for {frames.start}…{frames.stop - 1} ({len(frames)})"
            )
        store.write_chunk(k, chunk)
        joint = joiner.add(chunk)
        del chunk
        if not keep_chunks and k > 0:
            store.delete_chunk(k - 1)
        message = f"chunk {k + 1} of {total} (frames {frames.start}–{frames.stop - 1})"
        if joint is not None:
            if joint.method in ("points", "known") and np.isfinite(joint.relative_residual):
                message += f", joint residual {100 * joint.relative_residual:.2f} % of depth"
            else:
                message += ", joined on cameras only (too few confident pixels in the overlap)"
        progress(k + 1, total, message)
    if cancel():
        raise cancel_error("Cancelled before the chunks were joined.")
    result = joiner.finish()
    if not keep_chunks:
        store.delete_chunk(total - 1)
    return result
