"""The hf_vae tasks of transformers' `pipeline()`: thin wrappers around model methods.

Pre-processing (PIL images, files, arrays, tensors -> one batch) and post-processing (`output_type`)
are the model's image processor (`hf_vae.image_processing.HfVaeImageProcessor`: the one saved beside
the model as `preprocessor_config.json`, else the one its config implies); the families' methods are
picked in `pipeline_utils`. The tasks are registered with `transformers.pipelines.PIPELINE_REGISTRY` by
`hf_vae.pipelines.register_pipelines`, which `import hf_vae` arranges to run once transformers' pipelines
are imported.

Batching is transformers' own: a list of images runs through its `DataLoader` (`num_workers` workers
preprocess) in batches of `batch_size` (given to `pipeline()` or to the call); without `batch_size` a list
runs as one batch. The generation pipeline draws `num_samples` in batches of `batch_size`.

`save_pretrained` / `push_to_hub` write the model (with its code), its image processor, plus this file
and the files it imports, flat, and `custom_pipelines` in config.json, so the folder or repo also loads
where hf_vae is not installed: `pipeline(model=repo_id, trust_remote_code=True)`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from transformers import Pipeline

from ..distributions import nats_to_bits_per_dim
from ..image_processing import image_processor_for, write_image_processor
from ..images import check_output_type
from ..modeling_utils import remote_code_sources
from ..validation import check_int
from .pipeline_utils import (
    as_labels,
    check_capability,
    check_options,
    make_generator,
    resolve_vqvae,
    sample_images,
)


def _drop_none(params: dict) -> dict:
    """Only the parameters the caller set: `_sanitize_parameters` merges call-time over init-time values."""
    return {key: value for key, value in params.items() if value is not None}


def remote_task_name(task: str) -> str:
    """The key under which a saved pipeline declares its code in config.json `custom_pipelines`."""
    return f"hf_vae/{task}"


class HfVaePipeline(Pipeline):
    """Base of the hf_vae pipelines: no tokenizer; an image processor (loaded from the model's folder or
    repo when it has `preprocessor_config.json`, else `image_processor_for(model.config)`); the model in
    eval mode; and a `save_pretrained` that writes the pipeline's code beside the model's.

    `vqvae` (model, repo id or folder) is the VQ-VAE of a prior over VQ-VAE codes (default: the one
    recorded in `prior.config.vqvae_name_or_path`); any other model takes none.
    """

    task_name = ""  # the registered task
    capability = ""  # what the model must be able to do (the family protocol's `capabilities`)
    capability_hint = ""
    #: What the pipeline takes and gives (its repr; transformers would report the model's default, "text").
    input_modalities: tuple[str, ...] = ("image",)
    output_modalities: tuple[str, ...] = ()

    _load_processor = False
    _load_image_processor = None  # None: transformers loads a saved one if there is one, else we build it
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, *args, vqvae=None, **kwargs):
        check_capability(model, self.capability, f"the {self.task_name!r} pipeline", self.capability_hint)
        super().__init__(model, *args, **kwargs)
        # Pipelines infer: dropout off, and a VQ-VAE in training mode would update its codebook.
        self.model.eval()
        self.task = self.task_name  # also when loaded as remote code under `remote_task_name(task)`
        self.vqvae = resolve_vqvae(self.model, vqvae)
        if self.vqvae is not None:
            self.vqvae.to(self.device)
        if self.image_processor is None:
            vqvae_config = None if self.vqvae is None else self.vqvae.config
            self.image_processor = image_processor_for(self.model.config, vqvae_config=vqvae_config)

    def __repr__(self):
        info = {"model": type(self.model).__name__, "dtype": str(self.dtype).split(".")[-1], "device": self.device.type,
                "input_modalities": list(self.input_modalities), "output_modalities": list(self.output_modalities)}
        return f"{type(self).__name__}: {info}"

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """The model (weights, config, modeling code), its image processor (`preprocessor_config.json`) plus
        this pipeline's code, flat, and `custom_pipelines` in config.json, so the folder (or a repo made by
        `push_to_hub`) loads without hf_vae with `pipeline(model=folder_or_repo, trust_remote_code=True)`.

        The custom task is declared as `"hf_vae/<task>"`, not as the registered name: transformers lets a
        repo's custom task shadow a registered one and then demands `trust_remote_code=True`, so where
        hf_vae is installed `pipeline("<task>", model=repo)` keeps using the installed pipeline with no
        remote code. The model's config in memory is left unchanged.
        """
        if os.path.isfile(save_directory):
            raise ValueError(f"`save_directory` must be a folder, got the file {save_directory}")
        os.makedirs(save_directory, exist_ok=True)
        config = self.model.config
        previous = getattr(config, "custom_pipelines", None)
        module = type(self).__module__
        config.custom_pipelines = {
            remote_task_name(self.task_name): {
                "impl": f"{module.rsplit('.', 1)[-1]}.{type(self).__name__}", "pt": ("AutoModel",), "type": "image",
            }
        }
        try:
            self.model.save_pretrained(save_directory, **kwargs)
        finally:
            if previous is None:
                del config.custom_pipelines
            else:
                config.custom_pipelines = previous
        if kwargs.get("is_main_process", True):
            write_image_processor(self.image_processor, save_directory)  # replaces the model's default one
            for file_name, text in remote_code_sources(module).items():
                Path(save_directory, file_name).write_text(text, encoding="utf-8")

    def _upload_modified_files(self, working_dir, repo_id, files_timestamps, **kwargs):
        """`push_to_hub`'s upload, done by the model's, which puts the hf_vae card in place of transformers' README.md."""
        kwargs["commit_message"] = kwargs.get("commit_message") or f"Upload {type(self).__name__}"
        return self.model._upload_modified_files(working_dir, repo_id, files_timestamps, **kwargs)


