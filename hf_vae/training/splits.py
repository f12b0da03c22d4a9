"""The recipe's data as in-memory splits, the model/data compatibility check, and the inputs of one step.

    recipe.data ──► load_data ──► {"train", "validation", "test"}: {"pixel_values": (N, C, H, W), "labels": (N,)}
                                  (or {<main_input_name>: (N, h, w) code grids, "labels"} from `prior_data`)
    one batch + the step's generator ──► model_inputs ──► the keyword arguments of `model.forward`

Every decision reads the family protocol (`input_kind`, `main_input_name`, `takes_global_step`,
`is_conditional`), never a method signature or an attribute probe.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data import binarize_pixels, load_split, load_tensors
from ..modeling_utils import pixels_to_indices
from .recipe import Recipe

__all__ = ["check_compatible", "load_data", "model_inputs"]

# The validation split is binarized once, with its own stream (seed + 1), apart from train and test.
_VALIDATION_SEED_OFFSET = 1


def load_data(recipe: Recipe) -> dict[str, dict[str, torch.Tensor]]:
    """{"train", "validation" (maybe empty), "test"} -> {"pixel_values", "labels"?} tensors.

    Training images stay grey when `train_binarize` is dynamic: the loop draws a fresh binarization
    per step from the step's seed (see `model_inputs`), which is what makes resuming exact.
    """
    d = recipe.data
    common = dict(image_size=d.image_size, num_channels=d.num_channels, image_column=d.image_column,
                  label_column=d.label_column, seed=d.binarize_seed)
    train_mode = "static" if d.train_binarize == "static" else "none"
    train = load_tensors(load_split(d.dataset, d.train_split, revision=d.revision, binarize=train_mode, **common))
    test = load_tensors(load_split(d.dataset, d.test_split, revision=d.revision, binarize=d.eval_binarize, **common))
    splits = {"train": train, "test": test, "validation": {}}
    if d.validation_size:
        from sklearn.model_selection import train_test_split

        n = len(train["pixel_values"])
        if d.validation_size >= n:
            raise ValueError(f"`data.validation_size` must be < the {n} training examples, got {d.validation_size}")
        stratify = train["labels"].numpy() if "labels" in train else None
        keep, held = train_test_split(np.arange(n), test_size=d.validation_size, random_state=d.binarize_seed, stratify=stratify)
        keep, held = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))
        validation = {k: v[held] for k, v in train.items()}
        if d.train_binarize == "dynamic" and d.eval_binarize == "static":
            # The held-out images are evaluated like the test split: one fixed binarization.
            generator = torch.Generator().manual_seed(d.binarize_seed + _VALIDATION_SEED_OFFSET)
            validation["pixel_values"] = binarize_pixels(validation["pixel_values"], generator=generator)
        splits["validation"] = validation
        splits["train"] = {k: v[keep] for k, v in train.items()}
    return splits


def check_compatible(model, splits: dict, dynamic_binarization: bool = False) -> None:
    """Fail before training when the model and the dataset disagree (channels, size, grid, labels)."""
    config = model.config
    train = splits["train"]
    if type(model).input_kind == "tokens":
        if model.main_input_name in train:
            # A prior over VQ-VAE codes: `prior_data` replaced the images by (N, h, w) code grids.
            grid = tuple(train[model.main_input_name].shape[1:])
            if grid != (config.grid_size, config.grid_size):
                raise ValueError(f"`model.config.grid_size` must match the {grid[0]}x{grid[1]} VQ-VAE code grids, got {config.grid_size}")
        else:
            channels, height, width = train["pixel_values"].shape[1:]
            if config.token_source != "pixels":
                raise ValueError(f"`model.config.token_source` must be 'pixels' when no VQ-VAE codes were prepared, got {config.token_source!r}")
            if channels != 1 or (height, width) != (config.grid_size, config.grid_size):
                raise ValueError(f"`model.config.grid_size` must match the dataset images (1 channel, grid_size x grid_size), "
                                 f"got {config.grid_size} for {channels}x{height}x{width} images")
            if config.pixel_levels == 2 and not (_is_binary(splits["test"]) and (dynamic_binarization or _is_binary(train))):
                raise ValueError("`data.train_binarize` and `data.eval_binarize` must binarize the images for a prior over "
                                 "binary pixel tokens (pixel_levels=2), got grey images")
    else:
        channels, height, width = train["pixel_values"].shape[1:]
        if config.num_channels != channels:
            raise ValueError(f"`model.config.num_channels` must match the dataset's {channels} channels (or set data.num_channels "
                             f"to convert), got {config.num_channels}")
        if (config.image_size, config.image_size) != (height, width):
            raise ValueError(f"`model.config.image_size` must match the dataset's {height}x{width} images (or set data.image_size "
                             f"to resize), got {config.image_size}")
    _check_labels_fit(model, train)


def _is_binary(split: dict) -> bool:
    images = split["pixel_values"]
    return bool(((images == 0) | (images == 1)).all())


def _check_labels_fit(model, train: dict) -> None:
    if not model.is_conditional:
        return
    num_classes = model.config.num_classes
    if "labels" not in train:
        raise ValueError(f"`data.label_column` must name the labels of a conditional model (num_classes={num_classes}), "
                         "got a dataset without a label column")
    top = int(train["labels"].max())
    if top >= num_classes:
        raise ValueError(f"`model.config.num_classes` must exceed every label of the dataset (up to {top}), got {num_classes}")


def model_inputs(model, batch: dict, *, generator: torch.Generator, global_step: int, dynamic_binarization: bool) -> dict:
    """The keyword arguments of `model.forward` for one batch of the tensors `load_data` made.

    Dynamic binarization draws a fresh Bernoulli image per step with the step's generator (before the
    model draws from it); pixel-token priors then read the binary pixels as tokens. Labels go only to
    conditional models, `global_step` only to families that take it.
    """
    inputs: dict[str, Any] = {"generator": generator}
    name, tokens = model.main_input_name, type(model).input_kind == "tokens"
    if tokens and name in batch:
        inputs[name] = batch[name]  # (B, h, w) VQ-VAE code grids from `prior_data`
    else:
        pixel_values = batch["pixel_values"]
        if dynamic_binarization:
            pixel_values = binarize_pixels(pixel_values, generator=generator)
        inputs[name] = pixels_to_indices(pixel_values, model.config.pixel_levels) if tokens else pixel_values
    if type(model).takes_global_step:
        inputs["global_step"] = global_step
    if "labels" in batch and model.is_conditional:
        inputs["labels"] = batch["labels"]
    return inputs
