"""Argument checks shared by every hf_vae module, with one message style:
"`name` must be <expected>, got <received>" (a `ValueError`, raised before any work is done)."""

from __future__ import annotations

import math
import numbers

import torch


def _fail(name: str, expected: str, value) -> None:
    raise ValueError(f"`{name}` must be {expected}, got {value!r}")


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> None:
    """`value` is an int (not a bool), at least `minimum` and at most `maximum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, "an int", value)
    if maximum is not None and (value > maximum or (minimum is not None and value < minimum)):
        _fail(name, f"an int in [{minimum}, {maximum}]" if minimum is not None else f"an int <= {maximum}", value)
    if minimum is not None and value < minimum:
        _fail(name, f"an int >= {minimum}", value)


def check_float(name: str, value, minimum: float | None = None, maximum: float | None = None,
                exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> None:
    """`value` is a finite real number in the given range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(name, "a finite number", value)
    low = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum}"
    high = "" if maximum is None else f"{'<' if exclusive_maximum else '<='} {maximum}"
    expected = "a number " + " and ".join(part for part in (low, high) if part)
    if minimum is not None and (value < minimum or (exclusive_minimum and value == minimum)):
        _fail(name, expected, value)
    if maximum is not None and (value > maximum or (exclusive_maximum and value == maximum)):
        _fail(name, expected, value)


def check_choice(name: str, value, choices) -> None:
    """`value` is one of `choices`."""
    if value not in choices:
        _fail(name, f"one of {tuple(choices)}", value)


def check_int_list(name: str, value, minimum: int = 1) -> None:
    """`value` is a non-empty list/tuple of ints, each at least `minimum`."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        _fail(name, f"a non-empty list of ints >= {minimum}", value)
    for item in value:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < minimum:
            _fail(name, f"a non-empty list of ints >= {minimum}", value)


def check_image_size(name: str, size: tuple[int, int], max_pixels: int) -> None:
    """An image of `size` (width, height), read from its file header, has at most `max_pixels` pixels: checked
    before its pixels are decoded, so a huge upload is refused without the memory to hold it."""
    width, height = size
    if width * height > max_pixels:
        raise ValueError(f"`{name}` must be an image of at most {max_pixels:,} pixels, got {width}x{height} "
                         f"({width * height:,} pixels)")


def check_bool(name: str, value) -> None:
    """`value` is a bool."""
    if not isinstance(value, bool):
        _fail(name, "a bool", value)


def check_number(name: str, value, minimum: float | None = None, exclusive_minimum: bool = False) -> None:
    """`value` is a finite real number (not a bool), at least (or above) `minimum`."""
    check_float(name, value, minimum=minimum, exclusive_minimum=exclusive_minimum)


def check_generator(generator) -> None:
    """`generator` is None or a `torch.Generator`."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"`generator` must be a torch.Generator or None, got {type(generator).__name__}")


def check_generators(generator, batch_size: int) -> None:
    """`generator` is None, a `torch.Generator`, or a list of `batch_size` of them (one per sample, as
    diffusers pipelines take them)."""
    if not isinstance(generator, (list, tuple)):
        check_generator(generator)
        return
    if len(generator) != batch_size or not all(isinstance(g, torch.Generator) for g in generator):
        kinds = sorted({type(g).__name__ for g in generator})
        raise ValueError(f"`generator` must be a torch.Generator or a list of {batch_size} torch.Generators (one per "
                         f"sample), got a {type(generator).__name__} of {len(generator)} ({', '.join(kinds) or 'empty'})")


def check_keys(kind: str, keys, known, also_accepted=frozenset()) -> None:
    """Every key of `keys` is one of `known` (or of `also_accepted`, not listed in the message): a typo is
    named, with the `known` keys (the `kind`, e.g. "VAEConfig fields") listed."""
    for key in keys:
        if key not in known and key not in also_accepted:
            _fail(key, f"one of the {kind} {list(known)}", key)


def check_pixel_values(pixel_values, num_channels: int, image_size: int, name: str = "pixel_values",
                       dtype: torch.dtype | None = None) -> None:
    """Raise `ValueError` unless `pixel_values` is a float tensor (B, C, H, W) of the configured size in [0, 1].

    With `dtype` (the model's), the tensor must have exactly that dtype: torch would otherwise fail deep
    inside the first convolution (fp16 / fp64 input against fp32 weights); the caller converts with
    `pixel_values.to(model.dtype)`.
    """
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(pixel_values).__name__}")
    if not pixel_values.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor with values in [0, 1], got dtype {pixel_values.dtype}")
    if dtype is not None and pixel_values.dtype != dtype:
        raise ValueError(f"`{name}` must have the model's dtype {dtype} (convert with `.to(model.dtype)`), "
                         f"got dtype {pixel_values.dtype}")
    expected = (num_channels, image_size, image_size)
    if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != expected:
        raise ValueError(f"`{name}` must have shape (batch, {', '.join(map(str, expected))}), got {tuple(pixel_values.shape)}")
    if pixel_values.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one image, got batch size 0")
    if torch.isnan(pixel_values).any():
        raise ValueError(f"`{name}` must not contain NaN, got {int(torch.isnan(pixel_values).sum())} NaN values")
    low, high = float(pixel_values.min()), float(pixel_values.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"`{name}` must have values in [0, 1], got values in [{low:.4g}, {high:.4g}]")


