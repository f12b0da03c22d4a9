"""The hf_vae tasks of transformers' `pipeline()`: thin wrappers around model methods.

Pre-processing (PIL images, files, arrays, tensors -> one batch) and post-processing (`output_type`)
are `hf_vae.images`; the families' methods are picked in `pipeline_utils`. The tasks are registered
with `transformers.pipelines.PIPELINE_REGISTRY` by `hf_vae/pipelines/__init__.py` on `import hf_vae`.

`save_pretrained` / `push_to_hub` write the model (with its code) plus this file and the files it
imports, flat, and `custom_pipelines` in config.json, so the folder or repo also loads where hf_vae is
not installed: `pipeline(model=repo_id, trust_remote_code=True)`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import Pipeline

from ..distributions import nats_to_bits_per_dim
from ..images import check_output_type, format_images, load_images
from ..modeling_utils import remote_code_sources
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
    """Base of the hf_vae pipelines: no tokenizer or processor (images go through `hf_vae.images`), the
    model in eval mode, and a `save_pretrained` that writes the pipeline's code beside the model's."""

    task_name = ""  # the registered task
    capability = ""  # what the model must be able to do (the family protocol's `capabilities`)
    capability_hint = ""

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, *args, **kwargs):
        check_capability(model, self.capability, f"the {self.task_name!r} pipeline", self.capability_hint)
        super().__init__(model, *args, **kwargs)
        # Pipelines infer: dropout off, and a VQ-VAE in training mode would update its codebook.
        self.model.eval()
        self.task = self.task_name  # also when loaded as remote code under `remote_task_name(task)`

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """The model (weights, config, modeling code) plus this pipeline's code, flat, and `custom_pipelines`
        in config.json, so the folder (or a repo made by `push_to_hub`) loads without hf_vae with
        `pipeline(model=folder_or_repo, trust_remote_code=True)`.

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
            for file_name, text in remote_code_sources(module).items():
                Path(save_directory, file_name).write_text(text, encoding="utf-8")

    def _upload_modified_files(self, working_dir, repo_id, files_timestamps, **kwargs):
        """`push_to_hub`'s upload, done by the model's, which puts the hf_vae card in place of transformers' README.md."""
        kwargs["commit_message"] = kwargs.get("commit_message") or f"Upload {type(self).__name__}"
        return self.model._upload_modified_files(working_dir, repo_id, files_timestamps, **kwargs)


