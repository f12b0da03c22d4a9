"""What the demo app computes, without Gradio: one loaded model and what each tab asks of it.

    DemoSession.load(MODEL) ──► the model (+ the VQ-VAE of a prior over codes), its image processor, and
                                the dataset its training run recorded (metrics.json beside the weights)
    a tab ──► generate / interpolate / arithmetic / reconstruct / score / codes ──► PIL images and dicts

Every input image goes through `read_image` (its size checked from the file header, before the pixels
are decoded) and then the model's image processor (`image_processor_for`), so a phone photo works. Every
number comes from a model method or `hf_vae.pipelines.pipeline_utils.sample_images` (which chains
`generate_images` for a prior); this module only converts inputs and draws pictures. Bad input raises a
`ValueError` in the package's style, which the app shows in the page.
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..distributions import nats_to_bits_per_dim
from ..image_processing import image_processor_for
from ..images import image_grid, to_pil
from ..pipelines.pipeline_utils import is_code_prior, resolve_vqvae, sample_images
from ..validation import check_choice, check_float, check_image_size, check_int

# A phone photo is 12-48 megapixels; anything larger is refused from its header, never decoded.
MAX_PIXELS = 50_000_000
MAX_IMAGES = 64  # images per Generate click
MAX_STEPS = 16  # images in an interpolation strip
SCORE_SAMPLES = 16  # importance samples of a VAE score (k), the same for uploads and the reference split: < 1 s
REFERENCE_SIZE = 200  # test images whose scores give the percentile (scored once, on first use)
NUM_EXAMPLES = 8  # test images offered as inputs ("picked from the model's dataset")
INTERPOLATIONS = {"linear": "linear", "spherical": "slerp"}  # label in the page -> `model.interpolate` method


def read_image(image, name: str = "image", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An uploaded file path (or a PIL image / array) -> a decoded PIL image, refusing an empty upload, a
    file that is not an image and one over `max_pixels` pixels (read from the header: `Image.open` is lazy)."""
    if image is None or (isinstance(image, str) and not image):
        raise ValueError(f"`{name}` must be an uploaded image, got nothing")
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        check_image_size(name, image.size, max_pixels)
        return image
    if not isinstance(image, (str, os.PathLike)):
        raise ValueError(f"`{name}` must be an image file, got {type(image).__name__}")
    path = Path(image)
    if not path.is_file() or path.stat().st_size == 0:
        raise ValueError(f"`{name}` must be an image file, got an empty upload ({path.name!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own budget decides
            with Image.open(path) as opened:
                check_image_size(name, opened.size, max_pixels)  # before a single pixel is decoded
                opened.load()
                return opened.copy()
    except Image.DecompressionBombError:  # PIL's own limit, hit while reading the header
        raise ValueError(f"`{name}` must be an image of at most {max_pixels:,} pixels, got a larger one "
                         f"({path.name!r})") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"`{name}` must be an image file (PNG, JPEG, ...), got {path.name!r} that is not one "
                         f"({type(error).__name__})") from None


def training_metadata(name_or_path) -> dict | None:
    """The `metrics.json` of a model folder (or of the run folder above `best_model/`) or Hub repo: what
    its training run recorded (the recipe and its dataset); None when there is none."""
    folder = Path(os.path.expanduser(str(name_or_path)))
    if folder.is_dir():
        for candidate in (folder / "metrics.json", folder.parent / "metrics.json"):
            if candidate.is_file():
                return json.loads(candidate.read_text())
        return None
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(str(name_or_path), "metrics.json")).read_text())
    except Exception:  # no such file, an old repo, the Hub out of reach: the page says the data is unknown
        return None


