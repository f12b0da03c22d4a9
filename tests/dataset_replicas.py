"""Small replicas of the real Hub image datasets that the recipes name, for the local test Hub.

Each replica has the real repo's id, features (column names, `Image` / `ClassLabel` types and class
names), config name, split names and parquet file layout, with 64-120 synthetic rows per split instead of
tens of thousands. `upload_replica` pushes one to the Hub at $HF_ENDPOINT (tests/hub_server.py in the
tests) under its real repo id, so `datasets.load_dataset("ylecun/mnist")` and the recipes in
hf_vae/recipes/ run unchanged against it, map-style and streaming.

What was verified about each real repo, and how (stored Hub pages, READMEs and code, looked up with the
`search` / `find_string` tools while writing this file):

- ``ylecun/mnist``: commit 77f3279 "Convert dataset to Parquet (#7)" deletes mnist.py and adds
  ``mnist/train-00000-of-00001.parquet`` and ``mnist/test-00000-of-00001.parquet``; its README
  ``dataset_info`` has ``config_name: mnist``, features ``image`` (``dtype: image``) and ``label``
  (``class_label`` names '0'..'9'), splits train (60,000) / test (10,000); the ``configs:`` block (quoted
  in ModelScope's docs of this card) is ``config_name: mnist``, ``data_files`` train ``mnist/train-*``,
  test ``mnist/test-*``, ``default: true``. The dataset card shows 28x28 mode-L PNGs.
- ``zalando-datasets/fashion_mnist``: features ``image`` and ``label`` with ClassLabel names
  "T - shirt / top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
  "Ankle boot" (TFDS' community catalogue of the HF dataset, config ``fashion_mnist``); the card's example
  is a 28x28 mode-L PNG; code reading it downloads
  ``resolve/main/fashion_mnist/{train,test}-00000-of-00001.parquet``. Its ``configs:`` block was not
  found stored: it is written like mnist's, which the same Parquet conversion produced.
- ``uoft-cs/cifar10``: commit e025e64 "Convert dataset to Parquet" adds to the README
  ``dataset_info.config_name: plain_text`` (features ``img`` ``dtype: image``; ``label`` class_label
  airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck; train 50,000 / test 10,000) and
  ``configs: [{config_name: plain_text, data_files: [train: plain_text/train-*, test: plain_text/test-*],
  default: true}]``; the tree of ``main/plain_text`` lists ``train-00000-of-00001.parquet`` and
  ``test-00000-of-00001.parquet``; the card's example is a 32x32 mode-RGB PNG.
- ``nielsr/CelebA-faces``: the tree of ``main`` is ``.gitattributes``, ``dataset_infos.json`` (667 bytes,
  "Upload dataset_infos.json") and ``data/train-0000{0,1,2}-of-00003.parquet`` (about 462 MB each,
  "Upload data/train-0000k-of-00003.parquet with git-lfs", i.e. an old ``push_to_hub``), and NO README
  ("No dataset card yet"); the viewer shows one config ``default``, one split ``train`` of 202,599 rows
  and one column ``image`` of width 178. The images are CelebA's aligned faces, 178 wide x 218 high JPEG.
  Its dataset_infos.json content was not found stored: it is written the way old ``push_to_hub`` wrote
  it (one "user--name" key, features and the train split), which ``datasets`` still reads.

The parquet files are written as ``datasets`` writes them when it pushes: Image columns as the struct
{bytes, path} holding the encoded PNG/JPEG, and the features under the "huggingface" key of the parquet
schema metadata (``Features.arrow_schema``), so features survive even without a README.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from PIL import Image, ImageDraw

FASHION_MNIST_NAMES = ["T - shirt / top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                       "Bag", "Ankle boot"]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass(frozen=True)
class Replica:
    """One real Hub dataset's layout, with its row counts cut down.

    `shards` maps each split to its parquet files (paths in the repo, in order); `config_name` is the
    config of the README ``configs:`` block (None: no README at all, like nielsr/CelebA-faces).
    """

    repo_id: str
    features: datasets.Features
    shards: dict[str, list[str]]
    rows: dict[str, int]
    image_size: tuple[int, int]  # (H, W) of every image
    image_mode: str  # PIL mode: "L" or "RGB"
    image_format: str  # "PNG" or "JPEG"
    config_name: str | None = None

    @property
    def image_column(self) -> str:
        return next(name for name, feature in self.features.items() if isinstance(feature, datasets.Image))

    @property
    def label_names(self) -> list[str] | None:
        label = self.features.get("label")
        return label.names if isinstance(label, datasets.ClassLabel) else None


def _labelled(image_column: str, names: list[str]) -> datasets.Features:
    return datasets.Features({image_column: datasets.Image(), "label": datasets.ClassLabel(names=names)})


def _one_shard_per_split(folder: str) -> dict[str, list[str]]:
    return {split: [f"{folder}/{split}-00000-of-00001.parquet"] for split in ("train", "test")}


MNIST = Replica("ylecun/mnist", _labelled("image", [str(d) for d in range(10)]), _one_shard_per_split("mnist"),
                {"train": 96, "test": 64}, (28, 28), "L", "PNG", config_name="mnist")
FASHION_MNIST = Replica("zalando-datasets/fashion_mnist", _labelled("image", FASHION_MNIST_NAMES),
                        _one_shard_per_split("fashion_mnist"), {"train": 96, "test": 64}, (28, 28), "L", "PNG",
                        config_name="fashion_mnist")
CIFAR10 = Replica("uoft-cs/cifar10", _labelled("img", CIFAR10_NAMES), _one_shard_per_split("plain_text"),
                  {"train": 96, "test": 64}, (32, 32), "RGB", "PNG", config_name="plain_text")
CELEBA_FACES = Replica("nielsr/CelebA-faces", datasets.Features({"image": datasets.Image()}),
                       {"train": [f"data/train-{k:05d}-of-00003.parquet" for k in range(3)]},
                       {"train": 120}, (218, 178), "RGB", "JPEG")
REPLICAS = {r.repo_id: r for r in (MNIST, FASHION_MNIST, CIFAR10, CELEBA_FACES)}


# --- images ---------------------------------------------------------------------------------------

def _digit_images(count: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` of scikit-learn's 8x8 digits (uint8 in [0, 255], (N, 8, 8)) and their digits, from `offset`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = (offset + np.arange(count)) % len(digits.target)
    return (digits.images[index] * (255 / 16)).round().astype(np.uint8), digits.target[index]


def _image(replica: Replica, digit_pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One image of the replica's size and mode: the digit upscaled (MNIST-like: 20x20 box in 28x28), on a
    coloured background for RGB, or (for the 178x218 faces) a face-like ellipse on a blurred background."""
    height, width = replica.image_size
    digit = Image.fromarray(digit_pixels)  # (8, 8) uint8: mode L
    if replica.image_mode == "L":
        canvas = Image.new("L", (width, height))
        canvas.paste(digit.resize((20, 20), Image.Resampling.BILINEAR), ((width - 20) // 2, (height - 20) // 2))
        return canvas
    if replica.image_format == "PNG":  # cifar-like: a coloured digit on a coloured background
        background = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 256, 3)))
        ink = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 256, 3)))
        return Image.composite(ink, background, digit.resize((width, height), Image.Resampling.BILINEAR))
    background = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))  # RGB
    image = background.resize((width, height), Image.Resampling.BICUBIC)
    skin = tuple(int(c) for c in rng.integers(120, 256, 3))
    ImageDraw.Draw(image).ellipse((width * 0.25, height * 0.25, width * 0.75, height * 0.8), fill=skin)
    return image


