"""Data augmentation of the training split by small shifts (`data.augment_shift: n`, 0 = off).

    pixel_values (B, C, H, W) ──► each image translated by (dy, dx), both uniform in [-n, n] ──► (B, C, H, W)
    out[b, :, y, x] = in[b, :, y - dy, x - dx] where that pixel exists, else 0 (zero fill)

Zero fill, not edge fill: the datasets the binary families train on (MNIST-like digits) have a black
background, so a shifted digit looks like another centred-ish digit; repeating the edge row would smear the
digit's stroke across the border when it touches it. The offsets are drawn from the step's generator (the
one `derived_seed(seed, step, micro-batch, rank)` seeds), before the dynamic binarization draws from it, so
a resumed step shifts exactly as it did, and a grey image is shifted first, then binarized. Only the
training loop calls it: validation and test images are never shifted.
"""

from __future__ import annotations

import torch

from ..validation import check_generator, check_int

__all__ = ["random_shift"]


def random_shift(pixel_values: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image of a batch by its own integer offset in [-max_shift, max_shift] in each direction.

    Args:
        pixel_values: (B, C, H, W) images.
        max_shift: the largest offset in pixels, below both H and W (0 returns `pixel_values` and draws nothing).
        generator: a CPU generator (None: the global one); 2 * B integers are drawn from it (rows, then columns).

    Returns:
        (B, C, H, W) contiguous tensor of the same dtype and device, zero where the shift uncovered pixels.
    """
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"`pixel_values` must be a (B, C, H, W) tensor, got {shape}")
    check_int("max_shift", max_shift, minimum=0)
    check_generator(generator)
    batch, _, height, width = pixel_values.shape
    if max_shift and max_shift >= min(height, width):
        raise ValueError(f"`max_shift` must be below the image side {min(height, width)}, got {max_shift}")
    if max_shift == 0:
        return pixel_values
    offsets = torch.randint(-max_shift, max_shift + 1, (2, batch), generator=generator).to(pixel_values.device)
    # Read from a zero-padded copy: output row y of image b is padded row y - dy + max_shift.
    padded = torch.nn.functional.pad(pixel_values, (max_shift,) * 4)
    rows = torch.arange(height, device=pixel_values.device)[None, :] - offsets[0][:, None] + max_shift  # (B, H)
    cols = torch.arange(width, device=pixel_values.device)[None, :] - offsets[1][:, None] + max_shift  # (B, W)
    index = torch.arange(batch, device=pixel_values.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return shifted.permute(0, 3, 1, 2).contiguous()