class _Item:
    """One image of a list and its class id (1,) or None: what transformers' batching hands `preprocess`."""

    __slots__ = ("image", "labels")

    def __init__(self, image, labels):
        self.image, self.labels = image, labels


def _rows(model_outputs: dict) -> list[dict]:
    """One dict per image from a forward's outputs. A tensor or a list holds one value per image; any
    other value (transformers' batch iterator has already taken it out of its list) is the one image's."""
    batched = [value for value in model_outputs.values() if isinstance(value, (torch.Tensor, list))]
    return [{key: value[i] if isinstance(value, (torch.Tensor, list)) else value for key, value in model_outputs.items()}
            for i in range(len(batched[0]))]


def _per_image(value, count: int) -> list:
    """A value for every image of a batch (`_rows` splits lists, so transformers' batching can too)."""
    return value if isinstance(value, list) else [value] * count


class _ImageInputPipeline(HfVaePipeline):
    """Tasks on images: one image in -> one result; a list (or a (B, C, H, W) tensor) -> a list.

    A list runs through transformers' batching: `batch_size` images per forward (one batch when no
    `batch_size` is given), preprocessed by `num_workers` `DataLoader` workers. `labels` are resolved for
    the whole list first (`as_labels`: one for every image, or one per image), then travel with their images.
    """

    def __call__(self, images, *, labels=None, batch_size=None, num_workers=None, **kwargs):
        batch_size = self._batch_size if batch_size is None else batch_size
        if batch_size is not None:
            check_int("batch_size", batch_size, minimum=1)
            if isinstance(images, torch.Tensor) and images.ndim == 4:  # a batch tensor, re-batched as asked
                images = list(images)
        if not isinstance(images, (list, tuple)):
            return super().__call__(images, labels=labels, batch_size=batch_size, num_workers=num_workers, **kwargs)
        if len(images) == 0:
            raise ValueError(f"`images` must hold at least one image, got an empty {type(images).__name__}")
        self._check_same_shapes(images)
        labels = self._preprocess_params.get("labels") if labels is None else labels
        ids = as_labels(self.model, labels, len(images))
        items = [_Item(image, None if ids is None else ids[i : i + 1]) for i, image in enumerate(images)]
        if "seed" in kwargs and "generator" in self._options():
            # one generator for the whole list, so each batch draws on from where the previous one stopped
            kwargs["generator"] = make_generator(kwargs.pop("generator", None), kwargs.pop("seed"))
        return super().__call__(items, batch_size=batch_size or len(items), num_workers=num_workers, **kwargs)

    def _options(self) -> frozenset[str]:
        """The keyword options of the model method this task calls (its `*_options`)."""
        return frozenset()

    @staticmethod
    def _check_same_shapes(images) -> None:
        """Pixel values (float tensors / arrays) pass unresized, so a list of them must agree in shape."""
        shapes = {tuple(image.shape) for image in images if (isinstance(image, torch.Tensor) and image.is_floating_point())
                  or getattr(getattr(image, "dtype", None), "kind", "") == "f"}
        if len(shapes) > 1:
            raise ValueError(f"`images` must all have the same (C, H, W) shape, got {sorted(shapes)}")

    def _input_dtype(self) -> torch.dtype:
        return self.model.dtype

    def preprocess(self, images, labels=None):
        if isinstance(images, _Item):  # an image of a list, with its class id (1,) already resolved
            pixel_values, is_batch, labels = self.image_processor(images.image)["pixel_values"], False, images.labels
        else:
            is_batch = isinstance(images, torch.Tensor) and images.ndim == 4
            pixel_values = self.image_processor(images)["pixel_values"]
            labels = as_labels(self.model, labels, pixel_values.shape[0])
        inputs = {"pixel_values": pixel_values.to(self._input_dtype()), "is_batch": is_batch}
        if labels is not None:  # absent rather than None, so transformers' collate can stack the rest
            inputs["labels"] = labels
        return inputs

    @staticmethod
    def _unbatch(results: list, model_outputs: dict):
        """The results of a batch input as a list, of a single image as that image's result."""
        is_batch = model_outputs["is_batch"]
        return results if (is_batch[0] if isinstance(is_batch, list) else is_batch) else results[0]


