"""Pipelines: thin wrappers around the model methods (pre/post-processing in `hf_vae.images`).

transformers `pipeline()` tasks, registered on `import hf_vae` (model: an hf_vae model object, a local
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

`import hf_vae` does not import diffusers (it takes seconds): the two classes are attributes of this
module that import `diffusers_pipelines` on first use, and an import hook imports it the moment
anything imports diffusers' `DiffusionPipeline` (or at once, if that has happened already). Importing
it registers hf_vae with diffusers, so `DiffusionPipeline.from_pretrained(folder_or_repo_id)` loads their
`save_pretrained` / `push_to_hub` output after `import hf_vae`, in either import order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .transformers_pipelines import (
    HfVaePipeline,
    ImageReconstructionPipeline,
    ImageScoringPipeline,
    ImageToLatentsPipeline,
    UnconditionalImageGenerationPipeline,
)

TASKS = {
    cls.task_name: cls
    for cls in (UnconditionalImageGenerationPipeline, ImageToLatentsPipeline, ImageReconstructionPipeline, ImageScoringPipeline)
}

_DIFFUSERS_NAMES = ("VAEGenerationPipeline", "VQGenerationPipeline", "register_with_diffusers")
#: The diffusers module that defines `DiffusionPipeline`: once it is imported, so is `diffusers_pipelines`.
_DIFFUSION_PIPELINE_MODULE = "diffusers.pipelines.pipeline_utils"


def register_pipelines() -> None:
    """Register the transformers tasks, and hf_vae with diffusers as soon as diffusers' `DiffusionPipeline`
    is imported (now, if it is already): never importing diffusers itself. Idempotent."""
    for task, pipeline_class in TASKS.items():
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is not pipeline_class:
            PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=AutoModel, type="image")
    if _DIFFUSION_PIPELINE_MODULE in sys.modules:
        _import_diffusers_pipelines()
    elif not any(isinstance(finder, _DiffusersImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DiffusersImportHook())


def _import_diffusers_pipelines() -> None:
    """Import `diffusers_pipelines` (which registers hf_vae with diffusers); a diffusers that fails to
    import with it warns instead of breaking the import that triggered this."""
    if __name__ + ".diffusers_pipelines" in sys.modules:  # imported, or being imported (it registers at its end)
        return
    try:
        importlib.import_module(".diffusers_pipelines", __name__)
    except ImportError as error:
        warnings.warn(f"diffusers is installed but failed to import ({error}): the diffusers pipelines are unavailable",
                      stacklevel=2)


class _DiffusersImportHook(importlib.abc.MetaPathFinder):
    """A post-import hook: finds `diffusers.pipelines.pipeline_utils` like the rest of `sys.meta_path`
    would, and once its loader has run it, leaves `sys.meta_path` and imports `diffusers_pipelines`. Python
    has no post-import hooks, so it wraps that one loader's `exec_module`; every other name passes through."""

    def __init__(self):
        self._searching = False  # while it asks the other finders, it must not answer itself

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _DIFFUSION_PIPELINE_MODULE or self._searching:
            return None
        self._searching = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _import_diffusers_pipelines()

        spec.loader.exec_module = exec_then_register  # this spec's loader instance only
        return spec


def __getattr__(name: str):
    """`VAEGenerationPipeline`, `VQGenerationPipeline`, `register_with_diffusers`: imported from
    `diffusers_pipelines` (and so diffusers) on first use."""
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
