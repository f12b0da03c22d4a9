"""The one image transform of hf_vae: raw dataset rows -> model-ready tensors, decoded on the fly.

    {"image": {"bytes": ...} | PIL image | uint8 array, "label": int}
        ──► decode ──► channels (L / RGB) ──► center crop ──► resize ──► / 255 ──► static binarization
        ──► {"pixel_values": (C, H, W) float32 in [0, 1], "labels": () int64}

`ImageTransform` is batched and picklable, so it runs inside `DataLoader` workers and plugs into
`datasets`' own transform API (`Dataset.with_transform`, `IterableDataset.map(batched=True)`). It decodes
the image column itself (the column is read with ``Image(decode=False)``), so an undecodable image is
reported with its split and row, or skipped and counted (`on_bad_image="skip"`): a skipped row comes out
as ``None``, and `collate_examples` drops it and counts it in the batch's ``"num_skipped"``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..validation import check_choice, check_int
from .binarization import binarize_pixels, seeded_generator

__all__ = ["BAD_IMAGE_POLICIES", "ImageTransform", "collate_examples"]

BAD_IMAGE_POLICIES: tuple[str, ...] = ("raise", "skip")
"""Values of ``on_bad_image``: raise naming the split and row, or skip the row and count it."""


class BadImageError(ValueError):
    """An image that cannot be decoded, or has a mode or size the transform cannot use."""


def channels_of_mode(mode: str, where: str) -> int:
    """1 for grey PIL modes, 3 for colour ones; 16/32-bit modes are refused (no fixed [0, 1] scale)."""
    if mode.startswith(("I", "F")):
        # convert() would clip 16/32-bit images to 8 bits: refuse rather than guess.
        raise BadImageError(f"`{where}` must be an 8-bit image (PIL mode L, RGB, RGBA, P, ...), got mode {mode!r}")
    return 1 if mode in ("1", "L", "LA") else 3


def as_pil(value: Any, where: str) -> Image.Image:
    """A PIL image from what an image column holds: a PIL image, ``{"bytes", "path"}`` (an Image column read
    with ``decode=False``), or an integer array in 0..255 of shape (H, W) or (H, W, C) with C in (1, 3, 4)."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, Mapping) and (value.get("bytes") or value.get("path")):
        try:
            image = Image.open(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"])
            image.load()  # decode now, so a truncated file fails here and not later in a worker
        except Exception as error:  # noqa: BLE001 (PIL raises OSError, SyntaxError, ValueError, ...)
            raise BadImageError(f"`{where}` must be a decodable image, got undecodable bytes "
                                f"({type(error).__name__}: {error})") from None
        return image
    # Array features (Array2D/3D, nested lists) come back as python lists of ints without a format,
    # so any integer array within 0..255 is accepted as 8-bit pixels.
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        array = np.asarray(value, dtype=object)
    is_8bit = array.dtype == np.uint8 or (
        np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() <= 255
    )
    if not is_8bit or not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4))):
        raise BadImageError(
            f"`{where}` must be a PIL image, image bytes, or an integer array in 0..255 of shape (H, W) or "
            f"(H, W, C) with C in (1, 3, 4), got {type(value).__name__} ({array.dtype} array of shape {array.shape})"
        )
    array = array.astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)


