"""The DA3 network: backbone + dense head + cameras (+ Gaussians); and the nested metric model.

``forward`` takes normalised images ``x (B, S, 3, H, W)`` (ImageNet statistics, H and W multiples
of 14) and optional cameras, and returns a dict whose keys are the names of the golden parity
arrays (``../shared/golden/README.md``), batch dimension kept:

* any-view: ``head_depth``, ``head_conf`` (B,S,H,W); ``net_out_extrinsics`` (B,S,3,4) w2c OpenCV;
  ``net_out_intrinsics`` (B,S,3,3) pixels; ``cam_dec_pose_enc`` (B,S,9); ``ref_view_idx``;
  ``head_ray`` (B,S,8ph,8pw,6) / ``head_ray_conf`` when rays were computed;
  ``gs_raw``/``gs_raw_conf`` and ``gs_means``… (B, S·H·W, ·) with ``infer_gs``;
* metric/mono: ``head_depth`` (before the sky fill), ``head_sky`` (ReLU map), ``out_depth``
  (sky filled), ``out_sky`` (bool);
* ``feat_layer_<i>`` (B,S,ph,pw,C) for requested block outputs; with ``trace=True`` also the
  view-0 intermediates (``bb_*``, ``head_*_v0``).

All geometry is in fp32; the backbone may run under autocast (see ``engine.weights``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from .backbone import PATCH, Backbone
from .cameras import CameraDecoder, CameraEncoder, cameras_to_pose_encoding, pose_encoding_to_cameras
from .dpt import DepthHead, GaussianHead
from .gaussians import gaussians_from_raw
from .postprocess import align_to_metric, fill_sky_depth, gaussian_pose_scale
from .presets import Preset
from .ray_pose import cameras_from_rays


class DA3Net(nn.Module):
    def __init__(self, preset: Preset):
        super().__init__()
        self.preset = preset
        bb = preset.backbone
        self.backbone = Backbone(bb)
        self.head = DepthHead(preset.head)
        if preset.cameras:
            self.cam_dec = CameraDecoder(2 * bb.embed_dim)
            self.cam_enc = CameraEncoder(bb.embed_dim)
        if preset.gaussians:
            self.gs_head = GaussianHead(preset.head)
        self.autocast_dtype: torch.dtype | None = None  # set by the loader for bf16 / fp16
        self.head_chunk = 4  # views per head pass: bounds the memory of the full-resolution maps
        self.on_step: Callable[[str, int, int], None] | None = None  # (stage, done, total); may raise

    @property
    def predicts_cameras(self) -> bool:
        return self.preset.cameras

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    @staticmethod
    def _no_autocast(device: torch.device):
        return torch.autocast(device_type=device.type, enabled=False)

    def forward(
        self,
        x: torch.Tensor,
        extrinsics: torch.Tensor | None = None,
        intrinsics: torch.Tensor | None = None,
        *,
        ref_view_strategy: str = "saddle_balanced",
        ref_view_idx: int | None = None,
        use_ray_pose: bool = False,
        infer_gs: bool = False,
        want_rays: bool = False,
        export_feat_layers: tuple[int, ...] = (),
        seed: int = 0,
        trace: bool = False,
    ) -> dict[str, torch.Tensor]:
        """x (B,S,3,H,W); extrinsics (B,S,4,4) normalised w2c and intrinsics (B,S,3,3) pixels, or None."""
        b, s, _, h, w = x.shape
        if h % PATCH or w % PATCH:
            raise ValueError(f"image size {h}x{w} is not a multiple of {PATCH}")
        rec: dict | None = {} if trace else None
        out: dict[str, torch.Tensor] = {}
        cam_tokens = None
        if extrinsics is not None and self.preset.cameras:
            with self._no_autocast(x.device):
                enc = cameras_to_pose_encoding(extrinsics.float(), intrinsics.float(), h, w)
                cam_tokens = self.cam_enc(enc)
            if trace:
                out["cam_enc_pose_encoding"], out["cam_enc_tokens"] = enc, cam_tokens
        with self._autocast(x.device):
            feats, cam_toks, ref_idx, exported = self.backbone(
                x,
                cam_tokens=cam_tokens,
                ref_view_strategy=ref_view_strategy,
                ref_view_idx=ref_view_idx,
                export_layers=tuple(export_feat_layers),
                trace=rec,
            )
        feats = [f.float() for f in feats]
        out["ref_view_idx"] = torch.tensor(ref_idx)
        for layer, feat in zip(self.preset.backbone.out_layers, feats, strict=True):
            if trace:
                out[f"bb_feat_L{layer}"] = feat
        if trace and self.preset.any_view:
            for layer, tok in zip(self.preset.backbone.out_layers, cam_toks, strict=True):
                out[f"bb_camtok_L{layer}"] = tok.float()
        for layer, feat in exported.items():
            out[f"feat_layer_{layer}"] = feat.float().reshape(b, s, h // PATCH, w // PATCH, -1)

        rays = want_rays or use_ray_pose or trace
        with self._no_autocast(x.device):
            maps = self._run_head(feats, h, w, rays, rec)
            out["head_depth"] = maps["depth"]
            if "conf" in maps:
                out["head_conf"] = maps["conf"]
            if "ray" in maps:
                out["head_ray"], out["head_ray_conf"] = maps["ray"], maps["ray_conf"]
            if "sky" in maps:
                out["head_sky"] = maps["sky"]
                out["out_depth"] = fill_sky_depth(maps["depth"], maps["sky"])
                out["out_sky"] = maps["sky"] >= 0.5
            if self.preset.cameras:
                self._cameras(out, cam_toks[-1], h, w, use_ray_pose, seed)
            if infer_gs and self.preset.gaussians:
                self._gaussians(out, feats, x, extrinsics, h, w)
        if trace:
            out.update({k: v[None] for k, v in rec.items()})  # traces are of batch element 0
        return out

    def _run_head(self, feats, h, w, rays, rec) -> dict[str, torch.Tensor]:
        """Head in chunks of views; maps come back as (B, S, ...)."""
        b, s = feats[0].shape[:2]
        flat = [f.reshape(b * s, *f.shape[2:]) for f in feats]
        chunks = []
        for i in range(0, b * s, self.head_chunk):
            if self.on_step is not None:
                self.on_step("head", i, b * s)
            part = [f[i : i + self.head_chunk] for f in flat]
            chunks.append(self.head(part, h, w, rays=rays, trace=rec if i == 0 else None))
        return {
            k: torch.cat([c[k] for c in chunks]).reshape(b, s, *chunks[0][k].shape[1:]) for k in chunks[0]
        }

    def _cameras(self, out, cam_token, h, w, use_ray_pose, seed) -> None:
        b, s = cam_token.shape[:2]
        if use_ray_pose:
            poses = [
                cameras_from_rays(out["head_ray"][i], out["head_ray_conf"][i], h, w, seed) for i in range(b)
            ]
            out["net_out_extrinsics"] = torch.stack([p[0] for p in poses])
            out["net_out_intrinsics"] = torch.stack([p[1] for p in poses])
            return
        enc = self.cam_dec(cam_token.float())
        out["cam_dec_pose_enc"] = enc
        out["net_out_extrinsics"], out["net_out_intrinsics"] = pose_encoding_to_cameras(enc, h, w)

    def _gaussians(self, out, feats, x, given_extrinsics, h, w) -> None:
        b, s = x.shape[:2]
        flat = [f.reshape(b * s, *f.shape[2:]) for f in feats]
        raws, dens = [], []
        for i in range(0, b * s, self.head_chunk):
            r, d = self.gs_head(
                [f[i : i + self.head_chunk] for f in flat],
                x.reshape(b * s, *x.shape[2:])[i : i + self.head_chunk].float(),
                h,
                w,
            )
            raws.append(r)
            dens.append(d)
        raw = torch.cat(raws).reshape(b, s, h, w, -1)
        density = torch.cat(dens).reshape(b, s, h, w)
        out["gs_raw"], out["gs_raw_conf"] = raw, density
        fields = {"means": [], "scales": [], "rotations": [], "harmonics": [], "opacities": []}
        for i in range(b):
            scale = 1.0
            if given_extrinsics is not None:
                scale = gaussian_pose_scale(given_extrinsics[i], out["net_out_extrinsics"][i])
            g = gaussians_from_raw(
                raw[i],
                density[i],
                out["head_depth"][i],
                out["net_out_extrinsics"][i],
                out["net_out_intrinsics"][i],
                scale,
            )
            for k in fields:
                fields[k].append(getattr(g, k))
        for k, v in fields.items():
            out[f"gs_{k}"] = torch.stack(v)


class NestedDA3Net(nn.Module):
    """Any-view giant (``da3``) + metric-large (``da3_metric``): metric scale for the any-view output."""

    def __init__(self, anyview: Preset, metric: Preset):
        super().__init__()
        self.da3 = DA3Net(anyview)
        self.da3_metric = DA3Net(metric)

    predicts_cameras = True

    @property
    def head_chunk(self) -> int:
        return self.da3.head_chunk

    @head_chunk.setter
    def head_chunk(self, value: int) -> None:
        self.da3.head_chunk = self.da3_metric.head_chunk = value

    @property
    def autocast_dtype(self):
        return self.da3.autocast_dtype

    @autocast_dtype.setter
    def autocast_dtype(self, value):
        self.da3.autocast_dtype = self.da3_metric.autocast_dtype = value

    def forward(self, x, extrinsics=None, intrinsics=None, *, trace: bool = False, **kwargs) -> dict:
        out = self.da3(x, extrinsics, intrinsics, trace=trace, **kwargs)
        metric = self.da3_metric(x, trace=trace)
        for k, v in metric.items():
            if k.startswith(("bb_feat_", "head_")):
                out[f"nested_metric_{k}"] = v
        out["nested_metric_depth"] = metric["out_depth"]
        out["nested_anyview_depth"], out["nested_anyview_depth_conf"] = out["head_depth"], out["head_conf"]
        out["nested_anyview_extrinsics"] = out["net_out_extrinsics"]
        out["nested_anyview_intrinsics"] = out["net_out_intrinsics"]
        out.update(align_to_metric(out, metric["out_depth"], metric["head_sky"]))
        return out