class UnconditionalImageGenerationPipeline(HfVaePipeline):
    """Task `"unconditional-image-generation"`: sample images from a VAE, a CVAE (class-conditional with
    `labels`) or a token prior (a PixelCNN / transformer over quantized pixels, or over VQ-VAE codes:
    two-stage, decoded by the VQ-VAE).

        pipe = pipeline("unconditional-image-generation", model="me/vae-mnist")       # or a folder / model
        images = pipe(num_samples=8, seed=0)                                          # 8 PIL images
        digits = pipe(labels=[3, 3, 7], guidance_scale=2.0, output_type="np")         # CVAE: (3, H, W, C)
        cats = pipe(num_samples=4, labels="cat")                  # by class name (`model.config.label_names`)
        two_stage = pipeline("unconditional-image-generation", model=prior, vqvae=vqvae)

    Construction: `vqvae` (model, repo id or folder) for a prior over VQ-VAE codes; default: the VQ-VAE
    recorded in `prior.config.vqvae_name_or_path`.

    Call: `num_samples` (default 1, or `len(labels)`), `batch_size` (draw them in batches of this many, one
    generator throughout; default: all at once), `generator` or `seed`, `temperature`, `labels` (a
    class id or class name for every image, or one per image: a list mixing ids and names, or an integer
    tensor; see `as_labels`), `guidance_scale`, `top_k` / `top_p` (token priors),
    `output_type` ("pil": a list of PIL images, default; "np": float32 (N, H, W, C); "pt": (N, C, H, W)).
    An argument the model does not take (e.g. `labels` for an unconditional VAE) raises a `ValueError`.
    """

    task_name = "unconditional-image-generation"
    capability = "sample"
    capability_hint = ": a VQ-VAE has no prior; pass a token prior over its codes as `model` and the VQ-VAE as `vqvae`"
    input_modalities = ()  # nothing but options (and class labels)
    output_modalities = ("image",)

    def __call__(self, num_samples: int | None = None, *, batch_size=None, num_workers=None, **kwargs):
        batch_size = self._batch_size if batch_size is None else batch_size
        if batch_size is not None:
            check_int("batch_size", batch_size, minimum=1)
        # transformers runs one input (here `num_samples`) as one forward: the batches are drawn in
        # `_forward`. `num_workers` is accepted as every pipeline takes it; there is nothing to preprocess.
        return super().__call__(num_samples, draw_batch_size=batch_size, **kwargs)

    def _sanitize_parameters(self, generator=None, seed=None, labels=None, guidance_scale=None, temperature=None,
                             output_type=None, draw_batch_size=None, **sample_options):
        preprocess = {"generator": generator, "seed": seed, "labels": labels}
        forward = {"guidance_scale": guidance_scale, "temperature": temperature, "draw_batch_size": draw_batch_size,
                   **sample_options}
        postprocess = {"output_type": output_type}
        if output_type is not None:
            check_output_type(output_type)
        return _drop_none(preprocess), _drop_none(forward), _drop_none(postprocess)

    def preprocess(self, num_samples, generator=None, seed=None, labels=None):
        if num_samples is None:  # one image per label given as a list or a (N,) tensor
            sized = isinstance(labels, (list, tuple)) or (isinstance(labels, torch.Tensor) and labels.ndim == 1)
            num_samples = len(labels) if sized and len(labels) else 1
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        return {"num_samples": num_samples, "generator": make_generator(generator, seed),
                "labels": as_labels(self.model, labels, num_samples)}

    def _forward(self, model_inputs, draw_batch_size=None, **options):
        num_samples, labels = model_inputs.pop("num_samples"), model_inputs.pop("labels")
        step = draw_batch_size or num_samples
        batches = []
        for start in range(0, num_samples, step):
            count = min(step, num_samples - start)
            batch_labels = None if labels is None else labels[start : start + count]
            batches.append(sample_images(self.model, count, vqvae=self.vqvae, labels=batch_labels, **model_inputs, **options))
        return {"images": torch.cat(batches)}

    def postprocess(self, model_outputs, output_type="pil"):
        return self.image_processor.postprocess(model_outputs["images"], output_type)


