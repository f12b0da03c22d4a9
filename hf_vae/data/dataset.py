"""The torch side of a split: `ImageDataset` (map-style, Arrow-backed, decoded on the fly),
`StreamingImageDataset` (an `IterableDataset` read as it streams), `load_split`, and the in-memory form
of a small split (`load_tensors`, `TensorDictDataset`). The loaders over them are in `loaders`.

    datasets.Dataset         ──► ImageDataset          ─┐  batches of collate_examples:
    datasets.IterableDataset ──► StreamingImageDataset ─┼─► {"pixel_values": (B, C, H, W) float32 in [0, 1],
    ImageDataset ──► load_tensors ──► TensorDictDataset ─┘    "labels": (B,) int64, "num_skipped"?: int}

Both views read the image column undecoded (``Image(decode=False)``) and hand rows to one `ImageTransform`,
so decoding happens in the `DataLoader` workers, and a bad image names its split and row.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from ..validation import check_bool, check_choice, check_int
from .binarization import BINARIZE_MODES, binarize_pixels, derived_seed
from .loading import detect_columns, get_label_names, get_num_classes, load_image_dataset
from .transforms import ImageTransform, as_pil, as_size, channels_of_mode, collate_examples

__all__ = ["ImageDataset", "MappedPages", "StreamingImageDataset", "TensorDictDataset", "load_split", "load_tensors"]


class _SplitView:
    """What both views share: column detection, the first example's channels and size, the transform."""

    def _setup(self, features, first_row: Mapping | None, *, image_size, center_crop, num_channels, binarize,
               seed, image_column, label_column, split, on_bad_image) -> None:
        check_choice("binarize", binarize, BINARIZE_MODES)
        check_choice("num_channels", num_channels, (1, 3, None))
        check_int("seed", seed, minimum=0)
        if first_row is None:
            raise ValueError(f"`hf_dataset` must hold at least one example, got an empty split {split!r}")
        self.image_column, self.label_column = detect_columns(features, image_column, label_column)
        self.binarize, self.seed, self.split = binarize, seed, split
        self._num_classes = get_num_classes(features, self.label_column) if self.label_column else None
        self._label_names = get_label_names(features, self.label_column) if self.label_column else None
        target = as_size(image_size)
        where = f"{self.image_column}[0] of split {split!r}"
        first = as_pil(first_row[self.image_column], where)
        channels = num_channels or channels_of_mode(first.mode, where)
        native = (center_crop, center_crop) if center_crop else (first.height, first.width)
        self.transform = ImageTransform(
            image_column=self.image_column, label_column=self.label_column, num_channels=channels,
            image_size=target or native, resize=target is not None or center_crop is not None,
            center_crop=center_crop, binarize="static" if binarize == "static" else "none", seed=seed,
            split=split, on_bad_image=on_bad_image, num_classes=self._num_classes,
        )

    @staticmethod
    def _undecoded(hf_dataset, image_column: str):
        """The image column read as ``{"bytes", "path"}``: decoding is the transform's (and the workers') job."""
        feature = (hf_dataset.features or {}).get(image_column)
        if isinstance(feature, datasets.Image) and feature.decode:
            return hf_dataset.cast_column(image_column, datasets.Image(decode=False))
        return hf_dataset

    @property
    def num_channels(self) -> int:
        """Channels ``C`` of ``pixel_values``."""
        return 1 if self.transform.mode == "L" else 3

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of ``pixel_values``."""
        return self.transform.image_size

    @property
    def num_classes(self) -> int | None:
        """Number of classes of a ``ClassLabel`` label column, else ``None``."""
        return self._num_classes

    @property
    def label_names(self) -> list[str] | None:
        """The ``ClassLabel`` names of the label column, else ``None``."""
        return self._label_names


class ImageDataset(_SplitView, torch.utils.data.Dataset):
    """A map-style ``torch`` view of one split of a ``datasets.Dataset``, decoded on the fly.

    ``dataset[i]`` is ``{"pixel_values": (C, H, W) float32 in [0, 1], "labels": () int64}`` (no
    ``"labels"`` when the dataset has no label column). ``__getitems__`` reads a whole batch of rows from
    Arrow at once, so a ``DataLoader`` (with workers) asks for one slice per batch. Images are converted to
    ``num_channels`` (1: PIL mode "L", 3: "RGB"; ``None`` keeps the first example's), center-cropped when
    ``center_crop`` is given, resized (PIL bilinear) only when ``image_size`` is given and differs, and scaled
    by 1/255.

    Binarization:
        - ``"static"``: one Bernoulli draw per example, seeded by ``(seed, row)``: the same example gives the
          same binary image in every read, view, access order and worker. ``row`` is the example's row in
          the split it came from (``row_ids``), so a carved subset keeps its rows' binarization.
        - ``"dynamic"``: a fresh draw at every read, from a generator owned by the view and seeded by
          ``(seed, epoch)``; call ``set_epoch(epoch)`` before each epoch. Inside ``DataLoader`` workers each
          worker reseeds its copy from ``(seed, epoch, worker seed)``. (The trainer binarizes per step
          instead, which is what makes its resume exact.)

    Args:
        hf_dataset: one split (``datasets.Dataset``, not a ``DatasetDict``).
        image_size: output ``(height, width)``, or an int for square; ``None`` keeps the native size,
            which must then be the same for every example.
        center_crop: crop a centred square of this side first (then resize to ``image_size``).
        num_channels: 1 or 3; ``None`` keeps the native channels of the first example.
        binarize: one of ``BINARIZE_MODES``.
        seed: non-negative seed of the binarization.
        image_column: image column; detected when ``None`` (see ``detect_columns``).
        label_column: label column; detected when ``None``.
        split: the split's name, for error messages.
        on_bad_image: ``"raise"`` (an error naming the split and row) or ``"skip"`` (the example is ``None``,
            dropped and counted by `collate_examples`).
        row_ids: the rows of the original split that ``hf_dataset`` holds (``None``: ``0..N-1``).
    """

    def __init__(self, hf_dataset: datasets.Dataset, *, image_size: int | Sequence[int] | None = None,
                 center_crop: int | None = None, num_channels: int | None = None, binarize: str = "none",
                 seed: int = 0, image_column: str | None = None, label_column: str | None = None,
                 split: str = "train", on_bad_image: str = "raise", row_ids: Sequence[int] | None = None) -> None:
        if not isinstance(hf_dataset, datasets.Dataset):
            is_dict = isinstance(hf_dataset, (datasets.DatasetDict, datasets.IterableDatasetDict))
            hint = f" with splits {list(hf_dataset)}; pick one" if is_dict else ""
            raise ValueError(f"`hf_dataset` must be a datasets.Dataset (one split), got {type(hf_dataset).__name__}{hint}")
        image, label = detect_columns(hf_dataset.features, image_column, label_column)
        # Plain python rows whatever format the caller set; other columns are never read.
        table = self._undecoded(hf_dataset.select_columns([image] + ([label] if label else [])), image).with_format(None)
        self.dataset = table
        self.row_ids = None if row_ids is None else np.asarray(row_ids, dtype=np.int64)
        if self.row_ids is not None and len(self.row_ids) != len(table):
            raise ValueError(f"`row_ids` must have one entry per row ({len(table)}), got {len(self.row_ids)}")
        self._setup(hf_dataset.features, table[0] if len(table) else None, image_size=image_size,
                    center_crop=center_crop, num_channels=num_channels, binarize=binarize, seed=seed,
                    image_column=image, label_column=label, split=split, on_bad_image=on_bad_image)
        self._mapped_pages = MappedPages([f["filename"] for f in table.cache_files])
        self.release_mapped_pages()  # what opening and casting the table read
        self.epoch = 0
        self._generator = torch.Generator()
        self._generator_worker_seed: int | None = None
        self.set_epoch(0)

    def release_mapped_pages(self) -> None:
        """Drop this process's resident pages of the split's Arrow files (see `MappedPages`)."""
        self._mapped_pages.release()

    def set_epoch(self, epoch: int) -> None:
        """Reseed dynamic binarization from ``(seed, epoch)``; static binarization does not depend on it."""
        check_int("epoch", epoch, minimum=0)
        self.epoch = epoch
        self._generator.manual_seed(derived_seed(self.seed, epoch))
        self._generator_worker_seed = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor] | None]:
        """The examples of ``indices`` (``None`` for a skipped bad row), read from Arrow in one slice."""
        n = len(self)
        positions = []
        for index in indices:
            index = int(index)
            if not -n <= index < n:
                raise IndexError(f"`index` must be in [-{n}, {n}), got {index}")
            positions.append(index % n)
        rows = self.dataset[positions]
        self.release_mapped_pages()
        row_ids = positions if self.row_ids is None else self.row_ids[positions].tolist()
        examples = self.transform.examples(rows, row_ids)
        if self.binarize == "dynamic":
            generator = self._dynamic_generator()
            for example in examples:
                if example is not None:
                    example["pixel_values"] = binarize_pixels(example["pixel_values"], generator=generator)
        return examples

    def _dynamic_generator(self) -> torch.Generator:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._generator_worker_seed != worker.seed:
            # Each worker holds a copy of the parent's generator state; without this they would all
            # draw the same noise.
            self._generator.manual_seed(derived_seed(self.seed, self.epoch, worker.seed))
            self._generator_worker_seed = worker.seed
        return self._generator

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_rows={len(self)}, split={self.split!r}, image_column={self.image_column!r}, "
                f"label_column={self.label_column!r}, num_channels={self.num_channels}, image_size={self.image_size}, "
                f"num_classes={self.num_classes}, binarize={self.binarize!r})")


class MappedPages:
    """Keeps a process's resident memory from growing with the Arrow files it reads at random.

    `datasets` memory-maps its Arrow cache files. Random reads fault pages in (the kernel maps up to 64 KiB
    around each), and they stay in the process's resident set, so a worker that reads a few rows from
    everywhere ends up holding most of the file: its memory grows with the dataset, not with what it uses.
    `release` tells the kernel (Linux ``madvise(MADV_DONTNEED)``) that this process no longer needs the
    mapped pages of these files; they stay in the page cache, and the next read maps them again. Only
    read-only mappings of the named files are touched (never anonymous memory, whose content that would
    discard); elsewhere than Linux it does nothing.
    """

    _MADV_DONTNEED = 4

    def __init__(self, filenames: Sequence[str]) -> None:
        self.filenames = {os.path.realpath(f) for f in filenames if f}
        self._ranges: list[tuple[int, int]] | None = None
        self._libc = None

    def __getstate__(self) -> dict:  # a worker finds its own mappings
        return {"filenames": self.filenames, "_ranges": None, "_libc": None}

    def release(self) -> None:
        """Drop this process's resident pages of the files' read-only mappings."""
        if not self.filenames or not sys.platform.startswith("linux"):
            return
        if self._ranges is None:
            import ctypes

            self._libc = ctypes.CDLL(None, use_errno=True)
            self._libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            self._ranges = self._find_ranges() or None  # none mapped yet: look again next time
        for start, end in self._ranges or ():
            self._libc.madvise(start, end - start, self._MADV_DONTNEED)

    def _find_ranges(self) -> list[tuple[int, int]]:
        ranges = []
        with open("/proc/self/maps") as maps:  # "start-end perms offset dev inode path"
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[1].startswith("r") and "w" not in fields[1] \
                        and os.path.realpath(fields[5].strip()) in self.filenames:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    ranges.append((start, end))
        return ranges


class StreamingImageDataset(_SplitView, torch.utils.data.IterableDataset):
    """A ``torch`` iterable over a streamed split (``datasets.IterableDataset``), decoded as it streams.

    The stream is shuffled with a buffer (``shuffle_buffer_size``; 0 keeps the stored order) and, in a
    multi-process run, split between processes with ``datasets.distributed.split_dataset_by_node``. Its
    position is the dataset's own ``state_dict()``: read in the main process (no workers), a state taken
    after ``k`` batches is exactly after the ``k * batch_size`` examples yielded, and ``load_state_dict``
    resumes there. ``datasets`` does not save a shuffle buffer: on resume, the examples that were in it are
    not read in that epoch (none is read twice), and the order after the checkpoint differs from an
    uninterrupted run. With ``shuffle_buffer_size=0`` a resumed run reads exactly what it would have.

    Yields the examples of `ImageDataset` (``None`` for a skipped bad image). A static binarization is
    seeded by the position in the stream, which is the row only for an unshuffled single-process stream,
    so it is refused otherwise.

    Args:
        hf_stream: one streamed split.
        shuffle_buffer_size: examples in the shuffle buffer (0: no shuffling).
        shuffle_seed: seed of the shard order and buffer; ``set_epoch`` varies it per epoch.
        rank, world_size: this process's part of the stream.
        num_rows: the split's size when known (e.g. from the dataset's info), else ``None``.
        (the rest as in `ImageDataset`)
    """

    def __init__(self, hf_stream: datasets.IterableDataset, *, image_size: int | Sequence[int] | None = None,
                 center_crop: int | None = None, num_channels: int | None = None, binarize: str = "none",
                 seed: int = 0, image_column: str | None = None, label_column: str | None = None,
                 split: str = "train", on_bad_image: str = "raise", shuffle_buffer_size: int = 0,
                 shuffle_seed: int = 0, rank: int = 0, world_size: int = 1, num_rows: int | None = None) -> None:
        if not isinstance(hf_stream, datasets.IterableDataset):
            raise ValueError(f"`hf_stream` must be a datasets.IterableDataset (one streamed split), got {type(hf_stream).__name__}")
        check_int("shuffle_buffer_size", shuffle_buffer_size, minimum=0)
        check_int("world_size", world_size, minimum=1)
        check_int("rank", rank, minimum=0)
        if rank >= world_size:
            raise ValueError(f"`rank` must be < world_size={world_size}, got {rank}")
        if binarize == "dynamic":
            raise ValueError("`binarize` must be 'none' or 'static' for a stream (the trainer draws a dynamic "
                             "binarization per step), got 'dynamic'")
        if binarize == "static" and (shuffle_buffer_size or world_size > 1):
            raise ValueError("`binarize` must be 'none' for a shuffled or split stream (a static binarization is "
                             "seeded by row, and only an unshuffled single-process stream knows its rows), got 'static'")
        features = hf_stream.features
        if features is None:
            raise ValueError("`hf_stream` must declare its features (datasets.Features with an Image column), got None")
        image, label = detect_columns(features, image_column, label_column)
        stream = self._undecoded(hf_stream.select_columns([image] + ([label] if label else [])), image)
        first = next(iter(stream.take(1)), None)  # reads the first shard's head only
        self._setup(features, first, image_size=image_size, center_crop=center_crop, num_channels=num_channels,
                    binarize=binarize, seed=seed, image_column=image, label_column=label, split=split,
                    on_bad_image=on_bad_image)
        if shuffle_buffer_size:
            stream = stream.shuffle(seed=shuffle_seed, buffer_size=shuffle_buffer_size)
        if world_size > 1:
            from datasets.distributed import split_dataset_by_node

            stream = split_dataset_by_node(stream, rank=rank, world_size=world_size)
        self.stream, self.num_rows = stream, num_rows

    def set_epoch(self, epoch: int) -> None:
        """A new shard order and shuffle for each epoch (``datasets``' ``set_epoch``)."""
        check_int("epoch", epoch, minimum=0)
        self.stream.set_epoch(epoch)

    def state_dict(self) -> dict:
        """The stream's position (``datasets.IterableDataset.state_dict``), JSON-able."""
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Resume the stream at a position from `state_dict` (the next iteration starts there)."""
        self.stream.load_state_dict(state)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor] | None]:
        for position, row in enumerate(self.stream):
            # One row at a time: the stream's state then always sits just after the last example yielded.
            yield self.transform.examples({k: [v] for k, v in row.items()}, [position])[0]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_rows={self.num_rows}, split={self.split!r}, image_column={self.image_column!r}, "
                f"label_column={self.label_column!r}, num_channels={self.num_channels}, image_size={self.image_size}, "
                f"num_classes={self.num_classes})")


def load_split(name_or_path: str | os.PathLike | datasets.Dataset | datasets.IterableDataset | Mapping,
               split: str | None, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
               streaming: bool = False, config_name: str | None = None,
               **view_kwargs: Any) -> ImageDataset | StreamingImageDataset:
    """One split as a torch dataset: `ImageDataset`, or `StreamingImageDataset` when streamed.

    Args:
        name_or_path: embedded name, Hub repo id or local path (see ``load_image_dataset``), or a
            ``datasets.Dataset`` / ``IterableDataset`` / ``DatasetDict`` / ``IterableDatasetDict`` object.
        split: split name, e.g. ``"train"``; ``None`` only for a single ``Dataset``/``IterableDataset`` object.
        revision: Hub branch, tag or commit.
        cache_dir: see ``load_image_dataset``.
        streaming: open the dataset as a stream (``datasets.load_dataset(..., streaming=True)``).
        config_name: the dataset's configuration (``datasets.load_dataset(name=...)``).
        **view_kwargs: keywords of the view (``image_size``, ``num_channels``, ``binarize``, ...).
    """
    check_bool("streaming", streaming)
    if isinstance(name_or_path, (datasets.Dataset, datasets.IterableDataset)):
        split = split or str(name_or_path.split or "train")  # a single split object names itself
    elif split is None:
        raise ValueError("`split` must be a split name such as 'train', got None")
    # Names, paths and objects alike: `load_image_dataset` picks the split (and streams when asked).
    hf_dataset = load_image_dataset(name_or_path, split, revision=revision, cache_dir=cache_dir, streaming=streaming,
                                    config_name=config_name)
    view_kwargs.setdefault("split", split)
    if isinstance(hf_dataset, datasets.IterableDataset):
        return StreamingImageDataset(hf_dataset, **view_kwargs)
    return ImageDataset(hf_dataset, **view_kwargs)


# --------------------------------------------------------------------------------------------------
# Small splits in memory
# --------------------------------------------------------------------------------------------------

class TensorDictDataset(torch.utils.data.Dataset):
    """A split held as tensors, ``{"pixel_values": (N, C, H, W), "labels": (N,), ...}``; ``dataset[i]``
    is ``{key: tensor[i]}``, so it batches like an ``ImageDataset`` (or like code grids, ``"indices"``), and
    ``dataset["pixel_values"]`` is a whole column, as in ``datasets``. ``label_names`` carries the ClassLabel
    names of the split it was read from, ``num_skipped`` the bad rows left out when it was read."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], label_names: list[str] | None = None) -> None:
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"`tensors` must be a non-empty mapping of tensors of one length, got lengths {sorted(lengths)}")
        self.tensors = dict(tensors)
        self.label_names = label_names
        self.num_skipped = 0  # rows of the split it was read from left out as bad images

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index):
        if isinstance(index, str):  # a column
            return self.tensors[index]
        return {key: value[index] for key, value in self.tensors.items()}

    def __getitems__(self, indices) -> list[dict[str, torch.Tensor]]:
        return [self[i] for i in indices]


