"""The DA3 checkpoints a user can pick: hub id, download size, licence (numpy-free, bpy-free).

Sizes are the fp32 safetensors payloads from DA3_SPEC.md §1.5 (what the hub download weighs).
Licences follow the official README: SMALL, BASE, METRIC and MONO are Apache-2.0; LARGE, GIANT and
NESTED are CC BY-NC 4.0 (no commercial use), which the UI marks.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelInfo",
    "enum_items",
    "format_size",
    "gaussian_model_labels",
    "model_info",
]


@dataclass(frozen=True)
class ModelInfo:
    key: str  # enum identifier in Blender properties
    label: str
    repo_id: str  # Hugging Face hub id
    size_bytes: int  # download size of model.safetensors
    licence: str  # SPDX id
    metric: bool  # depth in metres
    cameras: bool  # predicts camera poses (any-view models); mono/metric give depth only
    note: str
    gaussians: bool = False  # has the 3D Gaussian head (giant and nested)

    @property
    def commercial_use(self) -> bool:
        return "NC" not in self.licence

    @property
    def summary(self) -> str:
        """One line for the UI: '137 MB · Apache-2.0' (+ ' · non-commercial')."""
        text = f"{format_size(self.size_bytes)} · {self.licence}"
        return text if self.commercial_use else text + " · non-commercial"


MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(
        "DA3_SMALL",
        "DA3 Small",
        "depth-anything/DA3-SMALL",
        137_200_000,
        "Apache-2.0",
        False,
        True,
        "Fast; good for previews and small GPUs",
    ),
    ModelInfo(
        "DA3_BASE",
        "DA3 Base",
        "depth-anything/DA3-BASE",
        541_500_000,
        "Apache-2.0",
        False,
        True,
        "Better geometry, still light",
    ),
    ModelInfo(
        "DA3_LARGE",
        "DA3 Large 1.1",
        "depth-anything/DA3-LARGE-1.1",
        1_643_800_000,
        "CC-BY-NC-4.0",
        False,
        True,
        "High quality; non-commercial licence",
    ),
    ModelInfo(
        "DA3_GIANT",
        "DA3 Giant 1.1",
        "depth-anything/DA3-GIANT-1.1",
        5_422_700_000,
        "CC-BY-NC-4.0",
        False,
        True,
        "Best any-view model, with 3D Gaussians; needs a large GPU",
        gaussians=True,
    ),
    ModelInfo(
        "DA3_METRIC",
        "DA3 Metric Large",
        "depth-anything/DA3METRIC-LARGE",
        1_336_700_000,
        "Apache-2.0",
        True,
        False,
        "Metric depth per image (no cameras)",
    ),
    ModelInfo(
        "DA3_MONO",
        "DA3 Mono Large",
        "depth-anything/DA3MONO-LARGE",
        1_336_700_000,
        "Apache-2.0",
        False,
        False,
        "Relative depth per image (no cameras)",
    ),
    ModelInfo(
        "DA3_NESTED",
        "DA3 Nested Giant-Large 1.1",
        "depth-anything/DA3NESTED-GIANT-LARGE-1.1",
        6_759_400_000,
        "CC-BY-NC-4.0",
        True,
        True,
        "Metric scenes with cameras and 3D Gaussians; needs a large GPU",
        gaussians=True,
    ),
)
DEFAULT_MODEL = "DA3_SMALL"
_BY_KEY = {m.key: m for m in MODELS}


def model_info(key: str) -> ModelInfo:
    """The catalogue entry for an enum key (``KeyError`` names the known keys)."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown model {key!r}; known: {', '.join(_BY_KEY)}") from None


def format_size(size_bytes: int) -> str:
    """Decimal units, like the hub shows them: 137 MB, 1.6 GB."""
    if size_bytes >= 1e9:
        return f"{size_bytes / 1e9:.1f} GB"
    return f"{size_bytes / 1e6:.0f} MB"


def enum_items() -> list[tuple[str, str, str]]:
    """(identifier, name, description) for an EnumProperty; the description has size and licence."""
    return [(m.key, m.label, f"{m.note}. {m.summary}. Hub: {m.repo_id}") for m in MODELS]


def gaussian_model_labels() -> str:
    """The models with the Gaussian head, for messages: 'DA3 Giant 1.1 or DA3 Nested Giant-Large 1.1'."""
    return " or ".join(m.label for m in MODELS if m.gaussians)
