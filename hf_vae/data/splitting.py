"""Held-out splits carved from train when a dataset has none, and the record of which data a run read.

    {"train", "test"?, "validation"?, any other names} ──► carve_splits ──► {"train", "test", "validation"?}
    dataset name + revision + the splits read           ──► data_record  ──► metrics.json["data"]

Map-style splits are carved by ``datasets.Dataset.train_test_split`` (stratified by a ``ClassLabel`` label
column, seeded); streams by ``take``/``skip`` on the stream as it comes, before any shuffling, and not
stratified: a stream cannot be counted per class without reading it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sized
from typing import Any

import datasets
import numpy as np

from ..validation import check_bool, check_float, check_int
from .loading import _detect_label_column, resolve_dataset_revision

__all__ = ["carve_splits", "data_record"]


def carve_splits(
    dataset_dict: Mapping[str, datasets.Dataset | datasets.IterableDataset] | datasets.Dataset | datasets.IterableDataset,
    *,
    train_split: str = "train",
    test_split: str = "test",
    validation_split: str | None = None,
    test_size: int | float | None = None,
    validation_size: int | float | None = 0,
    seed: int = 0,
    label_column: str | None = None,
    return_row_ids: bool = False,
) -> datasets.DatasetDict | datasets.IterableDatasetDict | tuple:
    """The train, test and (when asked) validation splits of a dataset, carving from train those it lacks.

    A split the dataset has is used as it is; one it lacks is carved from ``train_split`` when its size is given:
    test first, then validation from what remains of train. Asking both for an existing split and for a size is
    ambiguous, and an error. Sizes are a count (int >= 1) or a fraction of ``train_split`` (float in (0, 1)).

    Map-style splits (``datasets.Dataset``): carved with ``Dataset.train_test_split(seed=seed)``, stratified by
    the label column when it is a ``ClassLabel`` (each class keeps its share on both sides), else unstratified;
    the same seed gives the same split. Nothing is decoded or copied: the parts are index mappings, in row order.

    Streams (``datasets.IterableDataset``): the first ``test_size`` examples of the train stream are the test split,
    the next ``validation_size`` the validation split, the rest train (``take``/``skip`` on the stream as it comes,
    before any shuffling; a stream of S shards (files) gives the first ``test_size / S`` examples of each). Not
    stratified. The parts never overlap, however many workers and processes read each of them, and shuffling
    the carved train split keeps held-out examples out. A fraction needs the split's size, read from
    ``info.splits`` (the dataset card); a stream whose size is unknown takes counts only.

    Args:
        dataset_dict: a ``DatasetDict`` or ``IterableDatasetDict`` (any mapping of splits; a single dataset is
            taken as ``{train_split: dataset}``).
        train_split: the split to train on and to carve from.
        test_split: the split to evaluate on, if the dataset has it.
        validation_split: the split to validate on, if the dataset has it; ``None``: none, unless
            ``validation_size`` asks for one.
        test_size: size of the test split to carve when the dataset has no ``test_split``.
        validation_size: size of the validation split to carve (``None`` or 0: none).
        seed: seed of the map-style carving (unused for streams).
        label_column: the labels to stratify by; detected when ``None`` (see ``detect_columns``).
        return_row_ids: also return ``{name: row ids}``: for each carved map-style part, the (increasing) positions
            of its rows in ``train_split``, e.g. to seed a static binarization by the original row; ``None`` for a
            split used as it is and for streams.

    Returns:
        A ``DatasetDict`` (``IterableDatasetDict`` for streams) with keys ``"train"``, ``"test"`` and, when asked,
        ``"validation"``; with ``return_row_ids``, ``(that dict, {name: np.ndarray or None})``.
    """
    parts = _as_parts(dataset_dict, train_split)
    streaming = isinstance(parts[train_split], datasets.IterableDataset)
    _check_size("data.test_size", test_size, zero_means_none=False)
    _check_size("data.validation_size", validation_size, zero_means_none=True)
    check_int("seed", seed, minimum=0)
    check_bool("return_row_ids", return_row_ids)
    for name, split in (("test_split", test_split), ("validation_split", validation_split)):
        if split is not None and not isinstance(split, str):
            raise ValueError(f"`data.{name}` must be a split name or None, got {split!r}")

    if test_split in parts:
        if test_size is not None:
            raise ValueError(f"`data.test_size` must be None when the dataset has a {test_split!r} split (it is "
                             f"ambiguous which to evaluate on), got {test_size!r}")
    elif test_size is None:
        raise ValueError(f"`data.test_split` must be one of the dataset's splits {list(parts)}, got {test_split!r} "
                         f"(or set `data.test_size` to carve a test split from {train_split!r})")
    carve_validation = bool(validation_size)
    if validation_split is not None and validation_split in parts:
        if carve_validation:
            raise ValueError(f"`data.validation_size` must be 0 when the dataset has a {validation_split!r} split (it "
                             f"is ambiguous which to validate on), got {validation_size!r}")
    elif validation_split is not None and not carve_validation:
        raise ValueError(f"`data.validation_split` must be one of the dataset's splits {list(parts)}, got "
                         f"{validation_split!r} (or set `data.validation_size` to carve one from {train_split!r})")
    roles = {"train_split": train_split, "test_split": test_split, "validation_split": validation_split}
    for role, name in roles.items():
        if name in parts and isinstance(parts[name], datasets.Dataset) and parts[name].num_rows == 0:
            raise ValueError(f"`data.{role}` must name a split with at least one example, got {name!r} (0 rows)")

    train = parts[train_split]
    total = stream_num_rows(train, train_split) if streaming else train.num_rows
    sizes = {"test": None if test_split in parts else test_size, "validation": validation_size or None}
    counts = _counts(sizes, total, train_split)
    if streaming:
        train, carved = _carve_stream(train, counts)
        row_ids = {}
    else:
        train, carved, row_ids = _carve_map_style(train, counts, sizes, seed=seed, label_column=label_column)
    result = {"train": train, "test": carved["test"] if carved["test"] is not None else parts[test_split]}
    if carved["validation"] is not None:
        result["validation"] = carved["validation"]
    elif validation_split is not None:
        result["validation"] = parts[validation_split]
    result = datasets.IterableDatasetDict(result) if streaming else datasets.DatasetDict(result)
    return (result, {name: row_ids.get(name) for name in result}) if return_row_ids else result


def _as_parts(dataset_dict, train_split: str) -> dict:
    """`{split: dataset}`, all map-style or all streams, with `train_split` among them."""
    if isinstance(dataset_dict, (datasets.Dataset, datasets.IterableDataset)):
        dataset_dict = {train_split: dataset_dict}
    if not isinstance(dataset_dict, Mapping):
        raise ValueError(f"`dataset_dict` must be a datasets.DatasetDict or IterableDatasetDict, "
                         f"got {type(dataset_dict).__name__}")
    parts = dict(dataset_dict)
    kinds = {type(part) for part in parts.values()}
    if not (kinds and (kinds <= {datasets.Dataset} or kinds <= {datasets.IterableDataset})):
        raise ValueError(f"`dataset_dict` must map split names to datasets.Dataset or to datasets.IterableDataset "
                         f"objects (one kind), got {sorted(kind.__name__ for kind in kinds)}")
    if train_split not in parts:
        raise ValueError(f"`data.train_split` must be one of the dataset's splits {list(parts)}, got {train_split!r}")
    return parts


def _check_size(name: str, value, zero_means_none: bool) -> None:
    """A split size: None (or 0 where `zero_means_none`: no split), a count >= 1 or a fraction in (0, 1)."""
    if value is None or (zero_means_none and isinstance(value, int) and not isinstance(value, bool) and value == 0):
        return
    if isinstance(value, float):
        check_float(name, value, minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    else:
        check_int(name, value, minimum=1)


def stream_num_rows(stream: datasets.IterableDataset, split: str | None = None) -> int | None:
    """The number of examples of a stream's split (``split``, else the stream's own) when its info knows it (0
    means unknown there), else None."""
    split = split if split is not None else stream.split
    info = (stream.info.splits or {}).get(str(split)) if split is not None else None
    return info.num_examples if info is not None and info.num_examples else None


def _counts(sizes: dict, total: int | None, train_split: str) -> dict:
    """`{"test": count or None, "validation": count or None}` from sizes (counts, or fractions of the `total` rows of
    train); each must leave at least one training example (checked when `total` is known)."""
    counts, left = {}, total
    for key, size in sizes.items():
        name = f"data.{key}_size"
        if size is None:
            counts[key] = None
            continue
        if isinstance(size, float) and total is None:
            raise ValueError(f"`{name}` must be a count (int) for a stream of unknown size ({train_split!r} has no "
                             f"num_examples in its info), got {size!r}")
        # Rounded up like datasets and scikit-learn, after dropping float noise (0.7 * 10 is 7.000000000000001).
        count = math.ceil(round(size * total, 9)) if isinstance(size, float) else size
        if left is not None and count >= left:
            after = " left after the test split" if key == "validation" and counts["test"] else ""
            raise ValueError(f"`{name}` must leave at least one of the {left} examples of {train_split!r}{after} for "
                             f"training, got {size!r}")
        counts[key] = count
        left = None if left is None else left - count
    return counts


def _carve_map_style(train: datasets.Dataset, counts: dict, sizes: dict, *, seed: int, label_column: str | None):
    """(train, {"test", "validation": carved or None}, {name: row ids}) by `train_test_split`, test first, stratified
    by a ClassLabel.

    The split is drawn on a small in-memory table of (row id, label) (what `train_test_split` looks at: the number of
    rows, the labels and the seed), so the rows are those `train.train_test_split` would give, and their ids in the
    train split are known; each part then selects its rows in increasing order, which keeps reads contiguous.
    """
    if all(count is None for count in counts.values()):
        return train, dict.fromkeys(counts), {}  # nothing to carve: train is used as it is
    if label_column is None:
        label_column = _detect_label_column(train.features)
    elif label_column not in train.features:
        raise ValueError(f"`data.label_column` must be one of the dataset's columns {list(train.features)}, "
                         f"got {label_column!r}")
    stratify = label_column if isinstance(train.features.get(label_column), datasets.ClassLabel) else None
    columns = {"row": np.arange(train.num_rows)}
    features = {"row": datasets.Value("int64")}
    if stratify is not None:
        columns[stratify] = train.with_format("arrow")[stratify]  # the label column alone, no image read
        features[stratify] = train.features[stratify]
    index = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    rows = {}
    for key, count in counts.items():
        if count is None:
            continue
        try:
            split = index.train_test_split(test_size=count, shuffle=True, seed=seed, stratify_by_column=stratify,
                                           keep_in_memory=True)
        except ValueError as error:  # too few examples of a class to stratify
            raise ValueError(f"`data.{key}_size` must leave examples of every class of {stratify!r} on both sides of "
                             f"a stratified split of {index.num_rows} examples, got {sizes[key]!r} ({error})") from None
        index, rows[key] = split["train"], np.sort(split["test"]["row"][:])
    rows["train"] = np.sort(index["row"][:])
    carved = {key: train.select(rows[key], keep_in_memory=True) if key in rows else None for key in counts}
    return train.select(rows["train"], keep_in_memory=True), carved, rows


def _carve_stream(train: datasets.IterableDataset, counts: dict):
    """(train, {"test", "validation": carved or None}) by take/skip: test, then validation, then train, within each
    source shard (file) of the stream: shard j gives the first `split_number(count, num_shards)[j]` of its examples.

    Why per shard: `take`/`skip` on a whole stream are split by `datasets` among the shards it is read in (DataLoader
    workers, processes), so a test split read by one process and a train split read by two workers would overlap.
    Carved per source shard and concatenated, each shard carries its own take/skip wherever it is read, and shuffling
    the shard order of the carved train split keeps every held-out example out of it.
    """
    num_shards = train.num_shards
    sources = [train.shard(num_shards=num_shards, index=j, contiguous=True) for j in range(num_shards)]
    carved = {}
    for key, count in counts.items():
        if count is None:
            carved[key] = None
            continue
        shares = [count // num_shards + (j < count % num_shards) for j in range(num_shards)]  # as even as can be
        carved[key] = _concatenate([source.take(n) for source, n in zip(sources, shares)])
        sources = [source.skip(n) for source, n in zip(sources, shares)]
    return _concatenate(sources), carved


def _concatenate(streams: list[datasets.IterableDataset]) -> datasets.IterableDataset:
    return streams[0] if len(streams) == 1 else datasets.concatenate_datasets(streams)


def data_record(dataset: Any, splits: Mapping[str, Any], *, config_name: str | None = None,
                revision: str | None = None) -> dict:
    """What `metrics.json["data"]` records of the data a run read.

    Args:
        dataset: the recipe's ``data.dataset`` (name, repo id or path); an object is recorded by its type.
        splits: ``{name: split}``; a split with a length (a ``datasets.Dataset``, or a map-style torch dataset such
            as ``ImageDataset``) counts its rows, a stream (whose length is unknown) gives None.
        config_name: the dataset configuration asked for.
        revision: the revision asked for (branch, tag, commit or None).

    Returns:
        ``{"dataset", "config_name", "revision" (as asked), "commit" (the Hub commit it resolved to, see
        ``resolve_dataset_revision``; None for local and embedded data), "splits": {name: num_rows or None}}``.
    """
    return {
        "dataset": dataset if isinstance(dataset, str) else f"<{type(dataset).__name__} object>",
        "config_name": config_name,
        "revision": revision,
        "commit": resolve_dataset_revision(dataset, revision),
        "splits": {name: len(part) if isinstance(part, Sized) else None
                   for name, part in splits.items() if part is not None},
    }