def _encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


# --- files ----------------------------------------------------------------------------------------

def _write_shard(replica: Replica, path: Path, count: int, offset: int, seed: list[int]) -> int:
    """Write `count` rows (digits from `offset`) to the parquet file `path`; return their Arrow size."""
    rng = np.random.default_rng(seed)
    pixels, digits = _digit_images(count, offset)
    rows = {replica.image_column: [{"bytes": _encoded(_image(replica, p, rng), replica.image_format), "path": None}
                                   for p in pixels]}
    if replica.label_names is not None:
        rows["label"] = [int(d) for d in digits]  # digits 0-9 stand in for the 10 classes
    # Features.arrow_schema carries the features in the schema metadata ("huggingface" key), as push_to_hub.
    table = pa.Table.from_pydict(rows, schema=replica.features.arrow_schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)  # one row group: datasets aims at 100 MB row groups
    return table.nbytes


def _readme(replica: Replica, num_bytes: dict[str, int]) -> str:
    """The README YAML header the Parquet conversion wrote: `dataset_info` and the `configs:` block."""
    info = {"config_name": replica.config_name, "features": replica.features._to_yaml_list(),
            "splits": [{"name": split, "num_bytes": num_bytes[split], "num_examples": n}
                       for split, n in replica.rows.items()]}
    data_files = [{"split": split, "path": f"{replica.config_name}/{split}-*"} for split in replica.shards]
    configs = [{"config_name": replica.config_name, "data_files": data_files, "default": True}]
    header = yaml.safe_dump({"dataset_info": info, "configs": configs}, sort_keys=False)
    return f"---\n{header}---\n\n# Replica of {replica.repo_id} for hf_vae's tests\n"


