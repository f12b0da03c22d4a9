"""What the verbs share: output checks, `--labels` words, and images in (files, folders or a dataset split)
through the model's image processor.

Every failure here is a `ValueError` in the package's one style; `hf_vae.cli.main` prints it as one
`hf-vae VERB: error: ...` line and exits 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..validation import check_int

#: Image files a folder given as IMAGES contributes (PIL opens them all).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def check_output(path: str | None, name: str = "--output") -> None:
    """An output file's folder must exist: checked before the (slow) work, not when writing the result."""
    if path is not None and path != "-" and not Path(path).expanduser().resolve().parent.is_dir():
        raise ValueError(f"`{name}` must be a file in an existing folder, got {path!r} (no such folder "
                         f"{str(Path(path).parent)!r})")


def check_suffix(path: str | None, suffixes: tuple[str, ...], name: str = "--output") -> None:
    """`path` ends with one of `suffixes` (what the verb knows how to write)."""
    if path is not None and Path(path).suffix.lower() not in suffixes:
        raise ValueError(f"`{name}` must end with one of {suffixes}, got {path!r}")


def cli_labels(tokens: list[str], label_names: list[str] | None) -> list[int | str]:
    """`--labels` words -> class ids and class names: a word that is one of the model's class names
    (`label_names`) is that class, so MNIST's "3" is its class named "3"; otherwise a word splits at
    commas ("0,1,2") and an integer part is a class id. Anything else stays a name, for the model to
    report as unknown with the names it knows."""
    names = set(label_names or ())
    values: list[int | str] = []
    for token in tokens:
        parts = [token] if token in names else [part.strip() for part in token.split(",")]
        values += [int(part) if part not in names and re.fullmatch(r"[+-]?\d+", part) else part for part in parts]
    return values


def cycled_labels(model, tokens: list[str] | None, count: int, name: str = "--labels"):
    """`--labels` words -> class ids (count,) long, the labels given repeated in order until `count` are
    filled (`--labels 0,1,2` with 7 images: 0 1 2 0 1 2 0); None when no labels are given. An unconditional
    model rejects labels in one line."""
    import torch

    if not tokens:
        return None
    if not model.is_conditional:
        raise ValueError(f"`{name}` must be omitted for {type(model).__name__} (an unconditional model), "
                         f"got {' '.join(tokens)!r}")
    values = cli_labels(tokens, model.config.label_names)
    if len(values) > count:  # a label that would get no image is a mistake, not something to drop silently
        raise ValueError(f"`{name}` must hold at most one label per image, so the images ({count}) must be at least "
                         f"the number of labels ({len(values)}), got {' '.join(tokens)!r}")
    ids = model.class_ids(values, len(values), name=name)
    return ids[torch.arange(count) % len(ids)]


def require(model, capability: str, verb: str, hint: str = "") -> None:
    """One error line when the model's family cannot do what the verb needs (read from `capabilities`)."""
    from ..pipelines.pipeline_utils import check_capability

    check_capability(model, capability, f"`hf-vae {verb}`", hint)


def load(model_path: str, vqvae: str | None = None):
    """(model in eval mode, its VQ-VAE or None): a prior over VQ-VAE codes gets the VQ-VAE named by
    `vqvae` or recorded in its config, checked against it; `vqvae` given for any other model raises."""
    from ..hub import load_model
    from ..pipelines.pipeline_utils import resolve_vqvae

    model = load_model(model_path).eval()  # strict, safetensors only; a mistyped path fails at once
    return model, resolve_vqvae(model, vqvae)


def image_processor(model_path: str, model, vqvae=None, binarize: str | None = None):
    """The processor the model's images go through: the one saved beside it (`preprocessor_config.json`,
    the training run's crop and binarization), else the one its config implies; `binarize` overrides."""
    from ..image_processing import HfVaeImageProcessor, image_processor_for

    folder = Path(model_path)
    if (folder / "preprocessor_config.json").is_file():
        processor = HfVaeImageProcessor.from_pretrained(str(folder))
    else:
        processor = image_processor_for(model.config, vqvae_config=None if vqvae is None else vqvae.config)
    if binarize is not None:
        processor.binarize = binarize
    return processor


