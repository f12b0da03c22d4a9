"""Tensor <-> image conversions shared by the trainer, the CLI and the pipelines.

Images are float tensors in [0, 1] of shape (B, C, H, W) everywhere in hf_vae; these helpers are the
only place they become uint8 numpy arrays or PIL images and back. The pipelines' pre-processing is
`load_images` (PIL images, files, arrays or tensors -> one batch) and `quantize`; their
post-processing is `format_images` (`output_type` "pil", "np" or "pt", as in diffusers).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image

OUTPUT_TYPES = ("pil", "np", "pt")


def to_numpy(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) float in [0, 1] -> (B, H, W, C) float32 numpy (the diffusers "np" layout)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"`images` must be a tensor of shape (batch, channels, height, width), got {got}")
    return images.detach().float().cpu().permute(0, 2, 3, 1).numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, C, H, W) float in [0, 1] -> list of B PIL images (mode "L" for 1 channel, "RGB" for 3)."""
    arrays = np.round(to_numpy(images).clip(0.0, 1.0) * 255).astype(np.uint8)
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays]


def from_pil(images: list[Image.Image], num_channels: int = 1) -> torch.Tensor:
    """List of PIL images (same size) -> (B, C, H, W) float32 in [0, 1]."""
    mode = {1: "L", 3: "RGB"}[num_channels]
    arrays = [np.asarray(image.convert(mode), dtype=np.float32) / 255.0 for image in images]
    stacked = np.stack([a[..., None] if a.ndim == 2 else a for a in arrays])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1) -> Image.Image:
    """Tile (B, C, H, W) images in [0, 1] into one PIL image, `nrow` per row (default ~sqrt(B))."""
    array = to_numpy(images).clip(0.0, 1.0)
    count, height, width, channels = array.shape
    nrow = nrow or math.ceil(math.sqrt(count))
    rows = math.ceil(count / nrow)
    canvas = np.ones((rows * (height + padding) + padding, nrow * (width + padding) + padding, channels), np.float32)
    for i in range(count):
        top, left = padding + (i // nrow) * (height + padding), padding + (i % nrow) * (width + padding)
        canvas[top : top + height, left : left + width] = array[i]
    grid = Image.fromarray(np.round(canvas * 255).astype(np.uint8).squeeze(-1) if channels == 1 else np.round(canvas * 255).astype(np.uint8))
    return grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST) if scale > 1 else grid


# ---------------------------------------------------------------------------------------------
# Pipelines: inputs -> one batch, batch -> the requested output type
# ---------------------------------------------------------------------------------------------


def check_output_type(output_type) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}")


def format_images(images: torch.Tensor, output_type: str = "pil"):
    """(B, C, H, W) images -> `output_type`, clamped to the pixel range [0, 1] (a Gaussian decoder's mean
    can leave it).

    `"pil"`: a list of B PIL images; `"np"`: float32 numpy (B, H, W, C); `"pt"`: a float tensor (B, C, H, W)
    on the images' device.
    """
    check_output_type(output_type)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"`images` must be a tensor of shape (batch, channels, height, width), got {got}")
    images = images.detach().float().clamp(0.0, 1.0)
    if output_type == "pil":
        return to_pil(images)
    if output_type == "np":
        return to_numpy(images)
    return images


def _one_image(image, num_channels: int, name: str) -> torch.Tensor:
    """One image -> (1, C, H, W) float32; values are checked by the model, not here."""
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            image = opened.copy()
    if isinstance(image, Image.Image):
        return from_pil([image], num_channels)
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            image = image.astype(np.float32) / 255.0
        elif not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"`{name}` arrays must be uint8 (0-255) or float (0-1), got dtype {image.dtype}")
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3:
            raise ValueError(f"`{name}` arrays must have shape (H, W) or (H, W, C), got {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    if isinstance(image, torch.Tensor):
        if image.ndim != 3:
            raise ValueError(f"`{name}` tensors must have shape (C, H, W) or (B, C, H, W), got {tuple(image.shape)}")
        return image[None]
    raise ValueError(
        f"`{name}` must be a PIL image, an image file path, a numpy array or a torch tensor (or a list of them), "
        f"got {type(image).__name__}"
    )


def load_images(images, num_channels: int, name: str = "images") -> tuple[torch.Tensor, bool]:
    """Pipeline inputs -> (one batch (B, C, H, W) float, whether the input was a batch).

    Accepts one image or a list/tuple of images, each a PIL image (converted to `num_channels` channels),
    a path to an image file, a numpy array (H, W[, C]) (uint8 scaled by 1/255, float taken as in [0, 1])
    or a tensor (C, H, W); or a tensor batch (B, C, H, W). Sizes are never changed: the model rejects a
    wrong size or range, naming `pixel_values`.
    """
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return images, True
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"`{name}` must hold at least one image, got an empty {type(images).__name__}")
        batch = [_one_image(image, num_channels, name) for image in images]
        shapes = {tuple(b.shape[1:]) for b in batch}
        if len(shapes) != 1:
            raise ValueError(f"`{name}` must all have the same (C, H, W) shape, got {sorted(shapes)}")
        return torch.cat(batch), True
    return _one_image(images, num_channels, name), False


def quantize(images: torch.Tensor, levels: int) -> torch.Tensor:
    """Round images in [0, 1] to the grid t / (levels - 1) (levels=2: binarize at 0.5), e.g. for a pixel prior."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"`levels` must be an int >= 2, got {levels!r}")
    return torch.round(images * (levels - 1)) / (levels - 1)