def load_tensors(view: torch.utils.data.Dataset, batch_size: int = 512,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Read a whole split once into tensors (``{"pixel_values": (N, C, H, W), "labels": (N,)}``).

    A small split read once is the fastest thing to train on: nothing is decoded per step. The view is
    read in order, so a static binarization stays the view's own; skipped bad rows are left out.

    The loader has no generator of its own, so starting to iterate it draws its base seed from torch's
    global RNG, as every such loader does, unless ``generator`` is given. The trainer builds the model after
    reading the splits (and after `set_seed`), so its initial weights depend on those draws; its on-the-fly
    path makes the same draws (`skip_loader_seed`), so both paths start from the same weights.
    """
    loader = torch.utils.data.DataLoader(view, batch_size=batch_size, shuffle=False, collate_fn=collate_examples,
                                         generator=generator)
    batches = [b for b in loader if "pixel_values" in b]
    if not batches:
        raise ValueError(f"`view` must yield at least one usable example, got none from {view!r}")
    keys = [k for k in batches[0] if k != "num_skipped"]
    return {key: torch.cat([batch[key] for batch in batches]) for key in keys}


def skip_loader_seed() -> None:
    """Draw from torch's global RNG what iterating a generator-less ``DataLoader`` draws (its base seed)."""
    torch.empty((), dtype=torch.int64).random_()
