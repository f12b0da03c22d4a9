"""Pipelines: thin wrappers around the model methods (pre/post-processing in `hf_vae.images`).

transformers `pipeline()` tasks, registered once `import hf_vae` has run (model: an hf_vae model object, a local
folder or a Hub repo id; no tokenizer or processor is needed):

| task | models | call | returns |
|---|---|---|---|
| `"unconditional-image-generation"` | VAE, CVAE, PixelCNN / transformer prior (pixels, or VQ-VAE codes: two-stage) | `pipe(num_samples=1, generator=None, seed=None, temperature=None, labels=None, guidance_scale=None, top_k=None, top_p=None, output_type="pil")` | list of PIL images (or an (N, H, W, C) array / (N, C, H, W) tensor) |
| `"image-to-latents"` | VAE, CVAE, VQ-VAE | `pipe(images, labels=None)` | per image `{"posterior_mean", "posterior_logvar"}` (VAE / CVAE) or `{"indices"}` (VQ-VAE) |
| `"image-reconstruction"` | VAE, CVAE, VQ-VAE | `pipe(images, labels=None, sample_posterior=None, generator=None, seed=None, output_type="pil")` | per image a reconstruction |
| `"image-scoring"` | all | `pipe(images, labels=None, num_importance_samples=100, generator=None, seed=None, quantize=None)` | per image `{"score", "unit": "nats", "estimator", "bits_per_dim"}` |

`labels` (conditional models) are class ids or class names (`model.config.label_names`): one for every
image, or a list mixing them, or an integer tensor (`pipeline_utils.as_labels`).
`images` is one image (PIL, file path, numpy array, (C, H, W) tensor) -> one result, or a list / a
(B, C, H, W) tensor -> a list of results, run as one batch. Scores (higher = less likely, for outlier
detection): VAE / CVAE -log p(x) by IWAE with k samples ("ELBO, 1 sample" for k = 1); pixel priors the
exact NLL of the image quantized to the prior's levels; code priors the exact -log p(codes) of the
VQ-VAE code grid; a VQ-VAE (which has no likelihood) its reconstruction error -log p(x|z_q).
`pipe.save_pretrained(folder)` / `pipe.push_to_hub(repo_id)` also store the pipeline's code, so the
result loads with `pipeline(model=folder_or_repo, trust_remote_code=True)` without hf_vae installed.

diffusers pipelines (with `pip install hf_vae[diffusers]`): `VAEGenerationPipeline(vae)` and
`VQGenerationPipeline(vqvae, prior)`, `__call__(batch_size=None, generator=None, latents=None, labels=None,
guidance_scale=1.0, temperature=1.0, output_type="pil", return_dict=True)` (`VQGenerationPipeline` also
`top_k`, `top_p`; `num_samples` is an alias of `batch_size`) -> `ImagePipelineOutput`; `generator` may be a
list (one per image) and `output_type` `"latent"` (see `diffusers_pipelines`).

`import hf_vae` imports neither transformers' pipelines nor diffusers (each takes seconds): `hf_vae`
calls `register_pipelines` the moment `transformers.pipelines` is imported, and `register_with_diffusers`
(by importing `diffusers_pipelines`) the moment diffusers' `DiffusionPipeline` is, by whoever imports them
(`hf_vae.import_hooks`); the pipeline classes are attributes of this module imported on first use. So
`DiffusionPipeline.from_pretrained(folder_or_repo_id)` loads their `save_pretrained` / `push_to_hub` output
after `import hf_vae`, in either import order.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings

_TRANSFORMERS_NAMES = ("HfVaePipeline", "ImageReconstructionPipeline", "ImageScoringPipeline",
                       "ImageToLatentsPipeline", "UnconditionalImageGenerationPipeline")
_DIFFUSERS_NAMES = ("VAEGenerationPipeline", "VQGenerationPipeline", "register_with_diffusers")


def _tasks() -> dict[str, type]:
    from .transformers_pipelines import (
        ImageReconstructionPipeline, ImageScoringPipeline, ImageToLatentsPipeline, UnconditionalImageGenerationPipeline,
    )

    return {
        cls.task_name: cls
        for cls in (UnconditionalImageGenerationPipeline, ImageToLatentsPipeline, ImageReconstructionPipeline, ImageScoringPipeline)
    }


def register_pipelines() -> None:
    """Register the transformers `pipeline()` tasks (importing transformers' pipelines), and hf_vae with
    diffusers if diffusers' `DiffusionPipeline` is imported already. Idempotent."""
    from transformers import AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    for task, pipeline_class in _tasks().items():
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is not pipeline_class:
            PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=AutoModel, type="image")
    if "diffusers.pipelines.pipeline_utils" in sys.modules:
        import_diffusers_pipelines()


def import_diffusers_pipelines() -> None:
    """Import `diffusers_pipelines` (which registers hf_vae with diffusers); a diffusers that fails to
    import with it warns instead of breaking the import that triggered this."""
    if __name__ + ".diffusers_pipelines" in sys.modules:  # imported, or being imported (it registers at its end)
        return
    try:
        importlib.import_module(".diffusers_pipelines", __name__)
    except ImportError as error:
        warnings.warn(f"diffusers is installed but failed to import ({error}): the diffusers pipelines are unavailable",
                      stacklevel=2)


def __getattr__(name: str):
    """`TASKS` (task name -> pipeline class) and the transformers pipeline classes (importing transformers'
    pipelines); `VAEGenerationPipeline`, `VQGenerationPipeline`, `register_with_diffusers` (importing
    diffusers) on first use."""
    if name == "TASKS":
        return _tasks()
    if name in _TRANSFORMERS_NAMES:
        from . import transformers_pipelines

        return getattr(transformers_pipelines, name)
    if name in _DIFFUSERS_NAMES:
        if importlib.util.find_spec("diffusers") is None:
            raise ImportError(f"hf_vae.pipelines.{name} needs diffusers: pip install 'hf_vae[diffusers]'")
        from . import diffusers_pipelines

        return getattr(diffusers_pipelines, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HfVaePipeline",
    "ImageReconstructionPipeline",
    "ImageScoringPipeline",
    "ImageToLatentsPipeline",
    "TASKS",
    "UnconditionalImageGenerationPipeline",
    "VAEGenerationPipeline",
    "VQGenerationPipeline",
    "register_pipelines",
]
