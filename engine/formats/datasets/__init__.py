"""Datasets for the splatting trainers, written from a bundle or a job (numpy only: Blender loads it).

``export_dataset(tool, folder, source, root)`` writes one self-contained folder (images copied, never
linked) in the frame of the reconstruction root: ``3dgs`` (graphdeco 3DGS, SuGaR, gsplat: COLMAP binary,
inverse-depth PNGs + depth_params.json) or ``nerfstudio`` (splatfacto, DN-Splatter: transforms.json,
depth, normals, sky masks, seed PLY), each with the ``da3_dataset.json`` sidecar (sidecar.py).
"""

from .export import DATASET_TOOLS, check_target, export_dataset
from .frame import ENGINE_TO_BLENDER, DatasetError, Similarity, default_root
from .sidecar import SIDECAR_FILE, DatasetSidecar, SidecarError, read_sidecar, write_sidecar
from .source import DatasetSource, source_from_bundle

__all__ = [
    "DATASET_TOOLS",
    "ENGINE_TO_BLENDER",
    "SIDECAR_FILE",
    "DatasetError",
    "DatasetSidecar",
    "DatasetSource",
    "SidecarError",
    "Similarity",
    "check_target",
    "default_root",
    "export_dataset",
    "read_sidecar",
    "source_from_bundle",
    "write_sidecar",
]
