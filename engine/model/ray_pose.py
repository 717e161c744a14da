"""Camera poses from the ray map (``use_ray_pose``), DA3 §2.10.

Per view, the ray head predicts for every cell of an ``h×w`` grid (h = 8ph) a world-frame ray
direction ``R_c2w · K_n⁻¹ · [x_n, y_n, 1]`` (channels 0–2) and the camera centre (3–5). A
weighted RANSAC homography from image-plane points to ray directions gives ``H ≈ R · K_n⁻¹``;
a QL factorisation splits it into rotation and intrinsics. The RANSAC draws come from a seeded
generator, so a given seed gives the same cameras on a given device.
"""

from __future__ import annotations

import torch

N_ITER = 100
SAMPLE_SIZE = 8
CANDIDATE_RATIO = 0.3
REPROJ_THRESHOLD = 0.2
MAX_INLIERS = 8000
Z_EPS = 1e-4
VIEWS_PER_BATCH = 2


def _weighted_dlt(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted DLT homographies. src, dst (..., K, 2), w (..., K) → H (..., 3, 3) with H[2,2] = 1."""
    sw = w.sqrt()[..., None]
    x, y = src[..., 0:1], src[..., 1:2]
    u, v = dst[..., 0:1], dst[..., 1:2]
    z = torch.zeros_like(x)
    a1 = torch.cat((-x * sw, -y * sw, -sw, z, z, z, x * u * sw, y * u * sw, u * sw), dim=-1)
    a2 = torch.cat((z, z, z, -x * sw, -y * sw, -sw, x * v * sw, y * v * sw, v * sw), dim=-1)
    _, _, vh = torch.linalg.svd(torch.cat((a1, a2), dim=-2))
    h = vh[..., -1, :].reshape(*src.shape[:-2], 3, 3)
    return h / h[..., 2:3, 2:3]


def _ql(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """H = Q·L with Q orthogonal and L lower triangular with a positive diagonal."""
    p = torch.tensor([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=h.dtype, device=h.device)
    q_t, r_t = torch.linalg.qr(h @ p)
    q, l = q_t @ p, p @ r_t @ p
    sign = torch.sign(torch.diagonal(l))
    return q * sign[None, :], l * sign[:, None]


def _ransac_homographies(src, dst, weights, draws, gen: torch.Generator) -> torch.Tensor:
    """src, dst (V, N, 2), weights (V, N), draws (N_ITER, SAMPLE_SIZE) candidate indices → H (V, 3, 3)."""
    v, n, _ = src.shape
    n_cand = max(SAMPLE_SIZE, int(n * CANDIDATE_RATIO))
    cand = torch.argsort(weights, dim=1, descending=True)[:, :n_cand]
    idx = cand[:, draws]  # (V, N_ITER, SAMPLE_SIZE)
    rows = torch.arange(v, device=src.device)[:, None, None]
    hyp = _weighted_dlt(src[rows, idx], dst[rows, idx], weights[rows, idx])  # (V, N_ITER, 3, 3)
    src_h = torch.cat((src, torch.ones_like(src[..., :1])), dim=-1)
    proj = torch.einsum("vkij,vnj->vkni", hyp, src_h)
    err = (proj[..., :2] / proj[..., 2:3] - dst[:, None]).norm(dim=-1)  # (V, N_ITER, N)
    inliers = err < REPROJ_THRESHOLD
    best = torch.argmax((inliers * weights[:, None]).sum(-1), dim=1)
    out = []
    for i in range(v):
        keep = torch.nonzero(inliers[i, best[i]]).squeeze(1)
        keep = keep[torch.argsort(weights[i, keep], descending=True)]
        if len(keep) > MAX_INLIERS:  # the most confident 95 %, then a random subset
            keep = keep[: max(int(len(keep) * 0.95), MAX_INLIERS)]
            keep = keep[torch.randperm(len(keep), generator=gen)[:MAX_INLIERS].to(keep.device)]
        out.append(_weighted_dlt(src[i, keep], dst[i, keep], weights[i, keep]))
    return torch.stack(out)


def cameras_from_rays(
    ray: torch.Tensor, ray_conf: torch.Tensor, height: int, width: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """ray (S, h, w, 6), ray_conf (S, h, w) → (w2c (S, 3, 4), intrinsics (S, 3, 3) in pixels of H×W)."""
    s, h, w, _ = ray.shape
    ray, conf = ray.float(), ray_conf.float().clone()
    ys, xs = torch.meshgrid(
        torch.arange(h, device=ray.device), torch.arange(w, device=ray.device), indexing="ij"
    )
    src = (
        torch.stack(((2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1), dim=-1).reshape(1, -1, 2).expand(s, -1, -1)
    )
    dirs = ray[..., :3].reshape(s, -1, 3)
    valid = dirs[..., 2].abs() > Z_EPS
    dz = torch.where(valid, dirs[..., 2], torch.ones_like(dirs[..., 2]))
    dst = torch.where(valid[..., None], dirs[..., :2] / dz[..., None], dirs[..., :2])
    weights = conf.reshape(s, -1) * valid  # invalid directions weigh nothing (also for the centre)

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    n_cand = max(SAMPLE_SIZE, int(h * w * CANDIDATE_RATIO))
    draws = torch.stack([torch.randperm(n_cand, generator=gen)[:SAMPLE_SIZE] for _ in range(N_ITER)])
    draws = draws.to(ray.device)
    batches = [slice(i, i + VIEWS_PER_BATCH) for i in range(0, s, VIEWS_PER_BATCH)]
    hs = torch.cat([_ransac_homographies(src[b], dst[b], weights[b], draws, gen) for b in batches])
    hs = torch.where((torch.linalg.det(hs) < 0)[:, None, None], -hs, hs)

    rots, ks = [], []
    for hm in hs:
        q, l = _ql(hm)
        l = l / l[2, 2]
        rots.append(q)
        k = torch.eye(3, dtype=ray.dtype, device=ray.device)
        k[0, 0], k[1, 1] = width / 2 / l[0, 0], height / 2 / l[1, 1]
        k[0, 2], k[1, 2] = (l[2, 0] + 1) * width / 2, (l[2, 1] + 1) * height / 2
        ks.append(k)
    rot = torch.stack(rots)
    w_sum = weights.sum(-1, keepdim=True).clamp(min=1e-12)
    centre = (ray[..., 3:].reshape(s, -1, 3) * weights[..., None]).sum(1) / w_sum
    rinv = rot.transpose(-1, -2)
    w2c = torch.cat((rinv, -rinv @ centre[..., None]), dim=-1)
    return w2c, torch.stack(ks)
