"""Network presets, keyed by the ``model_name`` that a checkpoint's ``config.json`` carries.

Plain frozen dataclasses (no YAML, no registries): one entry per official DA3 preset. The
numbers come from ``reference/DA3_SPEC.md`` §1; ``keys/<preset>.tsv`` lists what they produce.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneConfig:
    """DINOv2-style ViT with alternating per-view ("local") and cross-view ("global") attention."""

    embed_dim: int  # C
    depth: int
    num_heads: int
    ffn: str  # "mlp" (GELU, 4x) or "swiglu" (giant)
    out_layers: tuple[int, int, int, int]  # blocks whose outputs feed the heads
    alt_start: int  # first block with camera token, QK-norm and RoPE; -1: purely per-view model
    cat_token: bool  # head features are [local stream, global stream] (2C channels)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def ffn_hidden(self) -> int:
        if self.ffn == "swiglu":  # DINOv2 "giant2": int(4C * 2/3) rounded up to a multiple of 8
            return (int(4 * self.embed_dim * 2 / 3) + 7) // 8 * 8
        return 4 * self.embed_dim

    def is_global(self, block: int) -> bool:
        """Cross-view attention: odd blocks from ``alt_start`` on."""
        return self.alt_start != -1 and block >= self.alt_start and block % 2 == 1

    def has_rope(self, block: int) -> bool:
        """RoPE and QK-norm start together with the camera token (``alt_start``)."""
        return self.alt_start != -1 and block >= self.alt_start


@dataclass(frozen=True)
class HeadConfig:
    """DPT-style dense head. ``dual``: depth + ray branches (any-view); else depth (+ sky)."""

    dim_in: int
    features: int  # F
    out_channels: tuple[int, int, int, int]
    output_dim: int  # 2 = [log-depth, conf logit]; 1 = log-depth
    dual: bool
    input_norm: bool  # LayerNorm over the incoming features (DualDPT only)
    pos_embed: bool  # UV sin-cos embeddings added to the feature maps
    sky: bool  # separate sky branch (metric / mono)


@dataclass(frozen=True)
class Preset:
    name: str
    backbone: BackboneConfig
    head: HeadConfig
    cameras: bool  # camera decoder (poses out) and camera encoder (poses in)
    gaussians: bool  # GSDPT head + Gaussian adapter (giant)

    @property
    def any_view(self) -> bool:
        return self.backbone.alt_start != -1


def _any_view(name, dim, depth, heads, ffn, out_layers, alt_start, features, out_channels, gaussians=False):
    return Preset(
        name=name,
        backbone=BackboneConfig(dim, depth, heads, ffn, out_layers, alt_start, cat_token=True),
        head=HeadConfig(
            2 * dim, features, out_channels, 2, dual=True, input_norm=True, pos_embed=True, sky=False
        ),
        cameras=True,
        gaussians=gaussians,
    )


def _metric(name: str) -> Preset:
    return Preset(
        name=name,
        backbone=BackboneConfig(1024, 24, 16, "mlp", (4, 11, 17, 23), alt_start=-1, cat_token=False),
        head=HeadConfig(
            1024, 256, (256, 512, 1024, 1024), 1, dual=False, input_norm=False, pos_embed=False, sky=True
        ),
        cameras=False,
        gaussians=False,
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _any_view("da3-small", 384, 12, 6, "mlp", (5, 7, 9, 11), 4, 64, (48, 96, 192, 384)),
        _any_view("da3-base", 768, 12, 12, "mlp", (5, 7, 9, 11), 4, 128, (96, 192, 384, 768)),
        _any_view("da3-large", 1024, 24, 16, "mlp", (11, 15, 19, 23), 8, 256, (256, 512, 1024, 1024)),
        _any_view(
            "da3-giant",
            1536,
            40,
            24,
            "swiglu",
            (19, 27, 33, 39),
            13,
            256,
            (256, 512, 1024, 1024),
            gaussians=True,
        ),
        _metric("da3metric-large"),
        _metric("da3mono-large"),
    )
}

# The nested model holds a full any-view giant (``da3``) and a full metric-large (``da3_metric``).
NESTED_PRESET = "da3nested-giant-large"
NESTED_PARTS = {"da3": "da3-giant", "da3_metric": "da3metric-large"}

METRIC_PRESETS = frozenset({"da3metric-large"})  # depth · focal/300 is metres
ALL_PRESETS = (*PRESETS, NESTED_PRESET)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown DA3 preset {name!r}; known presets: {', '.join(ALL_PRESETS)}") from None
