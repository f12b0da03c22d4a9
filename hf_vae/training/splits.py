"""The recipe's data as splits, the model/data compatibility check, and the inputs of one step.

    recipe.data (or a datasets object) ──► load_data ──► {"train", "validation" (or None), "test"}: torch datasets
        small splits (data.in_memory: auto) ──► TensorDictDataset  {"pixel_values": (N, C, H, W), "labels": (N,)}
        large ones                          ──► ImageDataset       (Arrow-backed, decoded on the fly by workers)
        data.streaming: true                ──► StreamingImageDataset (train shuffled and split between processes)
    (a prior over VQ-VAE codes then trains on {<main_input_name>: (N, h, w) code grids, "labels"}, `prior_data`)
    one batch + the step's generator ──► model_inputs ──► the keyword arguments of `model.forward`

Held-out splits the dataset lacks are carved from train (`data.test_size`, `data.validation_size`) before
anything is decoded, so every path (in memory, on the fly, streamed) trains on the same rows. Every decision
reads the family protocol (`input_kind`, `main_input_name`, `takes_global_step`, `is_conditional`), never a
method signature or an attribute probe.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch

from ..data import ImageDataset, StreamingImageDataset, TensorDictDataset, binarize_pixels, load_tensors
from ..data.dataset import skip_loader_seed
from ..data.loading import check_label_range, load_image_dataset
from ..data.splitting import carve_splits, stream_num_rows
from ..modeling_utils import pixels_to_indices
from .recipe import Recipe

__all__ = ["check_compatible", "load_data", "model_inputs"]

# The validation split is binarized once, with its own stream (seed + 1), apart from train and test.
_VALIDATION_SEED_OFFSET = 1
# `data.in_memory: auto` holds the splits as float32 tensors when all of them fit in this many bytes.
IN_MEMORY_AUTO_BYTES = 512 * 2**20


def load_data(recipe: Recipe, dataset=None, *, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """{"train", "validation" (None when not asked for), "test"} -> torch datasets of the recipe's data.

    Args:
        recipe: its `data` section says which dataset, which splits, and how images become tensors.
        dataset: a `datasets.Dataset`, `IterableDataset`, `DatasetDict` or `IterableDatasetDict` to use
            instead of opening `recipe.data.dataset` (a single split is the train split).
        rank, world_size: this process's part of a streamed train split.

    Training images stay grey when `train_binarize` is dynamic: the loop draws a fresh binarization per
    step from the step's seed (see `model_inputs`), which is what makes resuming exact.
    """
    d = recipe.data
    raw = _open(d, dataset)
    carved, row_ids = carve_splits(raw, train_split=d.train_split, test_split=d.test_split,
                                   validation_split=d.validation_split, test_size=d.test_size,
                                   validation_size=d.validation_size, seed=d.binarize_seed,
                                   label_column=d.label_column, return_row_ids=True)
    parts = {name: (carved[name], row_ids[name]) if name in carved else None for name in ("train", "validation", "test")}
    common = dict(image_size=d.image_size, center_crop=d.center_crop, num_channels=d.num_channels,
                  image_column=d.image_column, label_column=d.label_column, on_bad_image=d.on_bad_image)
    modes = _binarizations(d)
    views = {}
    for name, part in parts.items():
        if part is None:
            views[name] = None
            continue
        hf_split, row_ids = part
        binarize, seed = modes[name]
        if isinstance(hf_split, datasets.IterableDataset):
            train = name == "train"
            views[name] = StreamingImageDataset(
                hf_split, binarize=binarize, seed=seed, split=name, num_rows=stream_num_rows(hf_split),
                shuffle_buffer_size=d.shuffle_buffer_size if train else 0, shuffle_seed=recipe.training.seed,
                rank=rank if train else 0, world_size=world_size if train else 1, **common)
        else:
            views[name] = ImageDataset(hf_split, binarize=binarize, seed=seed, split=name, row_ids=row_ids, **common)
    if _in_memory(d, views):
        # Read once. Train and test draw their loaders' base seeds from the global RNG, as the recorded runs
        # (which carved validation out of the train tensors) did; validation draws from its own generator.
        for name in ("train", "test", "validation"):
            if views[name] is not None:
                generator = torch.Generator() if name == "validation" else None
                tensors = load_tensors(views[name], generator=generator)
                in_memory = TensorDictDataset(tensors, label_names=views[name].label_names)
                in_memory.num_skipped = len(views[name]) - len(in_memory)  # bad rows left out (on_bad_image=skip)
                views[name] = in_memory
    elif not d.streaming:
        for _ in range(2):  # what reading train and test in memory draws, so both paths build the same model
            skip_loader_seed()
    return views


def _open(d, dataset):
    """The dataset as a DatasetDict / IterableDatasetDict (opened by name, or the object given)."""
    if dataset is None:
        kwargs = {"streaming": True} if d.streaming else {}
        if d.config_name is not None:
            kwargs["name"] = d.config_name
        return load_image_dataset(d.dataset, None, revision=d.revision, **kwargs)
    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        dataset = {d.train_split: dataset}
    if not isinstance(dataset, (dict, datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"`dataset` must be a datasets.Dataset, IterableDataset, DatasetDict or IterableDatasetDict, "
                         f"got {type(dataset).__name__}")
    streamed = [isinstance(split, datasets.IterableDataset) for split in dataset.values()]
    if any(streamed) != d.streaming:
        raise ValueError(f"`data.streaming` must be {any(streamed)} for the {type(dataset).__name__} given, got {d.streaming}")
    return dataset


def _binarizations(d) -> dict[str, tuple[str, int]]:
    """(binarize mode, seed) of each split's view."""
    train = ("static", d.binarize_seed) if d.train_binarize == "static" else ("none", d.binarize_seed)
    if d.train_binarize == "static":
        validation = train  # rows from train keep train's binarization
    elif d.train_binarize == "dynamic" and d.eval_binarize == "static":
        # The held-out images are evaluated like the test split: one fixed binarization, its own stream.
        validation = ("static", d.binarize_seed + _VALIDATION_SEED_OFFSET)
    else:
        validation = ("none", d.binarize_seed)
    return {"train": train, "validation": validation, "test": (d.eval_binarize, d.binarize_seed)}


