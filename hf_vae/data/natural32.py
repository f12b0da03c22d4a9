"""``natural32``: 32x32 RGB patches of real photographs that ship inside packages hf_vae already depends on.

Ten colour photographs (scikit-image's bundled sample data, scikit-learn's two sample images and
matplotlib's Grace Hopper) are cut into non-overlapping 32x32 patches on a grid from their top-left
corner (the right and bottom remainders are dropped). Constant patches (pixel standard deviation
below 1 level: the black frame of the retina photograph, a white border of the astronaut's) are dropped,
since they are not natural-image content. Train and test are split **by source photograph**, so no
photograph has patches in both: the test split measures generalisation to new photographs.

`read_natural32()` returns the patches; `hf_vae.data.embedded` writes them once in the Hub layout, with
`PHOTOS` (sources and licences) in the dataset card.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

import numpy as np
from PIL import Image

PATCH_SIZE = 32
#: A patch whose pixel values (over all three channels) have a standard deviation below this is constant.
MIN_PATCH_STD = 1.0


@dataclass(frozen=True)
class Photo:
    """One source photograph: where it ships, which split it goes to, and its terms."""

    name: str
    package: str  # the importable package that ships the file
    path: str  # the file inside that package
    split: str
    description: str
    license: str


PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "skimage.data", "astronaut.png", "train",
          "Eileen Collins, NASA astronaut (scikit-image `data.astronaut`, from the NASA Great Images database)",
          "public domain"),
    Photo("coffee", "skimage.data", "coffee.png", "train",
          "a coffee cup, courtesy of Pikolo Espresso Bar (scikit-image `data.coffee`, photographer Rachel Michetti)",
          "CC0"),
    Photo("hubble_deep_field", "skimage.data", "hubble_deep_field.jpg", "train",
          "the Hubble eXtreme Deep Field (scikit-image `data.hubble_deep_field`, NASA / HubbleSite)",
          "public domain"),
    Photo("immunohistochemistry", "skimage.data", "ihc.png", "train",
          "IHC staining of colonic glands (scikit-image `data.immunohistochemistry`, CMMI)",
          "no known copyright restrictions"),
    Photo("retina", "skimage.data", "retina.jpg", "train",
          "fundus photograph of a normal left eye by Mikael Häggström (scikit-image `data.retina`, Wikimedia Commons)",
          "CC0"),
    Photo("china", "sklearn.datasets.images", "china.jpg", "train",
          "a Chinese temple by danielbuechele on Flickr (scikit-learn `load_sample_image('china.jpg')`)",
          "CC BY 2.0"),
    Photo("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "train",
          "Rear Admiral Grace Hopper, US Navy photograph (matplotlib sample data `grace_hopper.jpg`)",
          "public domain"),
    Photo("chelsea", "skimage.data", "chelsea.png", "test",
          "Chelsea the cat (scikit-image `data.chelsea`, photographer Stefan van der Walt)", "CC0"),
    Photo("rocket", "skimage.data", "rocket.jpg", "test",
          "launch of DSCOVR on a Falcon 9 (scikit-image `data.rocket`, SpaceX photos)", "public domain"),
    Photo("flower", "sklearn.datasets.images", "flower.jpg", "test",
          "a flower by vultilion on Flickr (scikit-learn `load_sample_image('flower.jpg')`)", "CC BY 2.0"),
)


def photo_pixels(photo: Photo) -> np.ndarray:
    """The photograph as an (H, W, 3) uint8 array, decoded by Pillow from the file its package ships."""
    with Image.open(files(photo.package).joinpath(photo.path)) as image:
        return np.asarray(image.convert("RGB"))


def cut_patches(pixels: np.ndarray, size: int = PATCH_SIZE) -> np.ndarray:
    """(H, W, 3) -> (N, size, size, 3): the non-overlapping grid from the top-left corner, row by row,
    without the constant patches."""
    rows, cols = pixels.shape[0] // size, pixels.shape[1] // size
    patches = pixels[: rows * size, : cols * size].reshape(rows, size, cols, size, 3).swapaxes(1, 2)
    patches = patches.reshape(-1, size, size, 3)
    keep = patches.reshape(len(patches), -1).std(axis=1) >= MIN_PATCH_STD
    return patches[keep]


def read_natural32() -> dict[str, tuple[np.ndarray, list[str]]]:
    """{"train": (patches (N, 32, 32, 3) uint8, source photo name per patch), "test": (...)}, in the order
    of `PHOTOS`."""
    splits: dict[str, tuple[list[np.ndarray], list[str]]] = {"train": ([], []), "test": ([], [])}
    for photo in PHOTOS:
        patches = cut_patches(photo_pixels(photo))
        splits[photo.split][0].append(patches)
        splits[photo.split][1].extend([photo.name] * len(patches))
    return {split: (np.concatenate(images), names) for split, (images, names) in splits.items()}


def photo_table() -> str:
    """The card's markdown table of the source photographs."""
    lines = ["| photograph | split | source | license |", "|---|---|---|---|"]
    lines += [f"| `{p.name}` | {p.split} | {p.description} | {p.license} |" for p in PHOTOS]
    return "\n".join(lines)
