"""hf_vae: latent-variable generative models (VAE, β-VAE, ...) as Hugging Face models.

`import hf_vae` is light: it imports the five families' configs and registers them with `AutoConfig`,
and sets post-import hooks (`hf_vae.import_hooks`) so the rest is imported and registered the moment it
is needed, by whoever imports it first:

- the model classes (with transformers' `modeling_utils`) and their `AutoModel` registration and cards:
  when transformers' `AutoModel` module is imported, or an hf_vae model class is used (`hf_vae.VAEModel`);
- the `pipeline()` tasks: when `transformers.pipelines` is imported;
- `HfVaeImageProcessor` with `AutoImageProcessor`: when transformers' `AutoImageProcessor` module is;
- hf_vae with diffusers: when diffusers' `DiffusionPipeline` is (see `hf_vae.pipelines`).

So `import hf_vae` then `AutoModel.from_pretrained(...)` / `pipeline(...)` works in either import order.
The public names below are attributes of this module, imported from their submodules on first use.
"""

import importlib

from .configuration_utils import has_label_names, set_label_names
from .distributions import DiagonalGaussian, log_mean_exp, nats_to_bits_per_dim
from .families import install_import_hooks as _install_family_hooks
from .import_hooks import when_imported as _when_imported
from .likelihoods import get_likelihood
from .models.cvae import CVAEConfig
from .models.pixelcnn_prior import PixelCNNPriorConfig
from .models.transformer_prior import TransformerPriorConfig
from .models.vae import VAEConfig
from .models.vqvae import VQVAEConfig

__version__ = "0.1.0"

# name -> the submodule that defines it, imported on first use (PEP 562 module __getattr__).
_LAZY = {
    "VAEModel": ".models.vae",
    "CVAEModel": ".models.cvae",
    "VQVAEModel": ".models.vqvae",
    "PixelCNNPriorModel": ".models.pixelcnn_prior",
    "TransformerPriorModel": ".models.transformer_prior",
    "VectorQuantizer": ".quantization",
    "sample_tokens": ".sampling",
    "Metric": ".evaluation",
    "evaluate": ".evaluation",
    "generate_images": ".generation",
    "HfVaeImageProcessor": ".image_processing",
    "image_processor_for": ".image_processing",
    "save_image_processor": ".image_processing",
}


def __getattr__(name: str):
    """The public names of `_LAZY`, and any submodule (`hf_vae.pipelines`), imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # later lookups skip this function
    return value


def _register_pipelines() -> None:
    from .pipelines import register_pipelines

    register_pipelines()


def _register_with_diffusers() -> None:
    from .pipelines import import_diffusers_pipelines

    import_diffusers_pipelines()


def _register_image_processor() -> None:
    from .families import FAMILIES, _PENDING
    from .image_processing import register_image_processor

    config_classes = [model_class.config_class for model_class in FAMILIES.values()]
    register_image_processor(config_classes + [config_class for config_class, _, _ in _PENDING.values()])


_install_family_hooks()
_when_imported("transformers.pipelines", _register_pipelines)
_when_imported("transformers.models.auto.image_processing_auto", _register_image_processor)
_when_imported("diffusers.pipelines.pipeline_utils", _register_with_diffusers)

__all__ = [
    "CVAEConfig",
    "CVAEModel",
    "DiagonalGaussian",
    "HfVaeImageProcessor",
    "Metric",
    "PixelCNNPriorConfig",
    "PixelCNNPriorModel",
    "TransformerPriorConfig",
    "TransformerPriorModel",
    "VAEConfig",
    "VAEModel",
    "VQVAEConfig",
    "VQVAEModel",
    "VectorQuantizer",
    "evaluate",
    "generate_images",
    "get_likelihood",
    "has_label_names",
    "image_processor_for",
    "log_mean_exp",
    "nats_to_bits_per_dim",
    "sample_tokens",
    "save_image_processor",
    "set_label_names",
]