class _ImageInputPipeline(HfVaePipeline):
    """Tasks on images: one image in -> one result; a list (or a (B, C, H, W) tensor) -> a list, run as one batch."""

    def __call__(self, images, **kwargs):
        # transformers runs a list item by item through a DataLoader; a tuple is one input, so the whole
        # list becomes one batch (and `batch_size` batching, which needs a tokenizer to collate, is never used).
        if isinstance(images, (list, tuple)):
            if len(images) == 0:
                raise ValueError(f"`images` must hold at least one image, got an empty {type(images).__name__}")
            images = tuple(images)
        return super().__call__(images, **kwargs)

    def preprocess(self, images, labels=None):
        pixel_values, is_batch = load_images(images, self.model.config.num_channels)
        labels = as_labels(self.model, labels, pixel_values.shape[0])
        return {"pixel_values": pixel_values.to(self.model.dtype), "labels": labels, "is_batch": is_batch}

    @staticmethod
    def _unbatch(results: list, is_batch: bool):
        return results if is_batch else results[0]


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

    Call: `num_samples` (default 1, or `len(labels)`), `generator` or `seed`, `temperature`, `labels` (a
    class id or class name for every image, or one per image: a list mixing ids and names, or an integer
    tensor; see `as_labels`), `guidance_scale`, `top_k` / `top_p` (token priors),
    `output_type` ("pil": a list of PIL images, default; "np": float32 (N, H, W, C); "pt": (N, C, H, W)).
    An argument the model does not take (e.g. `labels` for an unconditional VAE) raises a `ValueError`.
    """

    task_name = "unconditional-image-generation"
    capability = "sample"
    capability_hint = ": a VQ-VAE has no prior; pass a token prior over its codes as `model` and the VQ-VAE as `vqvae`"

    def __init__(self, model, *args, vqvae=None, **kwargs):
        super().__init__(model, *args, **kwargs)
        self.vqvae = resolve_vqvae(self.model, vqvae)
        if self.vqvae is not None:
            self.vqvae.to(self.device)

    def __call__(self, num_samples: int | None = None, **kwargs):
        return super().__call__(num_samples, **kwargs)

    def _sanitize_parameters(self, generator=None, seed=None, labels=None, guidance_scale=None, temperature=None,
                             output_type=None, **sample_options):
        preprocess = {"generator": generator, "seed": seed, "labels": labels}
        forward = {"guidance_scale": guidance_scale, "temperature": temperature, **sample_options}
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

    def _forward(self, model_inputs, **options):
        num_samples = model_inputs.pop("num_samples")
        return {"images": sample_images(self.model, num_samples, vqvae=self.vqvae, **model_inputs, **options)}

    def postprocess(self, model_outputs, output_type="pil"):
        return format_images(model_outputs["images"], output_type)


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
        pixel_values, is_batch = model_inputs["pixel_values"], model_inputs["is_batch"]
        encoded = self.model.encode(pixel_values, **check_options(self.model, "encode", frozenset(), labels=model_inputs["labels"]))
        if "latent_dist" in encoded:  # a Gaussian posterior q(z|x)
            posterior = encoded.latent_dist
            return {"posterior_mean": posterior.mean, "posterior_logvar": posterior.logvar, "is_batch": is_batch}
        return {"indices": encoded.indices, "is_batch": is_batch}  # nearest-code ids

    def postprocess(self, model_outputs):
        is_batch = model_outputs.pop("is_batch")
        names = list(model_outputs)
        count = len(model_outputs[names[0]])
        return self._unbatch([{name: model_outputs[name][i] for name in names} for i in range(count)], is_batch)


class ImageReconstructionPipeline(_ImageInputPipeline):
    """Task `"image-reconstruction"`: decode(encode(x)), the mean of p(x|z) at the posterior mean (VAE;
    CVAE with `labels`) or at the nearest codes (VQ-VAE).

    Call: `labels` (CVAE), `sample_posterior=True` with `generator` / `seed` (decode a posterior draw
    instead of the mean; VAE / CVAE), `output_type` ("pil", "np", "pt"). One image in -> one image (PIL,
    (H, W, C) array or (C, H, W) tensor); a list in -> a list of PIL images, or a (B, H, W, C) array /
    (B, C, H, W) tensor.
    """

    task_name = "image-reconstruction"
    capability = "reconstruct"
    capability_hint = ": a token prior has no encoder"

    def _sanitize_parameters(self, labels=None, sample_posterior=None, generator=None, seed=None, output_type=None):
        if output_type is not None:
            check_output_type(output_type)
        forward = {"sample_posterior": sample_posterior, "generator": generator, "seed": seed}
        preprocess, postprocess = {"labels": labels}, {"output_type": output_type}
        return _drop_none(preprocess), _drop_none(forward), _drop_none(postprocess)

    def _forward(self, model_inputs, sample_posterior=None, generator=None, seed=None):
        options = check_options(self.model, "reconstruct", type(self.model).reconstruct_options, labels=model_inputs["labels"],
                                sample_posterior=sample_posterior, generator=generator, seed=seed)
        return {"images": self.model.reconstruct(model_inputs["pixel_values"], **options), "is_batch": model_inputs["is_batch"]}

    def postprocess(self, model_outputs, output_type="pil"):
        images = format_images(model_outputs["images"], output_type)
        return images if model_outputs["is_batch"] else images[0]


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
    Construction: `vqvae` for a prior over VQ-VAE codes (default: the one in its config).
    """

    task_name = "image-scoring"
    capability = "score"

    def __init__(self, model, *args, vqvae=None, **kwargs):
        super().__init__(model, *args, **kwargs)
        self.vqvae = resolve_vqvae(self.model, vqvae)
        if self.vqvae is not None:
            self.vqvae.to(self.device)

    def preprocess(self, images, labels=None):
        if type(self.model).input_kind != "tokens":
            return super().preprocess(images, labels)
        # A prior scores the VQ-VAE's codes of the images, or their pixels (single-channel tokens).
        if self.vqvae is not None:
            num_channels, dtype = self.vqvae.config.num_channels, self.vqvae.dtype
        else:
            num_channels, dtype = 1, torch.float32
        pixel_values, is_batch = load_images(images, num_channels)
        labels = as_labels(self.model, labels, pixel_values.shape[0])
        return {"pixel_values": pixel_values.to(dtype), "labels": labels, "is_batch": is_batch}

    def _sanitize_parameters(self, labels=None, num_importance_samples=None, generator=None, seed=None, quantize=None):
        forward = {"num_importance_samples": num_importance_samples, "generator": generator, "seed": seed,
                   "quantize": quantize}
        return _drop_none({"labels": labels}), _drop_none(forward), {}

    def _forward(self, model_inputs, num_importance_samples=None, generator=None, seed=None, quantize=None):
        options = check_options(self.model, "score", type(self.model).score_options, labels=model_inputs["labels"],
                                num_importance_samples=num_importance_samples, generator=generator, seed=seed,
                                quantize=quantize)
        if self.vqvae is not None:  # a prior over VQ-VAE codes scores the images' code grids
            options["vqvae"] = self.vqvae
        scored = self.model.score(model_inputs["pixel_values"], **options)
        return {"score": scored.score, "estimator": scored.estimator, "num_dims": scored.num_dims,
                "is_batch": model_inputs["is_batch"]}

    def postprocess(self, model_outputs):
        num_dims = model_outputs["num_dims"]
        results = []
        for value in model_outputs["score"].tolist():
            bits = None if num_dims is None else nats_to_bits_per_dim(value, num_dims)
            results.append(
                {"score": value, "unit": "nats", "estimator": model_outputs["estimator"], "bits_per_dim": bits}
            )
        return self._unbatch(results, model_outputs["is_batch"])

