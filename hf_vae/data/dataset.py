"""The torch side: `ImageDataset` (one split as model-ready tensors), `load_split`, `make_dataloader`,
and the in-memory form of a small split that the trainer iterates (`load_tensors`, `TensorDictDataset`).

    datasets.Dataset ──► ImageDataset ──► make_dataloader ──► {"pixel_values": (B, C, H, W) float32 in [0, 1],
                                      └─► load_tensors    ──►  "labels": (B,) int64}
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

from ..validation import check_choice, check_int
from .binarization import BINARIZE_MODES, binarize_pixels, derived_seed, seeded_generator
from .loading import detect_columns, get_num_classes, load_image_dataset

__all__ = ["ImageDataset", "TensorDictDataset", "load_split", "load_tensors", "make_dataloader"]


# --------------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------------

def _channels_of_mode(mode: str, where: str) -> int:
    if mode.startswith(("I", "F")):
        # 16/32-bit integer and float images have no fixed [0, 1] scale, and convert() would clip
        # them to 8 bits: refuse rather than guess.
        raise ValueError(
            f"`{where}` must be an 8-bit image (PIL mode L, RGB, RGBA, P, ...), got mode {mode!r}"
        )
    return 1 if mode in ("1", "L", "LA") else 3


def _as_pil(value: Any, column: str, index: int) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping) and (value.get("bytes") or value.get("path")):
        # An Image column read with decode=False.
        return Image.open(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"])
    # Array features (Array2D/3D, nested lists) come back as python lists of ints without a format,
    # so any integer array within 0..255 is accepted as 8-bit pixels.
    array = np.asarray(value)
    is_8bit = array.dtype == np.uint8 or (
        np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() <= 255
    )
    if not is_8bit or not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4))):
        raise ValueError(
            f"`{column}[{index}]` must be a PIL image or an integer array in 0..255 of shape (H, W) or "
            f"(H, W, C) with C in (1, 3, 4), got a {array.dtype} array of shape {array.shape}"
        )
    array = array.astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)


def _as_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"`image_size` must be an int >= 1 or (height, width), got {image_size!r}")
    return size


# --------------------------------------------------------------------------------------------------
# DataLoader-ready view
# --------------------------------------------------------------------------------------------------

class ImageDataset(torch.utils.data.Dataset):
    """A ``torch`` view of one split of a ``datasets.Dataset``, yielding model-ready examples.

    ``dataset[i]`` is ``{"pixel_values": (C, H, W) float32 in [0, 1], "labels": () int64}`` (no
    ``"labels"`` when the dataset has no label column). Images are converted to ``num_channels``
    (1: PIL mode "L", 3: "RGB"; ``None`` keeps the first example's), resized with PIL bilinear only
    when ``image_size`` is given and differs, and scaled by 1/255.

    Binarization:
        - ``"static"``: one Bernoulli draw per example, seeded by ``(seed, index)``: the same example
          gives the same binary image in every read, view instance, access order and worker.
        - ``"dynamic"``: a fresh draw at every read, from a generator owned by the view and seeded by
          ``(seed, epoch)``; call ``set_epoch(epoch)`` before each epoch for reproducible runs. Inside
          ``DataLoader`` workers each worker reseeds its copy from ``(seed, epoch, worker seed)``, and
          the worker seed comes from the loader's generator (see ``make_dataloader``), so workers do
          not repeat each other's noise and a seeded loader reproduces the run.

    Args:
        hf_dataset: one split (``datasets.Dataset``, not a ``DatasetDict``).
        image_size: output ``(height, width)``, or an int for square; ``None`` keeps the native size,
            which must then be the same for every example.
        num_channels: 1 or 3; ``None`` keeps the native channels of the first example.
        binarize: one of ``BINARIZE_MODES``.
        seed: non-negative seed of the binarization.
        image_column: image column; detected when ``None`` (see ``detect_columns``).
        label_column: label column; detected when ``None``.
    """

    def __init__(
        self,
        hf_dataset: datasets.Dataset,
        *,
        image_size: int | Sequence[int] | None = None,
        num_channels: int | None = None,
        binarize: str = "none",
        seed: int = 0,
        image_column: str | None = None,
        label_column: str | None = None,
    ) -> None:
        if not isinstance(hf_dataset, datasets.Dataset):
            is_dict = isinstance(hf_dataset, datasets.DatasetDict)
            hint = f" with splits {list(hf_dataset)}; pick one" if is_dict else ""
            raise ValueError(
                f"`hf_dataset` must be a datasets.Dataset (one split), got "
                f"{type(hf_dataset).__name__}{hint}"
            )
        if len(hf_dataset) == 0:
            raise ValueError("`hf_dataset` must hold at least one example, got an empty dataset")
        check_choice("binarize", binarize, BINARIZE_MODES)
        check_choice("num_channels", num_channels, (1, 3, None))
        check_int("seed", seed, minimum=0)

        self.image_column, self.label_column = detect_columns(hf_dataset.features, image_column, label_column)
        self.binarize = binarize
        self.seed = seed
        self._num_classes = get_num_classes(hf_dataset.features, self.label_column)
        columns = [self.image_column] + ([self.label_column] if self.label_column else [])
        # Plain python/PIL rows whatever format the caller set; other columns are never decoded.
        self.dataset = hf_dataset.select_columns(columns).with_format(None)

        first = _as_pil(self.dataset[0][self.image_column], self.image_column, 0)
        channels = num_channels or _channels_of_mode(first.mode, f"{self.image_column}[0]")
        self._mode = {1: "L", 3: "RGB"}[channels]
        self._target_size = _as_size(image_size)
        self._native_size = (first.height, first.width)

        self.epoch = 0
        self._generator = torch.Generator()
        self._generator_worker_seed: int | None = None
        self.set_epoch(0)

    @property
    def num_channels(self) -> int:
        """Channels ``C`` of ``pixel_values``."""
        return 1 if self._mode == "L" else 3

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of ``pixel_values``."""
        return self._target_size or self._native_size

    @property
    def num_classes(self) -> int | None:
        """Number of classes of a ``ClassLabel`` label column, else ``None``."""
        return self._num_classes

    def set_epoch(self, epoch: int) -> None:
        """Reseed dynamic binarization from ``(seed, epoch)``; static binarization does not depend on it."""
        check_int("epoch", epoch, minimum=0)
        self.epoch = epoch
        self._generator.manual_seed(derived_seed(self.seed, epoch))
        self._generator_worker_seed = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"`index` must be in [-{len(self)}, {len(self)}), got {index}")
        index %= len(self)
        row = self.dataset[index]
        pixel_values = self._to_tensor(_as_pil(row[self.image_column], self.image_column, index), index)
        if self.binarize != "none":
            pixel_values = binarize_pixels(pixel_values, generator=self._binarize_generator(index))
        example = {"pixel_values": pixel_values}
        if self.label_column is not None:
            example["labels"] = torch.tensor(row[self.label_column], dtype=torch.int64)
        return example

    def _to_tensor(self, image: Image.Image, index: int) -> torch.Tensor:
        _channels_of_mode(image.mode, f"{self.image_column}[{index}]")
        if image.mode != self._mode:
            image = image.convert(self._mode)
        size = (image.height, image.width)
        if self._target_size is not None and size != self._target_size:
            image = image.resize(self._target_size[::-1], resample=Image.Resampling.BILINEAR)  # PIL: (W, H)
        elif self._target_size is None and size != self._native_size:
            raise ValueError(
                f"`{self.image_column}[{index}]` must have size (H, W) = {self._native_size} like example 0 (pass "
                f"image_size= to resize every example), got {size}"
            )
        array = np.asarray(image, dtype=np.uint8)
        array = array[:, :, None] if array.ndim == 2 else array  # (H, W) -> (H, W, 1)
        return torch.from_numpy(array.transpose(2, 0, 1).copy()).to(torch.float32) / 255.0

    def _binarize_generator(self, index: int) -> torch.Generator:
        if self.binarize == "static":
            return seeded_generator(self.seed, index)
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._generator_worker_seed != worker.seed:
            # Each worker holds a copy of the parent's generator state; without this they would all
            # draw the same noise.
            self._generator.manual_seed(derived_seed(self.seed, self.epoch, worker.seed))
            self._generator_worker_seed = worker.seed
        return self._generator

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_rows={len(self)}, image_column={self.image_column!r}, "
            f"label_column={self.label_column!r}, num_channels={self.num_channels}, "
            f"image_size={self.image_size}, num_classes={self.num_classes}, binarize={self.binarize!r})"
        )