class ImageToLatentsPipeline(_ImageInputPipeline):
    """Task `"image-to-latents"`: the encoder's view of images.

    VAE / CVAE: `{"posterior_mean": (latent_dim,), "posterior_logvar": (latent_dim,)}` of q(z|x) (CVAE:
    q(z|x, y), `labels` required). VQ-VAE: `{"indices": (h, w)}`, the nearest-code ids (the tokens a
    prior models). Tensors on the CPU; one dict per image.
    """

    task_name = "image-to-latents"
    capability = "encode"
    capability_hint = ": a token prior has no encoder"

    def _sanitize_parameters(self, labels=None):
        return _drop_none({"labels": labels}), {}, {}

    def _forward(self, model_inputs):
        pixel_values = model_inputs["pixel_values"]
        is_batch = _per_image(model_inputs["is_batch"], len(pixel_values))
        labels = model_inputs.get("labels")
        encoded = self.model.encode(pixel_values, **check_options(self.model, "encode", frozenset(), labels=labels))
        if "latent_dist" in encoded:  # a Gaussian posterior q(z|x)
            posterior = encoded.latent_dist
            return {"posterior_mean": posterior.mean, "posterior_logvar": posterior.logvar, "is_batch": is_batch}
        return {"indices": encoded.indices, "is_batch": is_batch}  # nearest-code ids

    def postprocess(self, model_outputs):
        rows = [{name: row[name] for name in row if name != "is_batch"} for row in _rows(model_outputs)]
        return self._unbatch(rows, model_outputs)


class ImageReconstructionPipeline(_ImageInputPipeline):
    """Task `"image-reconstruction"`: decode(encode(x)), the mean of p(x|z) at the posterior mean (VAE;
    CVAE with `labels`) or at the nearest codes (VQ-VAE).

    Call: `labels` (CVAE), `sample_posterior=True` with `generator` / `seed` (decode a posterior draw
    instead of the mean; VAE / CVAE), `output_type` ("pil", "np", "pt"). One image in -> one image (PIL,
    (H, W, C) array or (C, H, W) tensor); a list or a (B, C, H, W) tensor in -> a list of PIL images, or a
    (B, H, W, C) array / (B, C, H, W) tensor (however `batch_size` split the work).
    """

    task_name = "image-reconstruction"
    capability = "reconstruct"
    capability_hint = ": a token prior has no encoder"
    output_modalities = ("image",)

    def _sanitize_parameters(self, labels=None, sample_posterior=None, generator=None, seed=None, output_type=None):
        if output_type is not None:
            check_output_type(output_type)
        forward = {"sample_posterior": sample_posterior, "generator": generator, "seed": seed}
        preprocess, postprocess = {"labels": labels}, {"output_type": output_type}
        return _drop_none(preprocess), _drop_none(forward), _drop_none(postprocess)

    def __call__(self, images, **kwargs):
        results = super().__call__(images, **kwargs)
        output_type = kwargs.get("output_type") or self._postprocess_params.get("output_type", "pil")
        if isinstance(results, list) and output_type != "pil":  # one array / tensor for many images, as diffusers
            return np.stack(results) if output_type == "np" else torch.stack(results)
        return results

    def _options(self) -> frozenset[str]:
        return type(self.model).reconstruct_options

    def _forward(self, model_inputs, sample_posterior=None, generator=None, seed=None):
        options = check_options(self.model, "reconstruct", self._options(), labels=model_inputs.get("labels"),
                                sample_posterior=sample_posterior, generator=generator, seed=seed)
        images = self.model.reconstruct(model_inputs["pixel_values"], **options)
        return {"images": images, "is_batch": _per_image(model_inputs["is_batch"], len(images))}

    def postprocess(self, model_outputs, output_type="pil"):
        images = self.image_processor.postprocess(model_outputs["images"], output_type)
        is_batch = model_outputs["is_batch"]
        return images if (is_batch[0] if isinstance(is_batch, list) else is_batch) else images[0]


