"""Opening an image dataset by name or path, and finding its image and label columns.

    embedded name / Hub repo id / local folder ──► load_image_dataset ──► datasets.Dataset(Dict)
                                                   detect_columns      ──► (image column, label column)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import datasets

from ..strict_loading import looks_like_local_path
from .embedded import EMBEDDED_DATASETS, _cache_root, materialize_embedded_dataset

__all__ = ["IMAGE_COLUMN_NAMES", "LABEL_COLUMN_NAMES", "detect_columns", "get_label_names", "get_num_classes", "load_image_dataset"]

IMAGE_COLUMN_NAMES: tuple[str, ...] = ("image", "img", "pixel_values")
LABEL_COLUMN_NAMES: tuple[str, ...] = ("label", "labels", "class")


def load_image_dataset(
    name_or_path: str | os.PathLike,
    split: str | None = None,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    **load_kwargs: Any,
) -> datasets.Dataset | datasets.DatasetDict:
    """Open an image dataset with ``datasets.load_dataset``.

    ``name_or_path`` is one of ``EMBEDDED_DATASETS`` (materialised on first use, see
    ``materialize_embedded_dataset``; an embedded name wins over a local folder of the same name, so
    write ``"./digits"`` for the folder), a Hub dataset repo id (``"ylecun/mnist"``), or a local
    folder (Hub layout, or an ``imagefolder`` tree such as ``train/<class>/*.png``).

    Args:
        name_or_path: embedded name, Hub repo id or local path.
        split: split to return (``"train"``, ``"test[:10%]"``, ...); ``None`` returns a ``DatasetDict``.
        revision: Hub branch, tag or commit; not accepted for embedded datasets, which have none.
        cache_dir: for embedded datasets the hf_vae cache root (``$HF_VAE_CACHE`` or
            ``~/.cache/hf_vae`` when ``None``; datasets' Arrow cache goes under ``<root>/arrow``);
            otherwise forwarded to ``datasets.load_dataset(cache_dir=...)``.
        **load_kwargs: forwarded to ``datasets.load_dataset`` (``name``, ``data_dir``, ``token``, ...).

    Returns:
        ``datasets.Dataset`` when ``split`` is given, else ``datasets.DatasetDict``.
    """
    name_or_path = os.fspath(name_or_path)
    if name_or_path in EMBEDDED_DATASETS:
        if revision is not None:
            raise ValueError(
                f"`revision` must be None for embedded dataset {name_or_path!r} (it has no revisions), "
                f"got {revision!r}"
            )
        root = _cache_root(cache_dir)
        folder = materialize_embedded_dataset(name_or_path, root)
        return datasets.load_dataset(str(folder), split=split, cache_dir=str(root / "arrow"), **load_kwargs)

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
            return datasets.load_dataset(
                os.path.expanduser(name_or_path), split=split, revision=revision, **load_kwargs
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


def _probe_hub(repo_id: str, revision: str | None) -> bool:
    """Ask the Hub once whether dataset `repo_id` exists; returns whether the Hub is unreachable (then only the
    cache can answer). `datasets.load_dataset` alone retries for ~20 s before failing on a typo offline."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    from ..hub import http_errors

    if constants.HF_HUB_OFFLINE:
        return True
    try:
        HfApi().dataset_info(repo_id, revision=revision or "main")
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise ValueError(
            f"`name_or_path` must be one of {EMBEDDED_DATASETS}, a local dataset folder or a Hub dataset id, got "
            f"{repo_id!r} (no such folder, and no such dataset or revision on the Hub: {str(error).splitlines()[0]})"
        ) from None
    except http_errors():  # no network
        return True
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


def _is_integer_value(feature: Any) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))


def detect_columns(
    features: Mapping[str, Any],
    image_column: str | None = None,
    label_column: str | None = None,
) -> tuple[str, str | None]:
    """Find the image column and the label column of a dataset.

    Image column: the feature of type ``datasets.Image``; if there are several, the one among them
    named ``image``/``img``/``pixel_values``; if there is none, a column with one of those names.
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
    typed = [c for c in available if isinstance(features[c], datasets.ClassLabel) and c != image]
    if typed:
        preferred = [c for c in LABEL_COLUMN_NAMES if c in typed]
        return image, (preferred or typed)[0]
    named = [c for c in LABEL_COLUMN_NAMES if c in features and _is_integer_value(features[c])]
    return image, (named[0] if named else None)


def get_num_classes(features: Mapping[str, Any], label_column: str | None = None) -> int | None:
    """Number of classes of ``label_column`` (detected when ``None``) if it is a ``ClassLabel``, else ``None``.

    Plain integer label columns carry no class count, so they give ``None`` too.
    """
    if label_column is None:
        _, label_column = detect_columns(features)
    elif label_column not in features:
        raise ValueError(
            f"`label_column` must be one of the dataset's columns {list(features)}, got {label_column!r}"
        )
    if label_column is None:
        return None
    feature = features[label_column]
    return feature.num_classes if isinstance(feature, datasets.ClassLabel) else None



def get_label_names(features: Mapping[str, Any], label_column: str | None = None) -> list[str] | None:
    """The ``ClassLabel`` names of ``label_column`` (detected when ``None``), else ``None``.

    A plain integer label column has no names, so it gives ``None`` too.
    """
    if label_column is None:
        _, label_column = detect_columns(features)
    elif label_column not in features:
        raise ValueError(
            f"`label_column` must be one of the dataset's columns {list(features)}, got {label_column!r}"
        )
    feature = features[label_column] if label_column is not None else None
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
