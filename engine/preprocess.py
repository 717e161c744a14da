"""DA3 input preprocessing: the official ``InputProcessor`` reproduced with numpy (no torch).

Per image: a boundary resize so the longer (``upper_bound_*``) or shorter (``lower_bound_*``) side
equals ``process_res``; then each side is made a multiple of the 14-pixel patch, by a small second
resize (``*_resize``, to the nearest multiple) or a centred crop (``*_crop``, down to a multiple).
When the images of a batch end up with different sizes, all are centre-cropped to the smallest
height and width. Every step is recorded in an ``ImageTransform`` so camera intrinsics can be moved
between original and processed pixels.

Intrinsics follow the official convention: a resize scales row 0 of K (fx, skew, cx) by the width
ratio and row 1 (fy, cy) by the height ratio, with no half-pixel correction; a crop subtracts its
left/top offset from cx/cy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .io.imaging import resize_uint8
from .process.protocol.options import PATCH_SIZE  # defined once, with the other option limits

__all__ = [
    "METHODS",
    "PATCH_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageTransform",
    "check_process_res",
    "process_res_note",
    "preprocess_images",
    "normalize",
]

METHODS = ("upper_bound_resize", "upper_bound_crop", "lower_bound_resize", "lower_bound_crop")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Size = tuple[int, int]  # (height, width) in pixels


@dataclass(frozen=True)
class ImageTransform:
    """How one image went from its original pixels to the network input. Sizes are (height, width).

    original_hw -> boundary resize -> resized_hw -> 14-multiple step -> divisible_hw (a resize for
    ``*_resize``; for ``*_crop`` a crop at ``crop_offset_yx``) -> batch centre crop at
    ``batch_crop_offset_yx`` (mixed sizes only) -> final_hw.
    """

    original_hw: Size
    resized_hw: Size
    divisible_hw: Size
    crop_offset_yx: tuple[int, int]  # (top, left) of the *_crop step; (0, 0) for *_resize
    batch_crop_offset_yx: tuple[int, int]  # (top, left) of the batch centre crop; (0, 0) if none
    final_hw: Size
    method: str = "upper_bound_resize"

    @property
    def second_step_is_resize(self) -> bool:
        """True when the 14-multiple step resampled the image (``*_resize``), False for a crop."""
        return self.method.endswith("resize")

    def apply_to_intrinsics(self, K: np.ndarray) -> np.ndarray:
        """Original-pixel intrinsics (..., 3, 3) -> processed-pixel intrinsics (..., 3, 3) float64."""
        K = np.array(K, dtype=np.float64)
        _check_k(K)
        (h0, w0), (h1, w1), (h2, w2) = self.original_hw, self.resized_hw, self.divisible_hw
        K[..., 0, :] *= w1 / float(w0)
        K[..., 1, :] *= h1 / float(h0)
        if self.second_step_is_resize:
            K[..., 0, :] *= w2 / float(w1)
            K[..., 1, :] *= h2 / float(h1)
        for top, left in (self.crop_offset_yx, self.batch_crop_offset_yx):
            K[..., 0, 2] -= left
            K[..., 1, 2] -= top
        return K

    def processed_to_original_intrinsics(self, K: np.ndarray) -> np.ndarray:
        """Processed-pixel intrinsics (..., 3, 3) -> intrinsics of the original image, float64.

        The exact inverse of ``apply_to_intrinsics`` (used to export cameras at the original size).
        """
        K = np.array(K, dtype=np.float64)
        _check_k(K)
        (h0, w0), (h1, w1), (h2, w2) = self.original_hw, self.resized_hw, self.divisible_hw
        for top, left in (self.batch_crop_offset_yx, self.crop_offset_yx):
            K[..., 0, 2] += left
            K[..., 1, 2] += top
        if self.second_step_is_resize:
            K[..., 0, :] /= w2 / float(w1)
            K[..., 1, :] /= h2 / float(h1)
        K[..., 0, :] /= w1 / float(w0)
        K[..., 1, :] /= h1 / float(h0)
        return K


def _check_k(K: np.ndarray) -> None:
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"intrinsics must be (3, 3) matrices, got shape {K.shape}")


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def check_process_res(process_res: int, method: str) -> None:
    """Raise ValueError with a user-facing message for a bad resolution or method name."""
    if method not in METHODS:
        raise ValueError(f"unknown resize method {method!r}: choose one of {', '.join(METHODS)}")
    if isinstance(process_res, bool) or not isinstance(process_res, (int, np.integer)):
        raise ValueError(f"process_res must be a whole number of pixels, got {process_res!r}")
    if process_res < PATCH_SIZE:
        raise ValueError(
            f"process_res must be at least {PATCH_SIZE} pixels (one network patch), got {process_res}; "
            f"the default is 504. Sides are rounded to multiples of {PATCH_SIZE}."
        )


def process_res_note(process_res: int, method: str = "upper_bound_resize") -> str | None:
    """A note for the user when ``process_res`` is not a multiple of 14, else None."""
    check_process_res(process_res, method)
    if process_res % PATCH_SIZE == 0:
        return None
    side = "longer" if method.startswith("upper") else "shorter"
    target = _nearest_multiple(process_res) if method.endswith("resize") else _floor_multiple(process_res)
    how = "rounded to the nearest" if method.endswith("resize") else "cropped down to a"
    return (
        f"Resolution {process_res} is not a multiple of {PATCH_SIZE}: the {side} side is {how} "
        f"multiple of {PATCH_SIZE}, so it becomes {target} px."
    )


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------


def _nearest_multiple(x: int, p: int = PATCH_SIZE) -> int:
    down = (x // p) * p
    up = down + p
    return up if abs(up - x) <= abs(x - down) else down  # ties go up, as upstream


def _floor_multiple(x: int, p: int = PATCH_SIZE) -> int:
    return (x // p) * p


def _boundary_size(h: int, w: int, process_res: int, method: str) -> tuple[Size, float]:
    """Size after the boundary resize and the scale used (1.0 when nothing happens)."""
    side = max(h, w) if method.startswith("upper") else min(h, w)
    if side == process_res:
        return (h, w), 1.0
    scale = process_res / float(side)
    # Python round() (ties to even) on the same float products as upstream
    return (max(1, int(round(h * scale))), max(1, int(round(w * scale)))), scale


def _preprocess_one(image: np.ndarray, process_res: int, method: str) -> tuple[np.ndarray, ImageTransform]:
    h0, w0 = image.shape[:2]
    (h1, w1), scale = _boundary_size(h0, w0, process_res, method)
    if (h1, w1) != (h0, w0):
        image = resize_uint8(image, w1, h1, interpolation="cubic" if scale > 1.0 else "area")
    if method.endswith("resize"):
        # at least one patch: upstream would return a 1-pixel side here and fail inside the network
        h2, w2 = max(PATCH_SIZE, _nearest_multiple(h1)), max(PATCH_SIZE, _nearest_multiple(w1))
        if (h2, w2) != (h1, w1):
            image = resize_uint8(image, w2, h2)  # cubic if either side grows, else area
        offset = (0, 0)
    else:
        h2, w2 = _floor_multiple(h1), _floor_multiple(w1)
        if h2 == 0 or w2 == 0:
            raise ValueError(
                f"an image of {w0}x{h0} px is {w1}x{h1} px at process_res {process_res}, too thin to crop "
                f"to a multiple of {PATCH_SIZE}: use a '*_resize' method or a higher resolution"
            )
        offset = ((h1 - h2) // 2, (w1 - w2) // 2)
        image = image[offset[0] : offset[0] + h2, offset[1] : offset[1] + w2]
    transform = ImageTransform((h0, w0), (h1, w1), (h2, w2), offset, (0, 0), (h2, w2), method)
    return image, transform


def preprocess_images(
    images: list[np.ndarray], process_res: int = 504, method: str = "upper_bound_resize"
) -> tuple[np.ndarray, list[ImageTransform]]:
    """RGB uint8 images (each (H_i, W_i, 3)) -> network-size pixels (N, H, W, 3) uint8 + transforms.

    H and W are multiples of 14. Mixed sizes: each image is processed on its own, then all are
    centre-cropped to the smallest H and W (torchvision ``CenterCrop``: offset round((H_i - H) / 2)).
    """
    check_process_res(process_res, method)
    if len(images) == 0:
        raise ValueError("no images to preprocess")
    processed, transforms = [], []
    for i, image in enumerate(images):
        a = np.asarray(image)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"image {i} must be an (H, W, 3) uint8 RGB array, got {a.dtype} {a.shape}")
        out, transform = _preprocess_one(a, int(process_res), method)
        processed.append(out)
        transforms.append(transform)

    min_h = min(t.final_hw[0] for t in transforms)
    min_w = min(t.final_hw[1] for t in transforms)
    batch = np.empty((len(processed), min_h, min_w, 3), dtype=np.uint8)
    for i, (out, t) in enumerate(zip(processed, transforms, strict=True)):
        h, w = t.final_hw
        top, left = int(round((h - min_h) / 2.0)), int(round((w - min_w) / 2.0))
        batch[i] = out[top : top + min_h, left : left + min_w]
        transforms[i] = replace(t, batch_crop_offset_yx=(top, left), final_hw=(min_h, min_w))
    return batch, transforms


def normalize(processed: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 ImageNet-normalised network input.

    Same float32 arithmetic as torchvision ``ToTensor`` + ``Normalize``: x / 255, minus mean, over std.
    """
    a = np.asarray(processed)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"normalize needs (N, H, W, 3) uint8 pixels, got {a.dtype} {a.shape}")
    x = np.ascontiguousarray(a.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[None, :, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[None, :, None, None]
    return (x - mean) / std
