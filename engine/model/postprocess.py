"""Post-processing that belongs to the network (torch): sky fill, nested metric alignment, and the
camera-centre scale used by the Gaussian adapter in posed jobs (DA3 §2.11, §2.12, §5.2)."""

from __future__ import annotations

import numpy as np
import torch

from ..geometry.sim3 import DegenerateAlignment, umeyama

NON_SKY = 0.3  # sky map below this is ground
SKY_DEPTH_CAP = 200.0
QUANTILE_SAMPLES = 100_000  # above this many pixels, quantiles use a random sample (as upstream)


def _quantile(values: torch.Tensor, q: float, *, replacement: bool, generator=None) -> torch.Tensor:
    """Quantile with linear interpolation; a fixed-size random sample when there are many values."""
    if values.numel() > QUANTILE_SAMPLES:
        if replacement:
            idx = torch.randint(0, values.numel(), (QUANTILE_SAMPLES,), generator=generator, device="cpu")
        else:
            idx = torch.randperm(values.numel(), generator=generator, device="cpu")[:QUANTILE_SAMPLES]
        values = values[idx.to(values.device)]
    return torch.quantile(values.float(), q)


def fill_sky_depth(depth: torch.Tensor, sky: torch.Tensor, generator=None) -> torch.Tensor:
    """Metric/mono: sky pixels (sky ≥ 0.3) get the 99th percentile of the ground depth.

    Counted over the whole batch; nothing changes unless both regions have more than 10 pixels.
    """
    ground = sky < NON_SKY
    if ground.sum() <= 10 or (~ground).sum() <= 10:
        return depth
    far = _quantile(depth[ground], 0.99, replacement=True, generator=generator)
    return torch.where(ground, depth, far)


def align_to_metric(out: dict, metric_depth: torch.Tensor, metric_sky: torch.Tensor, generator=None) -> dict:
    """Nested model: scale the any-view prediction to metres with the metric branch.

    metric_depth (B,S,H,W) is canonical depth (after its own sky fill); it becomes metres with the
    any-view focal length: ``· ((fx + fy)/2) / 300``. A least-squares scale on confident ground
    pixels then scales the any-view depth and camera translations; sky gets a capped far depth.
    """
    k = out["net_out_intrinsics"]
    focal = (k[..., 0, 0] + k[..., 1, 1]) / 2  # (B, S)
    metric = metric_depth * (focal / 300.0)[..., None, None]
    depth, conf = out["head_depth"], out["head_conf"]
    ground = metric_sky < NON_SKY
    if ground.sum() <= 10:
        raise ValueError("the metric branch sees almost only sky: no ground to fix the metric scale")
    conf_median = _quantile(conf[ground], 0.5, replacement=False, generator=generator)
    mask = (conf >= conf_median) & ground & (metric > 0.01) & (depth > 0.001)
    d, m = depth[mask], metric[mask]
    scale = (m * d).sum() / torch.clamp((d * d).sum(), min=1e-12)
    depth = depth * scale
    extrinsics = out["net_out_extrinsics"].clone()
    extrinsics[..., :3, 3] *= scale
    far = torch.clamp(
        _quantile(depth[ground], 0.99, replacement=True, generator=generator), max=SKY_DEPTH_CAP
    )
    sky = ~ground
    return {
        "nested_metric_depth_scaled": metric,
        "out_scale_factor": scale.double(),
        "out_depth": torch.where(sky, far, depth),
        "out_conf": torch.where(sky, torch.ones_like(conf), conf),
        "out_extrinsics": extrinsics,
        "out_intrinsics": k,
        "out_is_metric": torch.tensor(1),
    }


def _centres(w2c: np.ndarray) -> np.ndarray:
    r, t = w2c[:, :3, :3], w2c[:, :3, 3]
    return -np.einsum("nji,nj->ni", r, t)


def gaussian_pose_scale(given_w2c: torch.Tensor, predicted_w2c: torch.Tensor) -> float:
    """Scale from predicted to given camera centres (Umeyama), clamped to [1/3, 3]; 1 when undefined."""
    given = given_w2c[:, :3].double().cpu().numpy()
    pred = predicted_w2c[:, :3].double().cpu().numpy()
    if np.array_equal(given.astype(np.float32), pred.astype(np.float32)):
        return 1.0
    try:
        s = umeyama(_centres(pred), _centres(given)).s
    except DegenerateAlignment:
        s = 1.0
    return float(np.clip(s, 1 / 3.0, 3.0))