class DemoSession:
    """A model loaded for the demo, with the pictures and numbers its tabs show.

    Args:
        model: an hf_vae model (eval mode is set here).
        vqvae: the VQ-VAE of a prior over codes (None loads the one recorded in the prior's config).
        metadata: the training run's `metrics.json` (`training_metadata`), or None when unknown.
        max_pixels: the largest input image accepted, in pixels.
    """

    def __init__(self, model, *, vqvae=None, metadata: dict | None = None, max_pixels: int = MAX_PIXELS):
        check_int("max_pixels", max_pixels, minimum=1)
        self.model = model.eval()
        self.vqvae = resolve_vqvae(model, vqvae)
        self.max_pixels = max_pixels
        data = ((metadata or {}).get("recipe") or {}).get("data") or {}
        self.dataset = data if data.get("dataset") and data.get("test_split") else None
        self.processor = image_processor_for(
            model.config, vqvae_config=None if self.vqvae is None else self.vqvae.config,
            center_crop=data.get("center_crop"), binarize=data.get("eval_binarize") or "none",
            binarize_seed=data.get("binarize_seed") or 0)
        self.scale = max(1, 112 // max(self.processor.image_size))  # small images shown at >= 112 pixels
        self._lock = threading.RLock()  # the warm-up thread of `hf-vae demo` and a Score click may race
        self._test: dict | None = None
        self._reference: dict[bool, torch.Tensor] = {}

    @classmethod
    def load(cls, name_or_path, **kwargs) -> DemoSession:
        """Load a model folder or Hub repo id (`hf_vae.hub.load_model`: strict, safetensors only) and its
        training metadata."""
        from ..hub import load_model

        return cls(load_model(name_or_path), metadata=training_metadata(name_or_path), **kwargs)

    # -- what the page shows about the model -------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        """The tabs this model gets: its family's capabilities, plus arithmetic and codes where it has them."""
        found = set(type(self.model).capabilities or ())
        if hasattr(self.model, "latent_arithmetic"):
            found.add("arithmetic")
        if hasattr(self.model, "encode_to_indices"):
            found.add("codes")
        return frozenset(found)

    @property
    def class_names(self) -> list[str]:
        """A conditional model's classes as the page lists them (names, or ids as text); [] otherwise."""
        if not self.model.is_conditional:
            return []
        return self.model.config.label_names or [str(i) for i in range(self.model.config.num_classes)]

    def reference_note(self) -> str:
        """Where the Score tab's percentiles come from, or why there are none."""
        if self.dataset is None:
            return ("Percentile: unknown. The model's training data is not recorded (no metrics.json with a "
                    "test split beside its weights), so there are no reference scores.")
        return (f"Percentile among the scores of the first {REFERENCE_SIZE} images of the "
                f"{self.dataset['dataset']!r} {self.dataset['test_split']!r} split (computed on first use).")

    def examples(self) -> list[tuple[Image.Image, str]]:
        """A few test images with their class, to pick as inputs; [] when the dataset is unknown."""
        if self.dataset is None:
            return []
        test = self._test_split()
        count = min(NUM_EXAMPLES, len(test["pixel_values"]))
        labels = test.get("labels")
        names = [self._class_name(int(labels[i])) if labels is not None else "" for i in range(count)]
        return list(zip(to_pil(test["pixel_values"][:count]), names))

    # -- the tabs --------------------------------------------------------------------------------------

    def generate(self, seed: int = 0, num_images: int = 16, temperature: float = 1.0, class_name: str | None = None,
                 guidance_scale: float = 1.0) -> Image.Image:
        """A grid of `num_images` samples (a prior: two-stage through its VQ-VAE), drawn with `seed`."""
        check_int("seed", seed, minimum=0)
        check_int("num_images", num_images, minimum=1, maximum=MAX_IMAGES)
        check_float("guidance_scale", guidance_scale, minimum=0.0)
        options = {"labels": self._label(class_name), "temperature": temperature,
                   "guidance_scale": None if guidance_scale == 1 else guidance_scale}
        generator = torch.Generator().manual_seed(seed)
        images = sample_images(self.model, num_images, vqvae=self.vqvae, generator=generator, **options)
        return image_grid(images, nrow=min(num_images, 8), scale=self.scale)

    def interpolate(self, image_a, image_b, steps: int = 8, method: str = "linear", class_a: str | None = None,
                    class_b: str | None = None) -> Image.Image:
        """A strip of `steps` decodings between the posterior means of two images ("linear" or "spherical")."""
        check_int("steps", steps, minimum=2, maximum=MAX_STEPS)
        check_choice("method", method, tuple(INTERPOLATIONS))
        a, b = self.pixels(image_a, "image_a"), self.pixels(image_b, "image_b")
        # All by keyword: the CVAE's signature puts the labels before `steps`.
        strip = self.model.interpolate(a, b, steps=steps, method=INTERPOLATIONS[method],
                                       label_a=self._ids(class_a, 1, "class_a"), label_b=self._ids(class_b, 1, "class_b"))
        return image_grid(strip, nrow=steps, scale=self.scale)

    def arithmetic(self, image_a, image_b, image_c, scale: float = 1.0, class_name: str | None = None) -> Image.Image:
        """a, b, c and the decoding of z_a + scale * (z_b - z_c), side by side."""
        images = [self.pixels(image, name) for image, name in ((image_a, "image_a"), (image_b, "image_b"), (image_c, "image_c"))]
        result = self.model.latent_arithmetic(*images, labels=self._ids(class_name, 1), scale=scale)
        return image_grid(torch.cat([*images, result]), nrow=4, scale=self.scale)

    def reconstruct(self, image, class_name: str | None = None) -> tuple[Image.Image, Image.Image, Image.Image]:
        """(the model's input, its reconstruction, the per-pixel absolute error as a heat map)."""
        pixel_values = self.pixels(image)
        labels = self._ids(class_name, 1)
        recon = self.model.reconstruct(pixel_values) if labels is None else self.model.reconstruct(pixel_values, labels)
        error = (pixel_values - recon).abs().mean(dim=1, keepdim=True)  # (1, 1, H, W) in [0, 1]
        return (image_grid(pixel_values, padding=0, scale=self.scale), image_grid(recon, padding=0, scale=self.scale),
                heat_map(error[0, 0], self.scale))

    def score(self, image, class_name: str | None = None) -> dict:
        """-log p of the image in nats, bits/dim where it has pixels, and its percentile among the test
        split's scores (higher = more unusual than that share of the test images)."""
        pixel_values = self.pixels(image)
        labels = self._ids(class_name, 1)
        scored = self._score(pixel_values, labels)
        nats = float(scored.score[0])
        result = {"nll_nats": nats, "estimator": scored.estimator,
                  "bits_per_dim": None if scored.num_dims is None else nats_to_bits_per_dim(nats, scored.num_dims),
                  "class": class_name or None, "percentile": None, "reference": self.reference_note()}
        if self.dataset is not None:
            reference = self.reference_scores(conditional=labels is not None)
            # The share of reference images that score lower (more typical), ties counted half.
            below = (reference < nats).double().mean() + 0.5 * (reference == nats).double().mean()
            result["percentile"] = round(100.0 * float(below), 1)
        return result

    def codes(self, image) -> tuple[Image.Image, Image.Image, dict]:
        """A VQ-VAE's code grid of the image as a picture, the histogram of the codes it uses, and the usage
        statistics (`codebook_usage`)."""
        indices = self.model.encode_to_indices(self.pixels(image))[0]  # (h, w) code ids
        size = self.model.config.codebook_size
        counts = torch.bincount(indices.flatten(), minlength=size)
        usage = {name: float(value) for name, value in self.model.codebook_usage(indices).items()
                 if torch.as_tensor(value).numel() == 1}
        grid_scale = max(1, (self.scale * self.processor.image_size[0]) // indices.shape[0])
        return code_picture(indices, size, grid_scale), histogram(counts), {"codes": indices.tolist(), **usage}

    # -- shared steps ----------------------------------------------------------------------------------

    def pixels(self, image, name: str = "image") -> torch.Tensor:
        """An input image -> the model's `pixel_values` (1, C, H, W), through its image processor."""
        pil = read_image(image, name, self.max_pixels)
        return self.processor.preprocess(pil)["pixel_values"].to(self._input_dtype)

    @property
    def _input_dtype(self) -> torch.dtype:
        """The dtype images enter in: the image model's (or the VQ-VAE's of a prior over codes); float32 pixels
        for a prior over pixels (its score turns them into tokens)."""
        if self.vqvae is not None:
            return self.vqvae.dtype
        return self.model.dtype if type(self.model).input_kind == "images" else torch.float32

    def _label(self, class_name: str | None):
        """A class as the page gives it -> what `labels` take: its name, an id typed as digits, or None."""
        if class_name is None or class_name == "":
            return None
        if self.model.config.label_names is None and re.fullmatch(r"\d+", str(class_name)):
            return int(class_name)  # a model without names lists its ids as text
        return class_name  # a name; one the model does not know is reported by `class_ids`, with the names it knows

    def _ids(self, class_name, count: int, name: str = "class_name") -> torch.Tensor | None:
        """Class ids (count,) of a conditional model; None for an unconditional one or no class."""
        label = self._label(class_name)
        if label is None:
            return None
        if not self.model.is_conditional:
            raise ValueError(f"`{name}` must be empty for {type(self.model).__name__} (an unconditional model), got {class_name!r}")
        return self.model.class_ids(label, count, name=name)

    def _class_name(self, class_id: int) -> str:
        names = self.model.config.label_names if self.model.is_conditional else None
        return names[class_id] if names else str(class_id)

    def _score(self, pixel_values: torch.Tensor, labels: torch.Tensor | None):
        options = {}
        if "num_importance_samples" in type(self.model).score_options:  # a VAE: the same k and seed every time
            options = {"num_importance_samples": SCORE_SAMPLES, "generator": torch.Generator().manual_seed(0)}
        if is_code_prior(self.model):
            options["vqvae"] = self.vqvae
        if labels is not None:
            return self.model.score(pixel_values, labels, **options)
        return self.model.score(pixel_values, **options)

    def _test_split(self) -> dict[str, torch.Tensor]:
        """The first `REFERENCE_SIZE` images of the recorded test split, read once, as the model reads them."""
        with self._lock:
            if self._test is None:
                from ..data import first_examples, load_split

                data = self.dataset
                view = load_split(data["dataset"], data["test_split"], revision=data.get("revision"),
                                  config_name=data.get("config_name"), image_size=tuple(self.processor.image_size),
                                  num_channels=self.processor.num_channels, center_crop=data.get("center_crop"),
                                  binarize=self.processor.binarize, seed=self.processor.binarize_seed,
                                  image_column=data.get("image_column"), label_column=data.get("label_column"))
                self._test = first_examples(view, REFERENCE_SIZE)
            return self._test

    def reference_scores(self, conditional: bool = False) -> torch.Tensor:
        """Scores (N,) of the test split's first images, computed once (given their labels when `conditional`)."""
        with self._lock:
            if conditional not in self._reference:
                test = self._test_split()
                pixel_values = test["pixel_values"].to(self._input_dtype)
                labels = test.get("labels") if conditional else None
                scores = [self._score(pixel_values[i:i + 100], None if labels is None else labels[i:i + 100]).score
                          for i in range(0, len(pixel_values), 100)]
                self._reference[conditional] = torch.cat(scores).double()
            return self._reference[conditional]


# -- pictures ---------------------------------------------------------------------------------------


def heat_map(values: torch.Tensor, scale: int = 1) -> Image.Image:
    """Values (H, W) in [0, 1] -> an RGB picture, black (0) through red to yellow (1)."""
    v = values.clamp(0, 1).float().cpu().numpy()
    rgb = np.stack([np.clip(2 * v, 0, 1), np.clip(2 * v - 1, 0, 1), np.zeros_like(v)], axis=-1)
    picture = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def code_picture(indices: torch.Tensor, codebook_size: int, scale: int) -> Image.Image:
    """Code ids (h, w) -> one colour per code (matplotlib's tab20 cycled, so neighbours differ), scaled up."""
    from matplotlib import colormaps

    colours = colormaps["tab20"](np.arange(codebook_size) % 20)[:, :3]  # (K, 3) in [0, 1]
    rgb = colours[indices.cpu().numpy()]
    picture = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)


def histogram(counts: torch.Tensor, height: int = 120, bar: int | None = None) -> Image.Image:
    """Counts (K,) -> a bar chart picture, one dark bar per code on white, tallest bar = `height`."""
    size = len(counts)
    bar = bar or max(1, 512 // size)
    tops = np.round(height * counts.double().numpy() / max(1, int(counts.max()))).astype(int)
    canvas = np.full((height + 2, size * bar), 255, np.uint8)
    for code, top in enumerate(tops):
        canvas[height + 2 - top - 1:, code * bar:(code + 1) * bar - (1 if bar > 2 else 0)] = 40
    canvas[-1, :] = 0  # the axis
    return Image.fromarray(canvas)
