"""Images in, a ``Prediction`` out: preprocess → network → post-process (DA3 §4).

Camera convention (once, for the whole engine): OpenCV axes (x right, y down, z forward),
extrinsics world-to-camera (N,3,4), intrinsics in pixels of the processed image (N,3,3), depth
is z-depth. The world frame is the reference view's camera frame, or the given cameras' frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .io.imaging import load_image, to_rgb_uint8
from .model.presets import METRIC_PRESETS
from .posed import as_w2c_4x4, input_pose_scale, normalize_extrinsics
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, ImageTransform, normalize, preprocess_images

METRIC_FOCAL = 300.0  # DA3METRIC depth is "canonical": metres = depth · focal_px / 300


@dataclass(frozen=True)
class Gaussians:
    """World-space 3D Gaussians, flattened view-major then row-major (M = N·H·W)."""

    means: np.ndarray  # (M, 3) float32
    scales: np.ndarray  # (M, 3) float32, linear (some may be negative: upstream does not clamp)
    rotations: np.ndarray  # (M, 4) float32, read as (w, x, y, z) like every 3DGS tool
    harmonics: np.ndarray  # (M, 3, 9) float32 SH coefficients per colour (degree 2)
    opacities: np.ndarray  # (M,) float32 in [0, 1]


@dataclass(frozen=True)
class Prediction:
    depth: np.ndarray  # (N, H, W) float32 z-depth
    conf: np.ndarray | None  # (N, H, W) float32 ≥ 1 (any-view and nested models)
    extrinsics: np.ndarray  # (N, 3, 4) float32 world-to-camera, OpenCV
    intrinsics: np.ndarray  # (N, 3, 3) float32, pixels of the processed image
    processed_images: np.ndarray  # (N, H, W, 3) uint8, what the network saw
    sky: np.ndarray | None  # (N, H, W) bool (metric / mono models)
    is_metric: bool  # depth and translations in metres
    scale_factor: float | None  # nested: any-view → metres; posed: network → given units
    gaussians: Gaussians | None
    units: str = "relative"  # "metre" when is_metric
    ref_view_idx: int = -1  # the view chosen as world frame (-1: no selection ran)
    transforms: tuple[ImageTransform, ...] = ()  # original → processed pixels, per view
    features: dict[int, np.ndarray] = field(
        default_factory=dict
    )  # block → (N, ph, pw, C) normed, input order
    model_name: str = ""
    notes: tuple[str, ...] = ()  # caveats worth showing the user (e.g. an assumed focal length)


def _as_images(images) -> list[np.ndarray]:
    if isinstance(images, (str, Path, np.ndarray)):
        images = [images]
    out = []
    for item in images:
        out.append(load_image(item) if isinstance(item, (str, Path)) else to_rgb_uint8(np.asarray(item)))
    if not out:
        raise ValueError("no images given")
    return out


def _processed_images(x: np.ndarray) -> np.ndarray:
    """The official truncating de-normalisation: uint8(clip(x·std + mean, 0, 1)·255)."""
    img = x.transpose(0, 2, 3, 1) * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return (
        None if t is None else t.detach().float().cpu().numpy() if t.is_floating_point() else t.cpu().numpy()
    )


def predict(
    model,
    images: Sequence,
    *,
    process_res: int = 504,
    process_res_method: str = "upper_bound_resize",
    extrinsics: np.ndarray | None = None,
    intrinsics: np.ndarray | None = None,
    ref_view_strategy: str = "saddle_balanced",
    use_ray_pose: bool = False,
    infer_gs: bool = False,
    seed: int | None = None,
    export_feat_layers: Sequence[int] = (),
    ref_view_idx: int | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
) -> Prediction:
    """Run DA3 on images (paths or uint8 arrays; any mix of sizes).

    extrinsics (N,4,4 or N,3,4) world-to-camera and intrinsics (N,3,3) in pixels of the *original*
    images condition the network on known cameras (any number of views); the result then uses
    those cameras and depth in their units. ``seed`` makes the ray-pose RANSAC reproducible.
    ``on_stage(name)`` is called before "preprocess", "network" and "postprocess" (it may raise
    to cancel). ``on_step(part, done, total)`` is called inside the network pass, before each backbone
    block ("backbone"), before each query piece of a long global attention ("attention", queries done
    and queries) and before each view chunk of the head ("head"): progress and cancel within seconds
    (raising from it stops the pass; the model is left as it was).
    """
    stage = on_stage or (lambda name: None)
    stage("preprocess")
    raw = _as_images(images)
    processed, transforms = preprocess_images(raw, process_res, process_res_method)
    x_np = normalize(processed)
    n, _, h, w = x_np.shape
    posed = extrinsics is not None
    any_view = getattr(model, "predicts_cameras", True)
    if (posed and intrinsics is None) or (intrinsics is not None and not posed and any_view):
        raise ValueError("known cameras need both extrinsics and intrinsics (one per image)")
    given_w2c = k_proc = None
    if intrinsics is not None:
        k_in = np.asarray(intrinsics, dtype=np.float64)
        if k_in.shape != (n, 3, 3):
            raise ValueError(f"{n} images need {n} (3, 3) intrinsics, got {k_in.shape}")
        k_proc = np.stack([t.apply_to_intrinsics(k) for t, k in zip(transforms, k_in, strict=True)])
    if posed:
        given_w2c = as_w2c_4x4(extrinsics)
        if len(given_w2c) != n:
            raise ValueError(f"{n} images need {n} extrinsics, got {len(given_w2c)}")

    device = getattr(model, "run_device", torch.device("cpu"))
    x = torch.from_numpy(x_np)[None].to(device)
    cams = {}
    if posed and any_view:
        cams = {
            "extrinsics": torch.from_numpy(normalize_extrinsics(given_w2c)).float()[None].to(device),
            "intrinsics": torch.from_numpy(k_proc).float()[None].to(device),
        }
    stage("network")
    hooked = (
        [m for m in model.modules() if hasattr(m, "on_step")] if on_step and hasattr(model, "modules") else []
    )
    for module in hooked:
        module.on_step = on_step
    try:
        with torch.inference_mode():
            out = model(
                x,
                **cams,
                ref_view_strategy=ref_view_strategy,
                ref_view_idx=ref_view_idx,
                use_ray_pose=use_ray_pose,
                infer_gs=infer_gs,
                export_feat_layers=tuple(export_feat_layers),
                seed=0 if seed is None else int(seed),
            )
    finally:
        for module in hooked:
            module.on_step = None
    stage("postprocess")
    o = {k: _np(v[0]) if v.ndim > 0 else v.item() for k, v in out.items()}
    metric = getattr(model, "model_name", "") in METRIC_PRESETS
    return Prediction(
        processed_images=_processed_images(x_np),
        transforms=tuple(transforms),
        features={int(k[len("feat_layer_") :]): v for k, v in o.items() if k.startswith("feat_layer_")},
        model_name=getattr(model, "model_name", ""),
        **_cameras(o, given_w2c, k_proc, h, w, metric),
    )


def _cameras(o: dict, given_w2c, k_given, h: int, w: int, metric: bool) -> dict:
    """Depth, cameras and units from the network outputs (batch dropped).

    * any-view: predicted cameras, relative units;
    * nested: metric-aligned by the network (metres); its Gaussians are rescaled too (upstream
      leaves them in the pre-metric scale, issue #242, which would put them beside the points);
    * metric model: canonical depth × focal/300 = metres, with the given focal or a 60° guess;
    * given cameras (any model): they replace the prediction; depth follows their units.
    """
    nested = "out_scale_factor" in o
    depth = o.get("out_depth", o["head_depth"])
    conf = o.get("out_conf", o.get("head_conf"))
    ext = o.get("out_extrinsics", o.get("net_out_extrinsics"))
    ixt = o.get("out_intrinsics", o.get("net_out_intrinsics"))
    n = depth.shape[0]
    notes: list[str] = []
    scale = float(o["out_scale_factor"]) if nested else None
    units = "metre" if nested else "relative"
    if ext is None:  # metric / mono networks predict no cameras
        ext = np.tile(np.eye(3, 4, dtype=np.float32), (n, 1, 1))
        ixt = k_given
        if ixt is None:
            ixt = np.tile(_default_intrinsics(h, w), (n, 1, 1))
            notes.append("this model predicts no cameras: a 60° horizontal field of view was assumed")
        if metric:
            focal = (ixt[:, 0, 0] + ixt[:, 1, 1]) / 2
            depth = depth * (focal / METRIC_FOCAL).astype(np.float32)[:, None, None]
            units = "metre"
    if given_w2c is not None:
        if "net_out_extrinsics" in o:  # bring depth into the given cameras' units
            scale = input_pose_scale(ext, given_w2c)
            depth = depth / np.float32(scale)
            units = "input"
        ext, ixt = given_w2c[:, :3], k_given
    gaussians = None
    if "gs_means" in o:
        g = np.float32(o["out_scale_factor"] if nested else 1.0)
        gaussians = Gaussians(
            o["gs_means"] * g, o["gs_scales"] * g, o["gs_rotations"], o["gs_harmonics"], o["gs_opacities"]
        )
    return {
        "depth": depth.astype(np.float32),
        "conf": None if conf is None else conf.astype(np.float32),
        "extrinsics": np.asarray(ext, dtype=np.float32),
        "intrinsics": np.asarray(ixt, dtype=np.float32),
        "sky": o.get("out_sky"),
        "is_metric": units == "metre",
        "scale_factor": scale,
        "gaussians": gaussians,
        "units": units,
        "ref_view_idx": int(o["ref_view_idx"]),
        "notes": tuple(notes),
    }


@dataclass(frozen=True)
class DeviceMemory:
    """Memory facts about a loaded model, for sizing chunks (``model.memory.chunk_size_for_memory``)."""

    free_bytes: float | None  # free GPU memory (+ what torch caches but does not use); None off CUDA
    weight_bytes: float  # the model's parameters and buffers as loaded
    dtype_bytes: int  # bytes per value of the run precision (2 under fp16/bf16 autocast, 4 for fp32)


def device_memory(model) -> DeviceMemory:
    """Free memory on the model's CUDA device (None elsewhere: the caller uses system RAM), its weights
    and its run precision. The weights are already loaded, so the free memory does not include them."""
    dtype = getattr(model, "run_dtype", torch.float32)
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    tensors = list(model.parameters()) + list(model.buffers()) if isinstance(model, torch.nn.Module) else []
    weights = float(sum(t.numel() * t.element_size() for t in tensors))
    device = torch.device(getattr(model, "run_device", "cpu"))
    free = None
    if device.type == "cuda" and torch.cuda.is_available():
        free_now, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        free = float(free_now + max(cached, 0))
    return DeviceMemory(free, weights, int(dtype_bytes))


def _default_intrinsics(h: int, w: int, fov_deg: float = 60.0) -> np.ndarray:
    f = (w / 2) / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=np.float32)