def check_latents(latents, shape: tuple[int, ...], name: str = "latents", dtype: torch.dtype | None = None) -> None:
    """Raise `ValueError` unless `latents` is a finite float tensor (B, *shape) (of `dtype`, when given)."""
    expected = f"(batch, {', '.join(map(str, shape))})"
    if not isinstance(latents, torch.Tensor) or latents.ndim != len(shape) + 1 or tuple(latents.shape[1:]) != tuple(shape):
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"`{name}` must be a tensor of shape {expected}, got {got}")
    if not latents.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got dtype {latents.dtype}")
    if dtype is not None and latents.dtype != dtype:
        raise ValueError(f"`{name}` must have the model's dtype {dtype} (convert with `.to(model.dtype)`), got dtype {latents.dtype}")
    bad = int((~torch.isfinite(latents)).sum())
    if bad:
        raise ValueError(f"`{name}` must be finite, got {bad} NaN or infinite values")


def check_indices(indices, vocab_size: int, grid_size: int, name: str = "indices", flat: str | None = None,
                  num_channels: int = 1) -> None:
    """Raise `ValueError` unless `indices` is an integer tensor (B, H, W) of the configured grid with ids in [0, vocab_size).

    `flat="full"` also accepts the grid flattened in raster order (B, H * W); `flat="prefix"` accepts any
    raster-order prefix (B, L <= H * W) (incremental decoding). `num_channels` > 1 (a prior over colour
    pixels, one token per subpixel) expects (B, num_channels, H, W) instead.
    """
    if not isinstance(indices, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(indices).__name__}")
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        raise ValueError(f"`{name}` must be an integer tensor of token ids, got dtype {indices.dtype}")
    num_positions = grid_size * grid_size
    if indices.ndim == 2 and flat == "full":
        flat_ok = indices.shape[1] == num_positions
    else:
        flat_ok = indices.ndim == 2 and flat == "prefix" and indices.shape[1] <= num_positions
    grid = (grid_size, grid_size) if num_channels == 1 else (num_channels, grid_size, grid_size)
    if not flat_ok and (indices.ndim != 1 + len(grid) or tuple(indices.shape[1:]) != grid):
        expected = f"(batch, {', '.join(map(str, grid))})"
        if flat is not None:
            expected += f" or (batch, {'L <= ' if flat == 'prefix' else ''}{num_positions})"
        raise ValueError(f"`{name}` must have shape {expected}, got {tuple(indices.shape)}")
    if indices.shape[0] == 0:
        raise ValueError(f"`{name}` must hold at least one grid, got batch size 0")
    if indices.numel() > 0:
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(f"`{name}` must hold token ids in [0, {vocab_size}), got ids in [{low}, {high}]")


def check_labels(labels, num_classes: int | None, batch_size: int, name: str = "labels") -> None:
    """Raise `ValueError` unless `labels` is None, or integer class ids (B,) in [0, num_classes) for a conditional model."""
    if labels is None:
        return
    if num_classes is None:
        raise ValueError(f"`{name}` must be None: the model is unconditional (num_classes=None), got {type(labels).__name__}")
    if not isinstance(labels, torch.Tensor) or labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"`{name}` must be an integer tensor of class ids, got {got}")
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"`{name}` must have shape ({batch_size},), got {tuple(labels.shape)}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"`{name}` must hold class ids in [0, {num_classes}), got ids in [{low}, {high}]")


def to_class_ids(labels, num_classes: int | None, batch_size: int, names: list[str] | None = None,
                 name: str = "labels") -> torch.Tensor | None:
    """What a user passes as `labels` -> class ids (batch_size,), checked by `check_labels`: the one
    conversion that `sample`, the CVAE, the priors, the pipelines and the CLI share.

    Accepted: `None`; one class id (int) or one class name (str) for every example; a (B,) integer tensor
    (returned as is, on its device); a list / tuple mixing ids and names. `names` are the model's class
    names (index = id; `config.label_names`). A string is always a class NAME, never parsed as an id:
    "3" is class 3 only where a class is named "3" (MNIST), and a model without names rejects it.
    """
    if labels is None or num_classes is None or isinstance(labels, torch.Tensor):
        check_labels(labels, num_classes, batch_size, name)  # an unconditional model rejects any labels
        return labels
    index = {label: class_id for class_id, label in enumerate(names or ())}
    if isinstance(labels, (list, tuple)):
        ids = torch.tensor([_class_id(item, index, num_classes, name) for item in labels], dtype=torch.long)
    else:
        ids = torch.full((batch_size,), _class_id(labels, index, num_classes, name), dtype=torch.long)
    check_labels(ids, num_classes, batch_size, name)
    return ids


def _class_id(label, index: dict[str, int], num_classes: int, name: str) -> int:
    """One id or class name -> its class id (the range is `check_labels`'s to check)."""
    if isinstance(label, numbers.Integral) and not isinstance(label, bool):
        return int(label)
    if isinstance(label, str) and label in index:
        return index[label]
    if not index:
        _fail(name, "class ids (an int, a list of ints or an integer tensor; this model has no class names: "
                    "config.id2label holds none, see hf_vae.set_label_names)", label)
    shown = ", ".join(repr(known) for known in list(index)[:10])
    more = f" and {len(index) - 10} more" if len(index) > 10 else ""
    _fail(name, f"class ids in [0, {num_classes}) or class names of the model ({shown}{more}), as one value, "
                "a list or an integer tensor", label)