def load_split(
    name_or_path: str | os.PathLike,
    split: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    **view_kwargs: Any,
) -> ImageDataset:
    """``ImageDataset(load_image_dataset(name_or_path, split, ...), **view_kwargs)`` in one call.

    Args:
        name_or_path: embedded name, Hub repo id or local path (see ``load_image_dataset``).
        split: split name, e.g. ``"train"``.
        revision: Hub branch, tag or commit.
        cache_dir: see ``load_image_dataset``.
        **view_kwargs: ``ImageDataset`` keywords (``image_size``, ``num_channels``, ``binarize``, ...).
    """
    if split is None:
        raise ValueError("`split` must be a split name such as 'train', got None")
    hf_dataset = load_image_dataset(name_or_path, split, revision=revision, cache_dir=cache_dir)
    return ImageDataset(hf_dataset, **view_kwargs)


def make_dataloader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` whose shuffling and worker seeds come from a generator seeded with ``seed``.

    Batches of an ``ImageDataset`` are ``{"pixel_values": (B, C, H, W) float32, "labels": (B,) int64}``.
    """
    check_int("batch_size", batch_size, minimum=1)
    check_int("num_workers", num_workers, minimum=0)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )


# --------------------------------------------------------------------------------------------------
# Small splits in memory
# --------------------------------------------------------------------------------------------------

class TensorDictDataset(torch.utils.data.Dataset):
    """A split held as tensors, ``{"pixel_values": (N, C, H, W), "labels": (N,), ...}``; ``dataset[i]``
    is ``{key: tensor[i]}``, so it batches like an ``ImageDataset`` (or like code grids, ``"indices"``)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"`tensors` must be a non-empty mapping of tensors of one length, got lengths {sorted(lengths)}")
        self.tensors = dict(tensors)

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}


def load_tensors(view: torch.utils.data.Dataset, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Read a whole split once into tensors (``{"pixel_values": (N, C, H, W), "labels": (N,)}``).

    Small image datasets fit in memory, and decoding PNGs at every step would dominate a CPU training
    step. The view is read in order, so a static binarization stays the view's own.

    The loader has no generator of its own, so starting to iterate it draws its base seed from torch's
    global RNG, as every such loader does. The trainer builds the model after reading the splits (and
    after `set_seed`), so its initial weights depend on that draw: keep it, or the recorded runs and
    benchmark numbers no longer reproduce.
    """
    batches = list(torch.utils.data.DataLoader(view, batch_size=batch_size, shuffle=False))
    return {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}