def _legacy_dataset_infos(replica: Replica, num_bytes: dict[str, int]) -> str:
    """dataset_infos.json as old `push_to_hub` wrote it: one "user--name" config holding the features."""
    key = replica.repo_id.replace("/", "--")
    info = {"features": replica.features.to_dict(),
            "splits": {split: {"name": split, "num_bytes": num_bytes[split], "num_examples": n, "dataset_name": key}
                       for split, n in replica.rows.items()}}
    return json.dumps({key: info})


def write_replica(replica: Replica, folder: str | Path, seed: int = 0) -> Path:
    """Write the replica's repo files under `folder` (which becomes the repo root); return `folder`."""
    folder = Path(folder)
    offset, num_bytes = 0, {}  # offset: the splits take disjoint digits
    for split_index, (split, paths) in enumerate(replica.shards.items()):
        per_shard = -(-replica.rows[split] // len(paths))  # ceil: the last shard may be shorter
        num_bytes[split] = 0
        for shard_index, path in enumerate(paths):
            count = min(per_shard, replica.rows[split] - shard_index * per_shard)
            num_bytes[split] += _write_shard(replica, folder / path, count, offset, [seed, split_index, shard_index])
            offset += count
    if replica.config_name is not None:
        (folder / "README.md").write_text(_readme(replica, num_bytes))
    else:
        (folder / "dataset_infos.json").write_text(_legacy_dataset_infos(replica, num_bytes))
    return folder


def upload_replica(replica: Replica, *, exist_ok: bool = True) -> str:
    """Create dataset repo `replica.repo_id` on the Hub at $HF_ENDPOINT (the local test Hub) and upload the
    replica in one commit; return that commit's id. With `exist_ok`, an existing repo is left as it is."""
    from huggingface_hub import HfApi

    api = HfApi()
    if exist_ok and api.repo_exists(replica.repo_id, repo_type="dataset"):
        return api.dataset_info(replica.repo_id).sha
    api.create_repo(replica.repo_id, repo_type="dataset", exist_ok=exist_ok)
    with tempfile.TemporaryDirectory(prefix="hf_vae_replica_") as tmp:
        commit = api.upload_folder(folder_path=write_replica(replica, tmp), repo_id=replica.repo_id,
                                   repo_type="dataset", commit_message=f"Replica of {replica.repo_id}")
    return commit.oid
