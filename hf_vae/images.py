"""Tensor <-> image conversions shared by the trainer, the CLI and the pipelines.

Images are float tensors in [0, 1] of shape (B, C, H, W) everywhere in hf_vae; these helpers are the
only place they become uint8 numpy arrays or PIL images and back.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


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
