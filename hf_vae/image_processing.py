"""The image processor of every hf_vae model: any image -> the model's `pixel_values`, and back.

    PIL image / file path / uint8 array ──► ImageTransform.pixels (the trainer's own conversion):
        channels (L / RGB) ──► center crop ──► resize (PIL bilinear) ──► / 255 ──► static binarization
    float tensor / float array in [0, 1] ──► taken as pixel values already (the model checks size and range)
        ──► {"pixel_values": (B, C, H, W) float32}

`HfVaeImageProcessor` is a transformers `BaseImageProcessor`, registered with `AutoImageProcessor` for
every hf_vae model type (`register_image_processor`, which `import hf_vae` arranges to run once transformers'
`AutoImageProcessor` is imported), and saved beside a model as
`preprocessor_config.json` (`save_image_processor`). `image_processor_for(config)` builds the one a model
needs from its config (the size and channels it was trained on); the crop and binarization a training
run used live in its recipe, not in the model config, and are passed here by whoever saves the run.

`hf_vae.data` (which imports `datasets`) is imported on first use, so `import hf_vae` stays light.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .images import format_images
from .validation import check_choice, check_int

__all__ = ["HfVaeImageProcessor", "image_processor_for", "register_image_processor", "save_image_processor",
           "save_model_image_processor", "write_image_processor"]


class HfVaeImageProcessor(BaseImageProcessor):
    """Images -> `pixel_values` (B, C, H, W) float32 in [0, 1], exactly as `hf_vae.data.ImageTransform`
    turns dataset rows into training batches; `postprocess` turns model outputs back into images.

    Args:
        image_size: the model's input `(height, width)` (or an int for square).
        num_channels: 1 (grey, PIL mode "L") or 3 ("RGB"; RGBA and palette images lose their alpha).
        center_crop: crop a centred square of this side before resizing (as the run's `data.center_crop`).
        binarize: `"none"` or `"static"` (one Bernoulli draw per image, seeded by `(binarize_seed, index in
            the call)`, as the run's `data.eval_binarize: static`).
        binarize_seed: seed of the static binarization.

    PIL images, image file paths and integer arrays (H, W) / (H, W, C) in 0..255 are decoded images: they
    are converted, cropped, resized and scaled. Float tensors (C, H, W) / (B, C, H, W) and float arrays
    (H, W[, C]) are pixel values already and pass unchanged (a wrong size or a value outside [0, 1] is
    reported by the model, naming `pixel_values`); an integer tensor (C, H, W) is an 8-bit image.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, image_size: int | Sequence[int] = 28, num_channels: int = 1, center_crop: int | None = None,
                 binarize: str = "none", binarize_seed: int = 0, **kwargs) -> None:
        check_choice("num_channels", num_channels, (1, 3))
        check_choice("binarize", binarize, ("none", "static"))
        check_int("binarize_seed", binarize_seed, minimum=0)
        if center_crop is not None:
            check_int("center_crop", center_crop, minimum=1)
        size = [image_size, image_size] if isinstance(image_size, int) and not isinstance(image_size, bool) else image_size
        if not isinstance(size, Sequence) or len(size) != 2 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
            raise ValueError(f"`image_size` must be an int >= 1 or (height, width), got {image_size!r}")
        super().__init__(**kwargs)
        self.image_size = list(size)  # a list: the JSON round trip keeps it equal
        self.num_channels, self.center_crop = num_channels, center_crop
        self.binarize, self.binarize_seed = binarize, binarize_seed

    def _transform(self):
        """The trainer's `ImageTransform` with this processor's settings (imported here: it pulls in `datasets`)."""
        from .data.transforms import ImageTransform

        return ImageTransform(image_column="images", num_channels=self.num_channels, image_size=tuple(self.image_size),
                              center_crop=self.center_crop, binarize=self.binarize, seed=self.binarize_seed)

    def preprocess(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        """One image or a list of images (or a (B, C, H, W) tensor) -> `{"pixel_values": (B, C, H, W) float32}`.

        `return_tensors` is accepted for transformers' calling convention; the result is always a torch tensor.
        """
        if kwargs:
            raise ValueError(f"`kwargs` must be empty (the settings are the processor's own), got {sorted(kwargs)}")
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return BatchFeature({"pixel_values": images})
        single = not isinstance(images, (list, tuple))
        images = [images] if single else images
        if len(images) == 0:
            raise ValueError(f"`images` must hold at least one image, got an empty {type(images).__name__}")
        transform = None
        batch = []
        for index, image in enumerate(images):
            if _is_pixel_values(image):
                batch.append(_as_chw(image))
                continue
            transform = transform or self._transform()
            # `pixels` checks the image and names it, e.g. "`images[2]` must be an 8-bit image ...".
            where = "images" if single else f"images[{index}]"
            batch.append(transform.pixels(_decodable(image, where), where, index))
        shapes = {tuple(b.shape) for b in batch}
        if len(shapes) != 1:
            raise ValueError(f"`images` must all have the same (C, H, W) shape, got {sorted(shapes)}")
        return BatchFeature({"pixel_values": torch.stack(batch)})

    def postprocess(self, pixel_values: torch.Tensor, output_type: str = "pil"):
        """Model outputs (B, C, H, W) in [0, 1] -> `output_type`: "pil" (a list of PIL images), "np" (float32
        (B, H, W, C)) or "pt" (the tensor, clamped to [0, 1])."""
        return format_images(pixel_values, output_type)


def _is_pixel_values(image) -> bool:
    """Float tensors and float arrays are pixel values in [0, 1] already; anything else is a decoded image."""
    if isinstance(image, torch.Tensor):
        return image.is_floating_point()
    return isinstance(image, np.ndarray) and np.issubdtype(image.dtype, np.floating)


def _as_chw(image) -> torch.Tensor:
    """A float tensor (C, H, W) or a float array (H, W[, C]) -> (C, H, W) float32."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3:
            raise ValueError(f"`images` tensors must have shape (C, H, W) or (B, C, H, W), got {tuple(image.shape)}")
        return image
    if image.ndim not in (2, 3):
        raise ValueError(f"`images` arrays must have shape (H, W) or (H, W, C), got {image.shape}")
    array = image[..., None] if image.ndim == 2 else image
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)


def _decodable(image, where: str):
    """What `ImageTransform.pixels` reads: a PIL image or a uint8 array (H, W[, C]); file paths are opened."""
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            return opened.copy()
    if isinstance(image, torch.Tensor):  # an integer tensor (C, H, W): an 8-bit image, channels first
        if image.ndim != 3:
            raise ValueError(f"`{where}` must be a (C, H, W) tensor, got shape {tuple(image.shape)}")
        return image.permute(1, 2, 0).cpu().numpy()
    if isinstance(image, (Image.Image, np.ndarray)):
        return image
    raise ValueError(f"`{where}` must be a PIL image, an image file path, a numpy array or a torch tensor, "
                     f"got {type(image).__name__}")


def image_processor_for(config, *, vqvae_config=None, center_crop: int | None = None, binarize: str = "none",
                        binarize_seed: int = 0) -> HfVaeImageProcessor:
    """The image processor of a model with this `config`: its `image_size` and `num_channels` (a VAE, CVAE,
    VQ-VAE), the pixel grid of a prior over pixels (`grid_size`, `num_channels`), or, for a prior over VQ-VAE
    codes, its VQ-VAE's (`vqvae_config`, required). `center_crop` / `binarize` / `binarize_seed` are the
    training run's (`recipe.data.center_crop`, `recipe.data.eval_binarize`, `recipe.data.binarize_seed`)."""
    options = dict(center_crop=center_crop, binarize=binarize, binarize_seed=binarize_seed)
    token_source = getattr(config, "token_source", None)
    if token_source == "pixels":
        return HfVaeImageProcessor(image_size=config.grid_size, num_channels=getattr(config, "num_channels", 1), **options)
    if token_source is not None:  # a prior over VQ-VAE codes reads images through its VQ-VAE
        if vqvae_config is None:
            raise ValueError(f"`vqvae_config` must be the config of the VQ-VAE whose codes the {config.model_type} "
                             "prior models (its images are the VQ-VAE's), got None")
        config = vqvae_config
    return HfVaeImageProcessor(image_size=config.image_size, num_channels=config.num_channels, **options)


def save_image_processor(config, save_directory: str | os.PathLike, **options) -> HfVaeImageProcessor:
    """Write `preprocessor_config.json` for a model with this `config` into `save_directory` (beside the
    model's `config.json`), so `AutoImageProcessor.from_pretrained(folder_or_repo)` and the pipelines find
    it. `options` are `image_processor_for`'s. Returns the processor written."""
    processor = image_processor_for(config, **options)
    write_image_processor(processor, save_directory)
    return processor


def write_image_processor(processor: HfVaeImageProcessor, save_directory: str | os.PathLike) -> None:
    """`processor.save_pretrained(save_directory)` plus an `auto_map` to a copy of this module (and of the
    hf_vae modules it imports) written beside it, so the folder's image processor also loads with
    `AutoImageProcessor.from_pretrained(..., trust_remote_code=True)` where hf_vae is not installed."""
    from .modeling_utils import remote_code_sources

    processor.save_pretrained(save_directory)
    path = Path(save_directory, "preprocessor_config.json")
    processor_config = json.loads(path.read_text(encoding="utf-8"))
    processor_class = type(processor)
    processor_config["auto_map"] = {
        "AutoImageProcessor": f"{processor_class.__module__.rsplit('.', 1)[-1]}.{processor_class.__name__}"
    }
    path.write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for file_name, text in remote_code_sources(processor_class.__module__).items():
        Path(save_directory, file_name).write_text(text, encoding="utf-8")


def save_model_image_processor(model, save_directory: str | os.PathLike) -> HfVaeImageProcessor | None:
    """What `model.save_pretrained(save_directory)` writes beside the model: its image processor.

    A `preprocessor_config.json` already in the folder for the same image size and channels is kept (a
    training run's, which also holds the run's crop and binarization); any other is replaced by the one
    the config implies (`image_processor_for(model.config)`). A prior over VQ-VAE codes gets none here:
    its images are its VQ-VAE's, and the trainer and the pipelines, which load that VQ-VAE, write it.
    Returns the processor in the folder, or None.
    """
    if getattr(model.config, "token_source", None) == "vqvae_codes":
        return None
    processor = image_processor_for(model.config)
    path = Path(save_directory, "preprocessor_config.json")
    if path.is_file():
        try:
            existing = HfVaeImageProcessor.from_pretrained(save_directory)
        except (OSError, ValueError, TypeError):
            existing = None  # unreadable or another library's: replaced below
        if (isinstance(existing, HfVaeImageProcessor) and existing.image_size == processor.image_size
                and existing.num_channels == processor.num_channels):
            return existing
    write_image_processor(processor, save_directory)
    return processor


def register_image_processor(config_classes) -> None:
    """Register `HfVaeImageProcessor` with `AutoImageProcessor` for each config class (idempotent)."""
    from transformers import AutoImageProcessor

    for config_class in config_classes:
        AutoImageProcessor.register(config_class, image_processor_classes={"pil": HfVaeImageProcessor}, exist_ok=True)