@dataclass
class Images:
    """A batch read for a verb: pixel values (N, C, H, W), their labels (N,) or None, and a name per image."""

    pixel_values: object
    labels: object
    names: list[str]


def image_files(paths: list[str], name: str = "IMAGES") -> list[Path]:
    """Files as given, folders as the image files they hold (sorted); a missing path raises."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"`{name}` must be image files or folders holding images ({', '.join(IMAGE_SUFFIXES)}), "
                                 f"got the folder {raw!r} with none")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"`{name}` must be image files or folders, got {raw!r} (no such file or folder)")
    return files


def read_images(processor, *, paths: list[str] | None = None, dataset: str | None = None, split: str = "test",
                max_images: int | None = None, name: str = "IMAGES") -> Images:
    """Images from files/folders or from a dataset split (embedded name, Hub id or folder; the split's labels
    come along), through `processor`'s size, channels, crop and binarization. Exactly one source is given."""
    if bool(paths) == bool(dataset):
        raise ValueError(f"`{name}` must be image files/folders or `--dataset NAME` (one of them), got "
                         f"{'both' if paths else 'neither'}")
    if max_images is not None:
        check_int("--max-images", max_images, minimum=1)
    if paths:
        files = image_files(paths, name)[:max_images]
        pixels = processor.preprocess([str(f) for f in files])["pixel_values"]
        return Images(pixels, None, [str(f) for f in files])
    from .. import data

    view = data.load_split(dataset, split, image_size=tuple(processor.image_size), num_channels=processor.num_channels,
                           center_crop=processor.center_crop, binarize=processor.binarize, seed=processor.binarize_seed)
    tensors = data.load_tensors(view)
    count = len(tensors["pixel_values"]) if max_images is None else min(max_images, len(tensors["pixel_values"]))
    labels = tensors.get("labels")
    return Images(tensors["pixel_values"][:count], None if labels is None else labels[:count],
                  [f"{dataset}:{split}[{i}]" for i in range(count)])


def image_set(processor, spec: str, name: str, max_images: int | None = None) -> Images:
    """`--reference` / `--outliers`: an image folder or file, else a dataset `NAME[:SPLIT]` (split test)."""
    if Path(spec).expanduser().exists():
        return read_images(processor, paths=[spec], max_images=max_images, name=name)
    dataset, _, split = spec.partition(":")
    return read_images(processor, dataset=dataset, split=split or "test", max_images=max_images, name=name)


def input_labels(model, tokens: list[str] | None, images: Images, required: bool = True):
    """The class ids the images go with: `--labels` (cycled over the images), else a dataset's own labels
    for a conditional model, else None. A conditional model `required` to have them (to encode) raises."""
    if tokens:
        return cycled_labels(model, tokens, len(images.names))
    if not model.is_conditional:
        return None
    if images.labels is None and required:
        raise ValueError(f"`--labels` must give the images' classes for {type(model).__name__} (a conditional model "
                         f"encodes x given y), got none for {len(images.names)} image file(s)")
    return images.labels


def add_image_inputs(parser, labels_help: str = "CVAE: class ids or names, cycled over the images") -> None:
    """IMAGES... | --dataset NAME [--split] [--max-images] [--binarize] [--labels]: the inputs of the image verbs."""
    parser.add_argument("images", nargs="*", metavar="IMAGES", help="image files or folders of images")
    parser.add_argument("--dataset", default=None, help="read a dataset split instead (mnist5k, digits, Hub id, folder)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    parser.add_argument("--binarize", default=None, choices=["none", "static"],
                        help="override the model's saved preprocessing (default: its preprocessor_config.json, else none)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABEL", help=labels_help)