def _in_memory(d, views: dict) -> bool:
    """`data.in_memory`; `auto`: every split as float32 tensors fits in `IN_MEMORY_AUTO_BYTES`."""
    if d.streaming or d.in_memory is False:
        return False
    if d.in_memory is True:
        return True
    total = sum(len(v) * v.num_channels * v.image_size[0] * v.image_size[1] * 4 for v in views.values() if v is not None)
    return total <= IN_MEMORY_AUTO_BYTES


def check_compatible(model, splits: dict, dynamic_binarization: bool = False) -> None:
    """Fail before training when the model and the dataset disagree (channels, size, grid, labels)."""
    config = model.config
    train = splits["train"]
    tensors = train.tensors if isinstance(train, TensorDictDataset) else {}
    if type(model).input_kind == "tokens":
        if model.main_input_name in tensors:
            # A prior over VQ-VAE codes: `prior_data` replaced the images by (N, h, w) code grids.
            grid = tuple(tensors[model.main_input_name].shape[1:])
            if grid != (config.grid_size, config.grid_size):
                raise ValueError(f"`model.config.grid_size` must match the {grid[0]}x{grid[1]} VQ-VAE code grids, got {config.grid_size}")
        else:
            channels, height, width = _image_shape(train)
            if config.token_source != "pixels":
                raise ValueError(f"`model.config.token_source` must be 'pixels' when no VQ-VAE codes were prepared, got {config.token_source!r}")
            if channels != config.num_channels or (height, width) != (config.grid_size, config.grid_size):
                raise ValueError(f"`model.config.grid_size` and `num_channels` must match the dataset images (num_channels x "
                                 f"grid_size x grid_size), got {config.num_channels}x{config.grid_size}x{config.grid_size} "
                                 f"for {channels}x{height}x{width} images")
            if config.pixel_levels == 2 and not (_is_binary(splits["test"]) and (dynamic_binarization or _is_binary(train))):
                raise ValueError("`data.train_binarize` and `data.eval_binarize` must binarize the images for a prior over "
                                 "binary pixel tokens (pixel_levels=2), got grey images")
    else:
        channels, height, width = _image_shape(train)
        if config.num_channels != channels:
            raise ValueError(f"`model.config.num_channels` must match the dataset's {channels} channels (or set data.num_channels "
                             f"to convert), got {config.num_channels}")
        if (config.image_size, config.image_size) != (height, width):
            raise ValueError(f"`model.config.image_size` must match the dataset's {height}x{width} images (or set data.image_size "
                             f"to resize), got {config.image_size}")
    _check_labels_fit(model, train)


def _image_shape(split) -> tuple[int, int, int]:
    if isinstance(split, TensorDictDataset):
        return tuple(split.tensors["pixel_values"].shape[1:])
    return (split.num_channels, *split.image_size)


def _is_binary(split) -> bool:
    if not isinstance(split, TensorDictDataset):
        return split.binarize != "none"  # the view's own static binarization
    images = split.tensors["pixel_values"]
    return bool(((images == 0) | (images == 1)).all())


def _largest_label(split) -> int | None:
    """The largest label of a split: from the tensors, the Arrow column (no image is decoded), or the
    ClassLabel's size for a stream (whose int labels are checked as they arrive)."""
    if isinstance(split, TensorDictDataset):
        return int(split.tensors["labels"].max()) if "labels" in split.tensors else None
    if split.label_column is None:
        return None
    if isinstance(split, ImageDataset):  # the Arrow column only, no image decoded
        largest = check_label_range(split.dataset, split.label_column, split=split.split)
        split.release_mapped_pages()
        return largest
    return split.num_classes - 1 if split.num_classes else None


def _check_labels_fit(model, train) -> None:
    if not model.is_conditional:
        return
    num_classes = model.config.num_classes
    has_labels = "labels" in train.tensors if isinstance(train, TensorDictDataset) else train.label_column is not None
    if not has_labels:
        raise ValueError(f"`data.label_column` must name the labels of a conditional model (num_classes={num_classes}), "
                         "got a dataset without a label column")
    top = _largest_label(train)
    if top is not None and top >= num_classes:
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
        inputs[name] = (pixels_to_indices(pixel_values, model.config.pixel_levels, num_channels=model.config.num_channels)
                        if tokens else pixel_values)
    if type(model).takes_global_step:
        inputs["global_step"] = global_step
    if "labels" in batch and model.is_conditional:
        inputs["labels"] = batch["labels"]
    return inputs