class ImageScoringPipeline(_ImageInputPipeline):
    """Task `"image-scoring"`: how unlikely each image is under the model, in nats (for outlier detection:
    higher = more unusual). One dict per image: `{"score", "unit": "nats", "estimator", "bits_per_dim"}`.

    - VAE / CVAE: -log p(x) by importance sampling, `model.log_likelihood` with k =
      `num_importance_samples` (default 100): estimator "IWAE, k=100" ("ELBO, 1 sample" for k = 1), an
      upper bound on the NLL that tightens with k. CVAE: -log p(x|y) given `labels`, -log p(x) without.
    - PixelCNN / transformer prior over pixels: the exact NLL of the image quantized to the prior's
      `pixel_levels` (binarized at 0.5 for 2 levels; `quantize=False` requires images already on the grid).
    - Prior over VQ-VAE codes: the exact NLL of the image's VQ-VAE code grid, -log p(codes) (bits_per_dim None).
    - VQ-VAE (no prior, so no likelihood of x): the reconstruction error -log p(x|z_q) at the nearest codes.

    Call: `labels`, `num_importance_samples`, `generator` / `seed` (VAE / CVAE), `quantize` (pixel priors).
    Construction: `vqvae` for a prior over VQ-VAE codes (default: the one in its config); its image
    processor reads images at the VQ-VAE's size and channels.
    """

    task_name = "image-scoring"
    capability = "score"

    def _options(self) -> frozenset[str]:
        return type(self.model).score_options

    def _input_dtype(self) -> torch.dtype:
        # A prior scores the VQ-VAE's codes of the images, or their pixels (single-channel tokens).
        if type(self.model).input_kind != "tokens":
            return self.model.dtype
        return torch.float32 if self.vqvae is None else self.vqvae.dtype

    def _sanitize_parameters(self, labels=None, num_importance_samples=None, generator=None, seed=None, quantize=None):
        forward = {"num_importance_samples": num_importance_samples, "generator": generator, "seed": seed,
                   "quantize": quantize}
        return _drop_none({"labels": labels}), _drop_none(forward), {}

    def _forward(self, model_inputs, num_importance_samples=None, generator=None, seed=None, quantize=None):
        options = check_options(self.model, "score", self._options(), labels=model_inputs.get("labels"),
                                num_importance_samples=num_importance_samples, generator=generator, seed=seed,
                                quantize=quantize)
        if self.vqvae is not None:  # a prior over VQ-VAE codes scores the images' code grids
            options["vqvae"] = self.vqvae
        scored = self.model.score(model_inputs["pixel_values"], **options)
        count = len(scored.score)
        # Every value per image, so transformers' batch iterator can hand each image its own.
        return {"score": scored.score, "estimator": _per_image(scored.estimator, count),
                "num_dims": _per_image(scored.num_dims, count), "is_batch": _per_image(model_inputs["is_batch"], count)}

    def postprocess(self, model_outputs):
        results = []
        for row in _rows(model_outputs):
            value, num_dims = row["score"].item(), row["num_dims"]
            bits = None if num_dims is None else nats_to_bits_per_dim(value, num_dims)
            results.append({"score": value, "unit": "nats", "estimator": row["estimator"], "bits_per_dim": bits})
        return self._unbatch(results, model_outputs)

