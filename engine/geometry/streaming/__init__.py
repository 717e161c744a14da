"""Long shots in overlapping chunks: plan, spill to disk, join with robust Sim(3)s (numpy only).

The network sees a bounded number of frames at a time (a *chunk*); consecutive chunks share
``overlap`` frames. Each chunk comes back in its own world frame and units (DA3 picks a reference
view per chunk), so the chunks are joined like DA3-Streaming does (DA3_SPEC.md §7,
FORK_AND_PIPELINES.md §4):

1. ``plan_chunks`` cuts ``n`` frames into ranges ``[0, c), [c − o, 2c − o), …``. Unlike
   DA3-Streaming, whose last chunk is truncated (possibly to a handful of new frames), our last
   chunk is moved back to end at the last frame with the full size: every network call sees
   ``chunk_size`` frames (predictable memory, the same context for every chunk) and the last joint
   gets a larger overlap.
2. ``fit_chunk_transform`` back-projects the overlap frames of both chunks through the *same*
   pixels (so the correspondences are pixel-aligned), keeps pixels where both confidences exceed
   ``0.1 · min(median conf)`` and both depths are valid, weights them by ``√(conf₁·conf₂)`` and
   fits the Sim(3) *next chunk's world → previous chunk's world* with ``robust_sim3`` (Huber IRLS),
   then refits it on the inliers with DA3-Streaming's spread-ratio scale (see the code: this
   removes two biases that would otherwise add up from joint to joint).
3. ``StreamingJoiner`` / ``join_chunks`` accumulate the joints to chunk 0's world. A frame that two
   chunks share takes the *later* chunk's estimate (the DA3-Streaming rule), consistently for
   pose, intrinsics and depth; a frame's depth from chunk ``k`` is multiplied by chunk ``k``'s
   accumulated scale.

The parts: ``plan`` (the chunk ranges), ``chunks`` (what a chunk carries, shared constants), ``store``
(chunks and joined parts on disk), ``fit`` (the Sim(3) of one joint), ``join`` (accumulating the
joints). How many frames fit in a chunk is the model's business: ``engine.model.memory``.

Memory stays flat in the number of frames: chunk predictions live in ``.npz`` files of a job
folder (``ChunkStore``), the joiner holds at most two chunks, and the joined per-frame depth is
written part by part (with a reduced point cloud of those frames) as soon as a chunk's frames
are final. Only small per-frame arrays (poses, intrinsics, scales) stay in memory.

Confidence: DA3's any-view confidence is ``1 + exp(·) ≥ 1``; like DA3-Streaming (``conf −= 1``) we
subtract ``conf_offset = 1`` before thresholds and weights. A chunk without confidence counts every
valid pixel as equally confident. Invalid depth (sky, holes) is non-finite or ≤ 0.
"""

from __future__ import annotations

from .chunks import CONF_OFFSET, ChunkJoint, ChunkPrediction, FrameBlock
from .fit import fit_chunk_transform
from .join import JoinedResult, StreamingJoiner, join_chunks
from .plan import plan_chunks
from .store import ChunkStore

__all__ = [
    "CONF_OFFSET",
    "ChunkJoint",
    "ChunkPrediction",
    "ChunkStore",
    "FrameBlock",
    "JoinedResult",
    "StreamingJoiner",
    "fit_chunk_transform",
    "join_chunks",
    "plan_chunks",
]
