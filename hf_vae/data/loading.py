"""Opening an image dataset by name, path or object, finding its image and label columns, and the checks that
need only the Arrow columns (never a decoded image).

    embedded name / Hub repo id / local folder ──► load_image_dataset ──► datasets.Dataset(Dict)
    datasets.Dataset / IterableDataset / (Iterable)DatasetDict ──┘        (or the Iterable kinds when streaming)
                                                   detect_columns      ──► (image column, label column)
                                                   check_label_range   ──► labels within [0, num_classes)
                                                   resolve_dataset_revision ──► the Hub commit sha
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import datasets

from ..strict_loading import looks_like_local_path
from .embedded import EMBEDDED_DATASETS, _cache_root, materialize_embedded_dataset

__all__ = [
    "DATASET_OBJECTS",
    "IMAGE_COLUMN_NAMES",
    "LABEL_COLUMN_NAMES",
    "check_label_range",
    "detect_columns",
    "get_label_names",
    "get_num_classes",
    "load_image_dataset",
    "resolve_dataset_revision",
]

IMAGE_COLUMN_NAMES: tuple[str, ...] = ("image", "img", "pixel_values")
LABEL_COLUMN_NAMES: tuple[str, ...] = ("label", "labels", "class")
DATASET_OBJECTS = (datasets.Dataset, datasets.IterableDataset, datasets.DatasetDict, datasets.IterableDatasetDict)
"""The `datasets` objects accepted wherever a dataset name or path is."""

# The commit each (repo id, revision) resolved to when it was last asked of the Hub, so that the commit recorded
# for a run is the one its data was loaded from, without asking twice.
_RESOLVED_COMMITS: dict[tuple[str, str], str] = {}


def load_image_dataset(
    name_or_path: str | os.PathLike | datasets.Dataset | datasets.IterableDataset | datasets.DatasetDict
    | datasets.IterableDatasetDict,
    split: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    streaming: bool = False,
    config_name: str | None = None,
    **load_kwargs: Any,
) -> datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict:
    """Open an image dataset with ``datasets.load_dataset``, or pick a split of a dataset object.

    ``name_or_path`` is one of ``EMBEDDED_DATASETS`` (materialised on first use, see
    ``materialize_embedded_dataset``; an embedded name wins over a local folder of the same name, so
    write ``"./digits"`` for the folder), a Hub dataset repo id (``"ylecun/mnist"``), a local
    folder (Hub layout, or an ``imagefolder`` tree such as ``train/<class>/*.png``), or a
    ``datasets.Dataset`` / ``IterableDataset`` / ``DatasetDict`` / ``IterableDatasetDict`` object: a dict
    gives its split ``split`` (all of it when ``split`` is None), a single dataset is returned whatever
    ``split`` names (it is taken to be that split).

    Args:
        name_or_path: embedded name, Hub repo id, local path or dataset object.
        split: split to return (``"train"``, ``"test[:10%]"``, ...; a key of a dict object); ``None`` returns
            the whole ``DatasetDict``.
        revision: Hub branch, tag or commit; not accepted for embedded datasets and objects, which have none.
        cache_dir: for embedded datasets the hf_vae cache root (``$HF_VAE_CACHE`` or
            ``~/.cache/hf_vae`` when ``None``; datasets' Arrow cache goes under ``<root>/arrow``);
            otherwise forwarded to ``datasets.load_dataset(cache_dir=...)``.
        streaming: open an ``IterableDataset`` (``datasets.load_dataset(streaming=True)``); a map-style
            object is turned into one with ``to_iterable_dataset()``.
        config_name: the dataset's configuration (``datasets.load_dataset(name=...)``), e.g. ``"plain_text"``.
        **load_kwargs: forwarded to ``datasets.load_dataset`` (``data_dir``, ``token``, ...).

    Returns:
        One split (``Dataset``, or ``IterableDataset`` when streaming) when ``split`` is given, else the dict.
    """
    if isinstance(name_or_path, DATASET_OBJECTS):
        return _split_of_object(name_or_path, split, revision=revision, cache_dir=cache_dir, streaming=streaming,
                                config_name=config_name, load_kwargs=load_kwargs)
    if config_name is not None:
        load_kwargs["name"] = config_name
    name_or_path = os.fspath(name_or_path)
    if name_or_path in EMBEDDED_DATASETS:
        if revision is not None:
            raise ValueError(
                f"`revision` must be None for embedded dataset {name_or_path!r} (it has no revisions), "
                f"got {revision!r}"
            )
        root = _cache_root(cache_dir)
        folder = materialize_embedded_dataset(name_or_path, root)
        return _non_empty(datasets.load_dataset(str(folder), split=split, cache_dir=str(root / "arrow"),
                                                streaming=streaming, **load_kwargs), split)

    # The same rule as for models (./, ../, /, ~, more than one slash, or a first part that exists here).
    if looks_like_local_path(name_or_path) and not os.path.exists(os.path.expanduser(name_or_path)):
        raise ValueError(
            f"`name_or_path` must be one of {EMBEDDED_DATASETS}, a Hub dataset id or an existing "
            f"local path, got {name_or_path!r} (no such path)"
        )
    if cache_dir is not None:
        load_kwargs["cache_dir"] = os.fspath(cache_dir)
    offline = False if os.path.exists(os.path.expanduser(name_or_path)) else _probe_hub(name_or_path, revision)
    try:
        with _datasets_offline(offline):
            loaded = datasets.load_dataset(
                os.path.expanduser(name_or_path), split=split, revision=revision, streaming=streaming, **load_kwargs
            )
    except ConnectionError as error:  # offline, and not in the cache either
        raise ValueError(
            f"`name_or_path` must be one of {EMBEDDED_DATASETS}, a local dataset folder or a Hub dataset id, got "
            f"{name_or_path!r}: the Hub cannot be reached and the dataset is not in the cache ({error})"
        ) from None
    except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as error:
        # DataFilesNotFoundError is a FileNotFoundError too. Connection errors pass through: an
        # unreachable Hub is not evidence that the dataset does not exist.
        raise ValueError(
            f"`name_or_path` must be one of {EMBEDDED_DATASETS}, a Hub dataset id or a local "
            f"dataset folder, got {name_or_path!r} ({error})"
        ) from error
    return _non_empty(loaded, split)


def _split_of_object(dataset, split: str | None, *, revision, cache_dir, streaming: bool, config_name,
                     load_kwargs: dict):
    """`load_image_dataset` for a dataset object: check that nothing meant for `load_dataset` was passed, pick the
    split, and turn a map-style dataset into an iterable one when streaming is asked."""
    for name, value in (("revision", revision), ("cache_dir", cache_dir), ("config_name", config_name)):
        if value is not None:
            raise ValueError(f"`{name}` must be None for a {type(dataset).__name__} object (it is already loaded), "
                             f"got {value!r}")
    if load_kwargs:
        raise ValueError(f"`load_kwargs` must be empty for a {type(dataset).__name__} object (nothing is loaded), "
                         f"got {sorted(load_kwargs)}")
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)) and split is not None:
        if split not in dataset:
            raise ValueError(f"`split` must be one of the dataset's splits {list(dataset)}, got {split!r}")
        dataset = dataset[split]
    if streaming and isinstance(dataset, datasets.DatasetDict):
        dataset = datasets.IterableDatasetDict({name: part.to_iterable_dataset() for name, part in dataset.items()})
    elif streaming and isinstance(dataset, datasets.Dataset):
        dataset = dataset.to_iterable_dataset()
    return _non_empty(dataset, split)


def _non_empty(dataset, split: str | None):
    """`dataset`, unless it is a map-style split with no rows: that fails here, by name, not at the first batch."""
    if isinstance(dataset, datasets.Dataset) and dataset.num_rows == 0:
        raise ValueError(f"`split` must name a split with at least one example, got {split!r} (0 rows)")
    return dataset


def resolve_dataset_revision(name_or_path: Any, revision: str | None = None) -> str | None:
    """The commit sha that `revision` (a branch, tag or commit; ``None``: ``"main"``) of Hub dataset
    `name_or_path` resolves to, for the record of a run (``metrics.json["data"]["commit"]``).

    ``None`` for embedded datasets, local folders and dataset objects, which have no commits, and when the Hub
    cannot be reached (then a full 40-character sha passed as `revision` is returned as is). The commit seen when
    `load_image_dataset` opened the dataset in this process is reused, so the record names what was loaded.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        return None
    name_or_path = os.fspath(name_or_path)
    is_local = looks_like_local_path(name_or_path) or os.path.exists(os.path.expanduser(name_or_path))
    if name_or_path in EMBEDDED_DATASETS or is_local:
        return None
    key = (name_or_path, revision or "main")
    if key not in _RESOLVED_COMMITS:
        _probe_hub(name_or_path, revision)
    if key in _RESOLVED_COMMITS:
        return _RESOLVED_COMMITS[key]
    is_sha = revision is not None and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)
    return revision if is_sha else None


def _probe_hub(repo_id: str, revision: str | None) -> bool:
    """Ask the Hub once whether dataset `repo_id` exists (and remember the commit `revision` is at); returns whether
    the Hub is unreachable (then only the cache can answer). `datasets.load_dataset` alone retries for ~20 s before
    failing on a typo offline."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    from ..hub import http_errors

    if constants.HF_HUB_OFFLINE:
        return True
    try:
        info = HfApi().dataset_info(repo_id, revision=revision or "main")
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise ValueError(
            f"`name_or_path` must be one of {EMBEDDED_DATASETS}, a local dataset folder or a Hub dataset id, got "
            f"{repo_id!r} (no such folder, and no such dataset or revision on the Hub: {str(error).splitlines()[0]})"
        ) from None
    except http_errors():  # no network
        return True
    if info.sha:
        _RESOLVED_COMMITS[(repo_id, revision or "main")] = info.sha
    return False


@contextlib.contextmanager
def _datasets_offline(offline: bool):
    """`datasets` in offline mode (cache only, no retries) while the Hub is known to be unreachable."""
    if not offline:
        yield
        return
    previous = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = previous


# --------------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------------

def _is_integer_value(feature: Any) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))


def _is_image_feature(feature: Any) -> bool:
    """An `Image` column, encoded image files (binary, or the {"bytes", "path"} struct of an image stored without its
    feature), or an array of pixels (Array2D/3D, nested lists of integers) read as 8-bit images; a string, a number
    or a class label is none."""
    if isinstance(feature, datasets.Image) or (isinstance(feature, Mapping) and "bytes" in feature):
        return True
    if isinstance(feature, datasets.Value):
        return feature.dtype in ("binary", "large_binary")
    if isinstance(feature, (datasets.Array2D, datasets.Array3D)):
        return feature.dtype.startswith(("int", "uint"))
    while isinstance(feature, (datasets.List, datasets.LargeList, datasets.Sequence)):
        feature = feature.feature
        if _is_integer_value(feature):
            return True
    return False


def detect_columns(
    features: Mapping[str, Any],
    image_column: str | None = None,
    label_column: str | None = None,
) -> tuple[str, str | None]:
    """Find the image column and the label column of a dataset.

    Image column: the feature of type ``datasets.Image``; if there are several, the one among them
    named ``image``/``img``/``pixel_values``; if there is none, a column with one of those names, which
    must then hold integer pixel arrays (a string column named ``image`` is an error naming its type).
    Label column: the ``datasets.ClassLabel`` feature (the first one when there are several, e.g.
    CIFAR-100's ``fine_label`` before ``coarse_label``, unless one is named ``label``/``labels``/
    ``class``); else an integer column with one of those names; else ``None``.

    Args:
        features: ``datasets.Features`` (``dataset.features``).
        image_column: use this column for images instead of detecting it.
        label_column: use this column for labels instead of detecting it.

    Returns:
        ``(image_column, label_column)``; ``label_column`` is ``None`` for unlabelled data.
    """
    available = list(features)
    if image_column is not None:
        if image_column not in features:
            raise ValueError(
                f"`image_column` must be one of the dataset's columns {available}, got {image_column!r}"
            )
        image = image_column
    else:
        typed = [c for c in available if isinstance(features[c], datasets.Image)]
        named = [c for c in IMAGE_COLUMN_NAMES if c in features]
        if len(typed) == 1:
            image = typed[0]
        elif typed:
            preferred = [c for c in named if c in typed]
            if not preferred:
                raise ValueError(
                    f"`image_column` must name one of the Image columns {typed}, got None"
                )
            image = preferred[0]
        elif named:
            image = named[0]
        else:
            raise ValueError(
                f"`image_column` must be given: no column of type datasets.Image or named one of "
                f"{IMAGE_COLUMN_NAMES} among the dataset's columns, got None (columns: {available})"
            )
    if not _is_image_feature(features[image]):
        raise ValueError(
            f"`image_column` must name a column of images (datasets.Image, or integer pixel arrays), got {image!r} "
            f"of type {features[image]} (columns: {_describe(features)})"
        )

    if label_column is not None:
        if label_column not in features:
            raise ValueError(
                f"`label_column` must be one of the dataset's columns {available}, got {label_column!r}"
            )
        feature = features[label_column]
        if not (isinstance(feature, datasets.ClassLabel) or _is_integer_value(feature)):
            raise ValueError(
                f"`label_column` must be a ClassLabel or integer column, got {label_column!r} "
                f"of type {feature}"
            )
        return image, label_column
    return image, _detect_label_column(features, exclude=image)


def _detect_label_column(features: Mapping[str, Any], exclude: str | None = None) -> str | None:
    """The label column by the rule of `detect_columns` (`exclude`: the image column), or None."""
    typed = [c for c in features if isinstance(features[c], datasets.ClassLabel) and c != exclude]
    if typed:
        preferred = [c for c in LABEL_COLUMN_NAMES if c in typed]
        return (preferred or typed)[0]
    named = [c for c in LABEL_COLUMN_NAMES if c in features and c != exclude and _is_integer_value(features[c])]
    return named[0] if named else None


def _describe(features: Mapping[str, Any]) -> str:
    """`{column: type}` in one line, for error messages that must show what a dataset holds."""
    # Value('string') says what a column holds; a ClassLabel's repr would list every class name.
    kinds = {name: f if isinstance(f, datasets.Value) else type(f).__name__ for name, f in features.items()}
    return "{" + ", ".join(f"{name!r}: {kind}" for name, kind in kinds.items()) + "}"


def _label_feature(features: Mapping[str, Any], label_column: str | None) -> Any:
    """The feature of ``label_column`` (detected when ``None``), or ``None`` when there is no label column."""
    if label_column is None:
        _, label_column = detect_columns(features)
    elif label_column not in features:
        raise ValueError(
            f"`label_column` must be one of the dataset's columns {list(features)}, got {label_column!r}"
        )
    return None if label_column is None else features[label_column]


def get_num_classes(features: Mapping[str, Any], label_column: str | None = None) -> int | None:
    """Number of classes of ``label_column`` (detected when ``None``) if it is a ``ClassLabel``, else ``None``.

    Plain integer label columns carry no class count, so they give ``None`` too.
    """
    feature = _label_feature(features, label_column)
    return feature.num_classes if isinstance(feature, datasets.ClassLabel) else None


def get_label_names(features: Mapping[str, Any], label_column: str | None = None) -> list[str] | None:
    """The ``ClassLabel`` names of ``label_column`` (detected when ``None``), else ``None``.

    A plain integer label column has no names, so it gives ``None`` too.
    """
    feature = _label_feature(features, label_column)
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def check_label_range(dataset: datasets.Dataset, label_column: str, num_classes: int | None = None,
                      split: str | None = None) -> int | None:
    """Fail unless every label of `label_column` is in ``[0, num_classes)``; returns the largest label (None: no rows).

    Reads only the Arrow column (``pyarrow.compute`` min/max over the rows the dataset selects), never an image,
    so it costs a few milliseconds on a million rows. `num_classes` ``None``: the ``ClassLabel``'s count, and for a
    plain integer column only negative labels are errors. Missing labels (nulls) are errors too. `split` names the
    split in the message.
    """
    import pyarrow.compute as pc

    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(f"`dataset` must be a map-style datasets.Dataset (a stream has no column to read), "
                         f"got {type(dataset).__name__}")
    if label_column not in dataset.features:
        raise ValueError(f"`label_column` must be one of the dataset's columns {list(dataset.features)}, "
                         f"got {label_column!r}")
    feature = dataset.features[label_column]
    if num_classes is None and isinstance(feature, datasets.ClassLabel):
        num_classes = feature.num_classes
    # `with_format("arrow")[column]`: the one column, through any indices mapping (select, train_test_split).
    column = dataset.with_format("arrow")[label_column]
    where = f"column {label_column!r} of split {split!r}" if split else f"column {label_column!r}"
    if column.null_count:
        row = pc.index(pc.is_null(column), True).as_py()
        raise ValueError(f"`{label_column}` must hold a label in every row, got a missing one at row {row} of {where}")
    if len(column) == 0:
        return None
    stats = pc.min_max(column)
    low, high = stats["min"].as_py(), stats["max"].as_py()
    if low < 0:
        row = pc.index(column, low).as_py()
        raise ValueError(f"`{label_column}` labels must be >= 0, got {low} at row {row} of {where}")
    if num_classes is not None and high >= num_classes:
        row = pc.index(column, high).as_py()
        raise ValueError(f"`num_classes` must exceed every label of {where} (it holds {high} at row {row}), "
                         f"got {num_classes}")
    return high
