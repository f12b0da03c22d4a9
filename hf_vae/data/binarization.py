"""The one binarization of hf_vae and the one way it derives seeds.

Both binarization conventions of the VAE literature go through `binarize_pixels`: ``"static"`` (one
draw per example, seeded by (seed, index), as in the fixed binarized MNIST of Larochelle & Murray 2011)
and ``"dynamic"`` (a fresh draw at every read, Burda et al. 2016). `ImageDataset` draws with it per
example, the trainer per optimisation step; both seed their generators with `derived_seed`, so a
position in a run (seed, epoch, index, step, micro-batch, rank, ...) always names the same stream.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["BINARIZE_MODES", "binarize_pixels", "derived_seed", "seeded_generator"]

BINARIZE_MODES: tuple[str, ...] = ("none", "static", "dynamic")
"""Values accepted by ``ImageDataset(binarize=...)`` and the recipe's ``data.*_binarize``."""


def derived_seed(*entropy: int) -> int:
    """A 63-bit seed mixed from the integers ``entropy`` (e.g. ``(seed, epoch)`` or ``(seed, step, micro, rank)``).

    ``numpy.random.SeedSequence`` mixes the parts, so nearby tuples give unrelated streams; the value is
    a non-negative int that ``torch.Generator.manual_seed`` accepts.
    """
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, dtype=np.uint64)[0] >> 1)


def seeded_generator(*entropy: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derived_seed(*entropy)``."""
    return torch.Generator().manual_seed(derived_seed(*entropy))


def binarize_pixels(pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample binary pixels: each output value is 1 with probability equal to the input value.

    Args:
        pixel_values: floating tensor of any shape with values in [0, 1].
        generator: source of randomness; the result is reproducible with a seeded one.

    Returns:
        Tensor of the same shape and dtype with values in {0, 1} (one ``torch.bernoulli`` draw).
    """
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        received = pixel_values.dtype if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"`pixel_values` must be a floating torch.Tensor in [0, 1], got {received}")
    if pixel_values.numel() and not bool(((pixel_values >= 0) & (pixel_values <= 1)).all()):
        # NaN fails both comparisons, so it is reported here too.
        finite = pixel_values[~torch.isnan(pixel_values)]
        low, high = (finite.min().item(), finite.max().item()) if finite.numel() else (float("nan"),) * 2
        nan = " and NaN" if finite.numel() < pixel_values.numel() else ""
        raise ValueError(f"`pixel_values` must have values in [0, 1], got min {low}, max {high}{nan}")
    return torch.bernoulli(pixel_values, generator=generator)