def as_size(image_size: int | Sequence[int] | None, name: str = "image_size") -> tuple[int, int] | None:
    """``(height, width)`` from an int (square) or a pair; ``None`` stays ``None``."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"`{name}` must be an int >= 1 or (height, width), got {image_size!r}")
    return size


class ImageTransform:
    """Decode, convert, crop, resize and scale a batch of rows into model-ready examples.

    Args:
        image_column: the column holding the images.
        label_column: the column holding integer class ids, or ``None``.
        num_channels: 1 (PIL mode "L") or 3 ("RGB").
        image_size: output ``(height, width)`` (or an int for square).
        resize: resize images of another size (PIL bilinear); when False they are an error.
        center_crop: crop a centred square of this side before resizing (e.g. 148 for CelebA faces).
        binarize: ``"none"`` or ``"static"`` (one Bernoulli draw seeded by ``(seed, row)``).
        seed: seed of the static binarization.
        split: the split's name, for error messages.
        on_bad_image: ``"raise"`` names the split and row of an image that cannot be used; ``"skip"`` turns
            its example into ``None`` (see `collate_examples`).
        num_classes: when given, a label outside ``[0, num_classes)`` is an error naming the row.
    """

    def __init__(self, *, image_column: str, label_column: str | None = None, num_channels: int,
                 image_size: int | Sequence[int], resize: bool = True, center_crop: int | None = None,
                 binarize: str = "none", seed: int = 0, split: str = "train", on_bad_image: str = "raise",
                 num_classes: int | None = None) -> None:
        check_choice("num_channels", num_channels, (1, 3))
        check_choice("binarize", binarize, ("none", "static"))
        check_choice("on_bad_image", on_bad_image, BAD_IMAGE_POLICIES)
        check_int("seed", seed, minimum=0)
        if center_crop is not None:
            check_int("center_crop", center_crop, minimum=1)
        self.image_column, self.label_column = image_column, label_column
        self.mode = {1: "L", 3: "RGB"}[num_channels]
        self.image_size = as_size(image_size)
        self.resize, self.center_crop = resize, center_crop
        self.binarize, self.seed, self.split = binarize, seed, split
        self.on_bad_image, self.num_classes = on_bad_image, num_classes

    def __call__(self, batch: Mapping[str, list], indices: Sequence[int] | None = None) -> dict[str, list]:
        """``datasets`` style: a batch of columns in, columns ``pixel_values`` (and ``labels``) out, skipped
        rows left out. ``indices`` are the rows' positions (``IterableDataset.map(..., with_indices=True)``)."""
        examples = [e for e in self.examples(batch, indices) if e is not None]
        columns = {"pixel_values": [e["pixel_values"] for e in examples]}
        if self.label_column is not None:
            columns["labels"] = [e["labels"] for e in examples]
        return columns

    def examples(self, batch: Mapping[str, list], indices: Sequence[int] | None = None) -> list[dict | None]:
        """One ``{"pixel_values", "labels"?}`` per row (``None`` for a skipped one), in the batch's order."""
        images = batch[self.image_column]
        if indices is None:
            if self.binarize == "static":
                raise ValueError("`indices` must be given for a static binarization (it is seeded by row), got None")
            indices = range(len(images))
        labels = batch[self.label_column] if self.label_column is not None else None
        out = []
        for position, (row, value) in enumerate(zip(indices, images)):
            where = f"{self.image_column}[{int(row)}] of split {self.split!r}"
            try:
                pixel_values = self.pixels(value, where, int(row))
            except BadImageError as error:
                if self.on_bad_image == "raise":
                    raise BadImageError(f"{error} (set `data.on_bad_image: skip` to skip and count such rows)") from None
                out.append(None)
                continue
            example = {"pixel_values": pixel_values}
            if labels is not None:
                example["labels"] = self._label(labels[position], int(row))
            out.append(example)
        return out

    def pixels(self, value: Any, where: str, row: int) -> torch.Tensor:
        """(C, H, W) float32 in [0, 1] (binary under a static binarization) from one image value."""
        image = as_pil(value, where)
        channels_of_mode(image.mode, where)
        if image.mode != self.mode:
            image = image.convert(self.mode)
        if self.center_crop is not None:
            side = self.center_crop
            if image.width < side or image.height < side:
                raise BadImageError(f"`{where}` must be at least {side}x{side} for data.center_crop={side}, "
                                    f"got {image.width}x{image.height} (W x H)")
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
        size = (image.height, image.width)
        if size != self.image_size:
            if not self.resize:
                raise BadImageError(f"`{where}` must have size (H, W) = {self.image_size} like the first example "
                                    f"(pass image_size= to resize every example), got {size}")
            image = image.resize(self.image_size[::-1], resample=Image.Resampling.BILINEAR)  # PIL: (W, H)
        array = np.asarray(image, dtype=np.uint8)
        array = array[:, :, None] if array.ndim == 2 else array  # (H, W) -> (H, W, 1)
        pixel_values = torch.from_numpy(array.transpose(2, 0, 1).copy()).to(torch.float32) / 255.0
        if self.binarize == "static":
            pixel_values = binarize_pixels(pixel_values, generator=seeded_generator(self.seed, row))
        return pixel_values

    def _label(self, value: Any, row: int) -> torch.Tensor:
        where = f"{self.label_column}[{row}] of split {self.split!r}"
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"`{where}` must be an integer class id, got {value!r}")
        if value < 0 or (self.num_classes is not None and value >= self.num_classes):
            bound = f"in [0, {self.num_classes})" if self.num_classes is not None else ">= 0"
            raise ValueError(f"`{where}` must be a class id {bound}, got {value}")
        return torch.tensor(int(value), dtype=torch.int64)


def collate_examples(examples: list[dict | None]) -> dict[str, torch.Tensor]:
    """Stack examples into a batch ``{"pixel_values": (B, C, H, W), "labels": (B,)}``, dropping the ``None`` of
    skipped rows; their count is the batch's ``"num_skipped"`` (only present when some were skipped)."""
    kept = [e for e in examples if e is not None]
    if not kept:
        return {"num_skipped": len(examples)}
    batch = {key: torch.stack([e[key] for e in kept]) for key in kept[0]}
    if len(kept) < len(examples):
        batch["num_skipped"] = len(examples) - len(kept)
    return batch
