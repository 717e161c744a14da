"""Depth maps → one triangle mesh: TSDF fusion in sparse voxel blocks, then marching cubes.

``fuse(depth, extrinsics, intrinsics, colors=, conf=, sky=)`` does it in one call; ``TSDFVolume``
takes views batch by batch (a shot's chunks), so memory follows the surface, not the number of
frames or the scene's bounding box.

- **Pixels** (``fusion_weights``): sky, non-finite and non-positive depth, the least confident
  ``conf_drop`` percent and isolated pixels (fewer than two of their 8 neighbours within a relative
  depth step: flying pixels and outliers) are left out; the rest weigh by confidence relative to its
  median (1 without confidence), clipped to [0.1, 4].
- **Voxel size** (``auto_voxel_size``): ``AUTO_VOXEL_FOOTPRINTS`` pixel footprints at the median
  depth, divided by ``detail``: a metric scene and the same scene in relative units give the same
  mesh up to scale. Pixels whose footprint is wider than ``MAX_FOOTPRINT_VOXELS`` voxels (far
  background) are left out, which also bounds the number of blocks a view can allocate.
- **Integration** (``TSDFVolume.integrate``): blocks of 8³ voxels are allocated along each kept
  pixel's ray within the truncation band (±``TRUNC_VOXELS`` voxels of z-depth); the view then updates
  every voxel of those blocks with the projective signed distance ``depth − z`` (truncated, kept
  where it is above −truncation), a confidence-weighted running mean of distance and colour. In
  torch, on the GPU when the volume is given a CUDA device; blocks in batches, so temporaries stay
  small.
- **Extraction** (``TSDFVolume.extract``): blocks are gathered into dense 64³ chunks with a one-voxel
  border from their neighbours; marching cubes (PyMCubes) runs per chunk; a triangle is kept when
  each of its vertices lies between two observed voxels whose distances do not jump (a jump from
  +1 to −1 is an occlusion edge, not a surface); vertices on chunk borders are welded; colours are
  interpolated along the same edges. ``max_faces`` decimates with fast-simplification (quadric
  error), colours following the collapsed vertices.

Conventions (DESIGN.md §3): OpenCV world-to-camera extrinsics (N, 3, 4), pixel intrinsics with pixel
centres at +0.5, z-depth. Triangles wind counter-clockwise seen from the side the cameras saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .mesh import Mesh

__all__ = [
    "AUTO_VOXEL_FOOTPRINTS",
    "BLOCK",
    "CONF_DROP_PERCENT",
    "MAX_FOOTPRINT_VOXELS",
    "TRUNC_VOXELS",
    "FusionTooLarge",
    "TSDFVolume",
    "auto_voxel_size",
    "decimate",
    "fuse",
    "fusion_weights",
]

BLOCK = 8  # voxels per block side
CHUNK_BLOCKS = 8  # blocks per extraction chunk side (64³ voxels)
TRUNC_VOXELS = 4.0  # truncation band, in voxels of z-depth each side of the surface
AUTO_VOXEL_FOOTPRINTS = 2.0  # automatic voxel edge, in pixel footprints at the median depth
MAX_FOOTPRINT_VOXELS = 4.0  # pixels wider than this many voxels at their depth are left out
CONF_DROP_PERCENT = 10.0  # the least confident pixels left out, in percent of the kept ones
NEIGHBOUR_STEP = 0.05  # relative depth step within which a neighbour agrees with a pixel
MIN_AGREEING_NEIGHBOURS = 2  # of 8: fewer, and the pixel is an outlier or a flying pixel
SURFACE_JUMP = 1.0  # a vertex between voxels whose truncated distances differ more is an occlusion edge
DEFAULT_MAX_BLOCKS = 2_000_000  # about 20 GB of voxels: beyond, the voxel size is too small for the scene
_BAND_SAMPLES = 5  # points along each pixel's ray through the band (every quarter block) to allocate blocks
_UPDATE_BATCH = 4096  # blocks updated at once (2 M voxels)
_KEY_OFFSET = 1 << 20  # block coordinates are offset into [0, 2^21) per axis for the 63-bit key
_KEY_BITS = 21


class FusionTooLarge(ValueError):
    """The voxel size is too small for the scene: more blocks than the memory budget allows."""


@dataclass(frozen=True)
class _Grid:
    """Dense per-chunk arrays gathered from the blocks (one-voxel border included)."""

    tsdf: np.ndarray
    weight: np.ndarray
    color: np.ndarray | None


def _neighbour_agreement(depth: np.ndarray, valid: np.ndarray, step: float) -> np.ndarray:
    """(N, H, W) count of the 8 neighbours whose depth is within ``step`` (relative) of the pixel."""
    n, h, w = depth.shape
    padded = np.zeros((n, h + 2, w + 2), np.float32)
    padded[:, 1:-1, 1:-1] = np.where(valid, depth, 0.0)
    count = np.zeros((n, h, w), np.uint8)
    tol = depth * np.float32(step)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue
            other = padded[:, dy : dy + h, dx : dx + w]
            count += ((other > 0) & (np.abs(other - depth) <= tol)).astype(np.uint8)
    return count


def fusion_weights(
    depth: np.ndarray,
    conf: np.ndarray | None = None,
    sky: np.ndarray | None = None,
    *,
    conf_drop: float = CONF_DROP_PERCENT,
) -> np.ndarray:
    """(N, H, W) float32 weight of each pixel in the fusion; 0 leaves it out (see the module doc)."""
    depth = np.asarray(depth, np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if sky is not None:
        valid &= ~np.asarray(sky, bool)
    if valid.any():
        valid &= _neighbour_agreement(depth, valid, NEIGHBOUR_STEP) >= MIN_AGREEING_NEIGHBOURS
    weight = valid.astype(np.float32)
    if conf is None or not valid.any():
        return weight
    conf = np.asarray(conf, np.float32)
    kept = conf[valid]
    if conf_drop > 0:
        valid &= conf >= np.percentile(kept, conf_drop)
        kept = conf[valid]
    median = float(np.median(kept)) if kept.size else 1.0
    scaled = np.clip(conf / max(median, 1e-12), 0.1, 4.0)
    return np.where(valid, scaled, 0.0).astype(np.float32)


def auto_voxel_size(
    depth: np.ndarray, intrinsics: np.ndarray, weights: np.ndarray | None = None, *, detail: float = 1.0
) -> float:
    """The voxel edge from the scene's scale: ``AUTO_VOXEL_FOOTPRINTS`` pixel footprints at the median
    depth of the kept pixels (over all views), divided by ``detail``."""
    depth = np.asarray(depth, np.float32)
    k = np.asarray(intrinsics, np.float64).reshape(-1, 3, 3)
    keep = np.isfinite(depth) & (depth > 0) if weights is None else np.asarray(weights) > 0
    if not keep.any():
        raise ValueError("no valid depth to choose a voxel size from")
    focal = np.sqrt(k[:, 0, 0] * k[:, 1, 1])  # (N,)
    footprint = depth / focal[:, None, None].astype(np.float32)  # world size of one pixel at its depth
    sample = footprint[keep]
    if sample.size > 2_000_000:
        sample = sample[:: sample.size // 1_000_000]
    return float(np.median(sample)) * AUTO_VOXEL_FOOTPRINTS / float(detail)


def _encode(coords: torch.Tensor) -> torch.Tensor:
    """(…, 3) int64 block coordinates → (…,) int64 keys."""
    c = coords + _KEY_OFFSET
    return (c[..., 0] << (2 * _KEY_BITS)) | (c[..., 1] << _KEY_BITS) | c[..., 2]


def _decode(keys: np.ndarray) -> np.ndarray:
    mask = (1 << _KEY_BITS) - 1
    return np.stack([keys >> (2 * _KEY_BITS), (keys >> _KEY_BITS) & mask, keys & mask], axis=1) - _KEY_OFFSET


class TSDFVolume:
    """A truncated signed distance volume in sparse 8³ blocks (see the module doc).

    ``integrate`` any number of times (views in batches, a shot's chunks), then ``extract``.
    """

    def __init__(
        self,
        voxel_size: float,
        *,
        trunc_voxels: float = TRUNC_VOXELS,
        colors: bool = True,
        device: str | torch.device = "cpu",
        max_blocks: int = DEFAULT_MAX_BLOCKS,
    ):
        if not voxel_size > 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        self.voxel_size = float(voxel_size)
        self.trunc = float(trunc_voxels) * self.voxel_size
        self.device = torch.device(device)
        self.max_blocks = int(max_blocks)
        self.has_colors = colors
        self.views = 0
        n = BLOCK**3
        self._keys = torch.zeros(0, dtype=torch.int64, device=self.device)  # (B,) in allocation order
        self._sorted_keys = self._keys
        self._sorted_index = self._keys
        self._tsdf = torch.ones((1024, n), dtype=torch.float32, device=self.device)
        self._weight = torch.zeros((1024, n), dtype=torch.float32, device=self.device)
        self._color = torch.zeros((1024, n, 3), dtype=torch.float32, device=self.device) if colors else None
        offsets = torch.stack(
            torch.meshgrid(*(torch.arange(BLOCK, device=self.device),) * 3, indexing="ij"), dim=-1
        )
        self._voxel_offsets = offsets.reshape(n, 3).to(torch.float32)  # (512, 3) x, y, z within a block

    @property
    def num_blocks(self) -> int:
        return int(self._keys.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes the voxel data takes (allocated blocks only)."""
        per_voxel = 4 + 4 + (12 if self.has_colors else 0)
        return self.num_blocks * BLOCK**3 * per_voxel

    # --- blocks -------------------------------------------------------------------------------------

    def _lookup(self, keys: torch.Tensor) -> torch.Tensor:
        """Block index of each key, −1 where the block does not exist."""
        if not len(self._sorted_keys):
            return torch.full_like(keys, -1)
        pos = torch.searchsorted(self._sorted_keys, keys).clamp(max=len(self._sorted_keys) - 1)
        found = self._sorted_keys[pos] == keys
        return torch.where(found, self._sorted_index[pos], torch.full_like(keys, -1))

    def _allocate(self, keys: torch.Tensor) -> torch.Tensor:
        """Block indices of unique ``keys``, allocating the missing ones."""
        index = self._lookup(keys)
        new = keys[index < 0]
        if len(new):
            start = self.num_blocks
            if start + len(new) > self.max_blocks:
                raise FusionTooLarge(
                    f"the mesh needs more than {self.max_blocks:,} voxel blocks at a voxel size of "
                    f"{self.voxel_size:.4g}: lower the detail or give a larger voxel size"
                )
            self._grow(start + len(new))
            self._keys = torch.cat([self._keys, new])
            order = torch.argsort(self._keys)
            self._sorted_keys = self._keys[order]
            self._sorted_index = order
            index[index < 0] = torch.arange(start, start + len(new), device=self.device)
        return index

    def _grow(self, needed: int) -> None:
        capacity = self._tsdf.shape[0]
        if needed <= capacity:
            return
        size = max(needed, capacity * 2)
        grow = size - capacity
        self._tsdf = torch.cat([self._tsdf, torch.ones((grow, BLOCK**3), device=self.device)])
        self._weight = torch.cat([self._weight, torch.zeros((grow, BLOCK**3), device=self.device)])
        if self._color is not None:
            self._color = torch.cat([self._color, torch.zeros((grow, BLOCK**3, 3), device=self.device)])

    # --- integration --------------------------------------------------------------------------------

    def integrate(
        self,
        depth: np.ndarray,
        extrinsics: np.ndarray,
        intrinsics: np.ndarray,
        weights: np.ndarray,
        colors: np.ndarray | None = None,
        *,
        on_view: Callable[[], None] | None = None,
    ) -> None:
        """Add views: depth (N, H, W), extrinsics (N, 3|4, 4) w2c, intrinsics (N, 3, 3), weights
        (N, H, W) from ``fusion_weights`` (0: left out), colors (N, H, W, 3) uint8. ``on_view`` is
        called after each view (progress, cancel)."""
        depth = np.asarray(depth, np.float32)
        n = depth.shape[0]
        for i in range(n):
            rgb = None if colors is None or self._color is None else colors[i]
            self._integrate_view(depth[i], extrinsics[i], intrinsics[i], weights[i], rgb)
            self.views += 1
            if on_view is not None:
                on_view()

    def _integrate_view(self, depth, w2c, k, weight, rgb) -> None:
        dev = self.device
        k = np.asarray(k, np.float64)
        fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
        weight = np.asarray(weight, np.float32)
        too_far = depth * np.float32(1.0 / np.sqrt(fx * fy)) > MAX_FOOTPRINT_VOXELS * self.voxel_size
        weight = np.where(too_far, np.float32(0), weight)
        if not (weight > 0).any():
            return
        d = torch.from_numpy(np.where(weight > 0, depth, 0).astype(np.float32)).to(dev)
        w_img = torch.from_numpy(weight).to(dev)
        rot = torch.as_tensor(np.asarray(w2c, np.float64)[:3, :3], dtype=torch.float32, device=dev)
        trans = torch.as_tensor(np.asarray(w2c, np.float64)[:3, 3], dtype=torch.float32, device=dev)
        blocks = self._allocate(self._touched_keys(d, rot, trans, fx, fy, cx, cy))
        col = None if rgb is None else torch.from_numpy(np.asarray(rgb, np.float32)).to(dev)
        for s in range(0, len(blocks), _UPDATE_BATCH):
            self._update(blocks[s : s + _UPDATE_BATCH], d, w_img, col, rot, trans, (fx, fy, cx, cy))

    def _touched_keys(self, d, rot, trans, fx, fy, cx, cy) -> torch.Tensor:
        """Unique keys of the blocks that the band around each kept pixel's surface point crosses.

        Pixels are taken every ``stride`` rows and columns, the stride chosen so that neighbouring
        samples stay within half a block at the 95th percentile of depth (a block spans many pixels;
        with the band sampled every quarter block, only corners the band clips can be missed).
        """
        kept = d[d > 0]
        some = kept[:: max(1, len(kept) // 10_000)]  # plenty for a percentile; kthvalue, not quantile (10x)
        z_far = float(torch.kthvalue(some, int(0.95 * (len(some) - 1)) + 1).values)
        stride = int(max(1, min(8, (BLOCK * self.voxel_size / 2) // (z_far / min(fx, fy)))))
        sub = torch.zeros_like(d)
        sub[::stride, ::stride] = d[::stride, ::stride]
        if stride > 1:  # the last row and column too, so the image border is covered
            sub[-1, ::stride], sub[::stride, -1] = d[-1, ::stride], d[::stride, -1]
        vs, us = torch.nonzero(sub > 0, as_tuple=True)
        z = d[vs, us]
        rays = torch.stack(
            [(us.float() + 0.5 - cx) / fx, (vs.float() + 0.5 - cy) / fy, torch.ones_like(z)], 1
        )
        block_edge = self.voxel_size * BLOCK
        keys = []
        for s in torch.linspace(-1.0, 1.0, _BAND_SAMPLES).tolist():
            cam = rays * (z + s * self.trunc).clamp(min=1e-6)[:, None]
            world = (cam - trans) @ rot  # R^T (p - t)
            keys.append(_encode(torch.floor(world / block_edge).to(torch.int64)))
        return torch.unique(torch.cat(keys))

    def _update(self, blocks, d, w_img, col, rot, trans, k) -> None:
        """Fold one view into the voxels of ``blocks`` it sees in front of (or just behind) its depth."""
        fx, fy, cx, cy = k
        h, w = d.shape
        coords = torch.from_numpy(_decode(self._keys[blocks].cpu().numpy())).to(self.device)
        origin = coords.to(torch.float32) * BLOCK  # (b, 3) voxel index of each block's first voxel
        grid = (origin[:, None, :] + self._voxel_offsets[None] + 0.5).reshape(-1, 3)  # voxel centres
        cam = torch.addmm(trans, grid, rot.T * self.voxel_size)  # (b·512, 3) camera coordinates
        z = cam[:, 2]
        zs = z.clamp(min=1e-6)
        u = torch.floor(cam[:, 0] / zs * fx + cx)
        v = torch.floor(cam[:, 1] / zs * fy + cy)
        inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        pixel = (v.clamp(0, h - 1) * w + u.clamp(0, w - 1)).to(torch.int64)
        depth = d.reshape(-1)[pixel]
        sdf = depth - z
        use = torch.nonzero(inside & (depth > 0) & (sdf >= -self.trunc), as_tuple=True)[0]
        if not len(use):
            return
        pixel = pixel[use]
        voxel = (blocks[:, None] * BLOCK**3 + torch.arange(BLOCK**3, device=self.device)).reshape(-1)[use]
        tsdf = (sdf[use] / self.trunc).clamp(max=1.0)
        wv = w_img.reshape(-1)[pixel]
        all_t, all_w = self._tsdf.view(-1), self._weight.view(-1)
        old_w = all_w[voxel]
        total = old_w + wv
        blend = wv / total  # every used pixel has a positive weight, so total > 0
        old_t = all_t[voxel]
        all_t[voxel] = old_t + (tsdf - old_t) * blend
        all_w[voxel] = total
        if col is not None and self._color is not None:
            all_c = self._color.view(-1, 3)
            old_c = all_c[voxel]
            all_c[voxel] = old_c + (col.reshape(-1, 3)[pixel] - old_c) * blend[:, None]

    # --- extraction ---------------------------------------------------------------------------------

    def extract(self, *, min_weight: float = 0.0, on_chunk: Callable[[int, int], None] | None = None) -> Mesh:
        """The zero surface as a mesh in world units (see the module doc); ``on_chunk(done, total)``."""
        nb = self.num_blocks
        if nb == 0:
            return Mesh.empty(colors=self.has_colors)
        keys = self._keys.cpu().numpy()
        coords = _decode(keys)
        tsdf = self._tsdf[:nb].cpu().numpy()
        weight = self._weight[:nb].cpu().numpy()
        color = None if self._color is None else self._color[:nb].cpu().numpy()
        chunks = np.floor_divide(coords, CHUNK_BLOCKS)
        local = coords - chunks * CHUNK_BLOCKS
        by_chunk = _group_rows(chunks)
        parts_v, parts_f, parts_c = [], [], []
        base = 0
        total = len(by_chunk)
        for done, (chunk, members) in enumerate(by_chunk.items(), 1):
            gathered = [(members, local[members])]
            for e in _NEIGHBOUR_OFFSETS:
                other = by_chunk.get(tuple(np.add(chunk, e)))
                if other is None:
                    continue
                on_face = np.all(local[other][:, e == 1] == 0, axis=1)
                sel = other[on_face]
                if len(sel):
                    gathered.append((sel, local[sel] + e * CHUNK_BLOCKS))
            grid, origin = _dense_chunk(gathered, tsdf, weight, color)
            verts, faces, cols = _chunk_surface(grid, min_weight)
            if len(faces):
                parts_v.append(verts + (np.asarray(chunk, np.float64) * CHUNK_BLOCKS * BLOCK + origin))
                parts_f.append(faces + base)
                parts_c.append(cols)
                base += len(verts)
            if on_chunk is not None:
                on_chunk(done, total)
        if not parts_f:
            return Mesh.empty(colors=self.has_colors)
        verts = np.concatenate(parts_v)
        faces = np.concatenate(parts_f)
        cols = None if color is None else np.concatenate(parts_c)
        verts, faces, cols = _weld_chunk_borders(verts, faces, cols)
        world = ((verts + 0.5) * self.voxel_size).astype(np.float32)
        rgb = None if cols is None else np.clip(np.round(cols), 0, 255).astype(np.uint8)
        return Mesh(world, faces, rgb)


_NEIGHBOUR_OFFSETS = [np.array(e) for e in np.ndindex(2, 2, 2) if any(e)]
_SIDE = CHUNK_BLOCKS * BLOCK  # voxels per chunk side
_DENSE = _SIDE + BLOCK  # dense array side: the chunk plus the first block layer of the next chunk


def _group_rows(rows: np.ndarray) -> dict[tuple[int, int, int], np.ndarray]:
    """{row as a tuple: indices of the rows equal to it}."""
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    splits = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
    return {tuple(int(x) for x in u): idx for u, idx in zip(uniq, np.split(order, splits), strict=True)}


_BLOCK_VOXELS = np.stack(np.meshgrid(*(np.arange(BLOCK),) * 3, indexing="ij"), -1).reshape(-1, 3)


def _dense_chunk(gathered, tsdf, weight, color) -> tuple[_Grid, np.ndarray]:
    """Dense arrays of one chunk (at most 65³: the chunk and the first voxel layer of the next ones),
    cropped to the blocks it has, and the voxel offset of the crop in the chunk.

    Marching cubes then visits only the box around the surface's blocks (a wall along an axis fills
    a thin slab of a chunk, not all of it); voxels outside any block are unobserved, so the crop
    changes nothing in the mesh."""
    pos = np.concatenate([p for _, p in gathered])
    lo = pos.min(axis=0) * BLOCK
    hi = np.minimum((pos.max(axis=0) + 1) * BLOCK, _SIDE + 1)
    shape = tuple(int(x) for x in hi - lo)
    dense = tuple(int(x) for x in (pos.max(axis=0) + 1) * BLOCK - lo)  # whole blocks, cut afterwards
    strides = np.array([dense[1] * dense[2], dense[2], 1])
    size = int(np.prod(dense))
    t = np.ones(size, np.float32)
    w = np.zeros(size, np.float32)
    c = None if color is None else np.zeros((size, 3), np.float32)
    block_flat = _BLOCK_VOXELS @ strides
    for members, p in gathered:
        flat = ((p * BLOCK - lo) @ strides)[:, None] + block_flat[None]  # (b, 512)
        t[flat] = tsdf[members]
        w[flat] = weight[members]
        if c is not None:
            c[flat] = color[members]
    cut = tuple(slice(0, n) for n in shape)
    return (
        _Grid(
            t.reshape(dense)[cut],
            w.reshape(dense)[cut],
            None if c is None else c.reshape(dense + (3,))[cut],
        ),
        lo.astype(np.float64),
    )


def _chunk_surface(grid: _Grid, min_weight: float):
    """Marching cubes on one chunk, keeping triangles between observed, non-jumping voxels."""
    import mcubes  # lazy: only fusion needs it

    observed = grid.weight > min_weight
    if not observed.any():
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.float32)
    volume = np.where(observed, grid.tsdf, 1.0).astype(np.float64)
    verts, faces = mcubes.marching_cubes(volume, 0.0)
    if not len(faces):
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.float32)
    lo = np.floor(verts).astype(np.int64)
    hi = np.minimum(np.ceil(verts).astype(np.int64), np.array(observed.shape) - 1)
    frac = (verts - lo).sum(axis=1)  # only one coordinate of a vertex is fractional
    li, hi_ = (lo[:, 0], lo[:, 1], lo[:, 2]), (hi[:, 0], hi[:, 1], hi[:, 2])
    ok = observed[li] & observed[hi_] & (np.abs(grid.tsdf[li] - grid.tsdf[hi_]) < SURFACE_JUMP)
    faces = faces[ok[faces].all(axis=1)]
    used = np.zeros(len(verts), bool)
    used[faces] = True
    remap = np.cumsum(used) - 1
    verts = verts[used]
    faces = remap[faces]
    if grid.color is None:
        cols = np.zeros((len(verts), 3), np.float32)
    else:
        lo_u, hi_u, f = lo[used], hi[used], frac[used][:, None]
        c_lo = grid.color[lo_u[:, 0], lo_u[:, 1], lo_u[:, 2]]
        c_hi = grid.color[hi_u[:, 0], hi_u[:, 1], hi_u[:, 2]]
        cols = (c_lo * (1 - f) + c_hi * f).astype(np.float32)
    # PyMCubes winds triangles counter-clockwise seen from the low side: flip so they face the
    # positive (observed free space, the cameras') side
    return verts, faces[:, ::-1].astype(np.int64), cols


def _weld_chunk_borders(verts: np.ndarray, faces: np.ndarray, cols):
    """Merge the vertices that two chunks both made on their shared border planes."""
    exact = verts == np.round(verts)
    border = (exact & (np.mod(np.round(verts), _SIDE) == 0)).any(axis=1)
    idx = np.nonzero(border)[0]
    if len(idx):
        q = np.round(verts[idx] * 4096).astype(np.int64)
        _, first, inverse = np.unique(q, axis=0, return_index=True, return_inverse=True)
        remap = np.arange(len(verts))
        remap[idx] = idx[first[inverse.reshape(-1)]]
        faces = remap[faces]
        bad = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
        faces = faces[~bad]
        used = np.zeros(len(verts), bool)
        used[faces] = True
        compact = np.cumsum(used) - 1
        verts, faces = verts[used], compact[faces]
        cols = None if cols is None else cols[used]
    return verts, faces.astype(np.int32), cols


def decimate(mesh: Mesh, max_faces: int) -> Mesh:
    """The mesh reduced to at most about ``max_faces`` triangles (quadric error, fast-simplification);
    each kept vertex takes the mean colour of the vertices collapsed into it."""
    if mesh.num_faces <= max_faces:
        return mesh
    import fast_simplification  # lazy: only decimation needs it

    reduction = 1.0 - max_faces / mesh.num_faces
    points = mesh.vertices.astype(np.float64)
    _, _, collapses = fast_simplification.simplify(points, mesh.faces, reduction, return_collapses=True)
    verts, faces, mapping = fast_simplification.replay_simplification(points, mesh.faces, collapses)
    colors = None
    if mesh.colors is not None:
        mapping = np.asarray(mapping, np.int64)
        counts = np.bincount(mapping, minlength=len(verts)).astype(np.float64)[:, None]
        sums = np.stack(
            [np.bincount(mapping, mesh.colors[:, i].astype(np.float64), len(verts)) for i in range(3)], 1
        )
        colors = np.clip(np.round(sums / np.maximum(counts, 1)), 0, 255).astype(np.uint8)
    return Mesh(np.asarray(verts, np.float32), np.asarray(faces, np.int32), colors)


def fuse(
    depth: np.ndarray,
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    *,
    colors: np.ndarray | None = None,
    conf: np.ndarray | None = None,
    sky: np.ndarray | None = None,
    voxel_size: float | None = None,
    detail: float = 1.0,
    max_faces: int | None = None,
    device: str | torch.device | None = None,
) -> Mesh:
    """One mesh from depth maps (N, H, W), w2c extrinsics (N, 3|4, 4), intrinsics (N, 3, 3), colours
    (N, H, W, 3) uint8, confidence and sky (N, H, W). ``voxel_size`` None: ``auto_voxel_size``;
    ``device`` None: CUDA when there is one."""
    depth = np.asarray(depth, np.float32)
    if depth.ndim != 3:
        raise ValueError(f"depth must have shape (N, H, W), got {depth.shape}")
    weights = fusion_weights(depth, conf, sky)
    if not (weights > 0).any():
        return Mesh.empty(colors=colors is not None)
    if voxel_size is None:
        voxel_size = auto_voxel_size(depth, intrinsics, weights, detail=detail)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    volume = TSDFVolume(voxel_size, colors=colors is not None, device=device)
    volume.integrate(depth, extrinsics, intrinsics, weights, colors)
    mesh = volume.extract()
    return decimate(mesh, max_faces) if max_faces else mesh
