"""hf_vae: latent-variable generative models (VAE, β-VAE, ...) as Hugging Face models.

Importing the package registers every family (each from its own `models/<family>/__init__.py`) with
`AutoConfig` / `AutoModel` and the model cards, the pipeline
tasks with transformers `pipeline()`, and (when diffusers is installed) hf_vae with diffusers, lazily:
diffusers is imported only when a diffusers pipeline is used (see `hf_vae.pipelines`).
"""

from .configuration_utils import has_label_names, set_label_names
from .distributions import DiagonalGaussian, get_likelihood, log_mean_exp, nats_to_bits_per_dim
from .models.vae import VAEConfig, VAEModel
from .models.cvae import CVAEConfig, CVAEModel
from .models.vqvae import VQVAEConfig, VQVAEModel
from .quantization import VectorQuantizer
from .models.pixelcnn_prior import PixelCNNPriorConfig, PixelCNNPriorModel
from .models.transformer_prior import TransformerPriorConfig, TransformerPriorModel
from .sampling import sample_tokens
from .evaluation import Metric, evaluate
from .generation import generate_images
from .image_processing import HfVaeImageProcessor, image_processor_for, save_image_processor

__version__ = "0.1.0"

# transformers `pipeline()` tasks, and hf_vae as a component library of diffusers once diffusers is imported.
from .pipelines import register_pipelines as _register_pipelines  # noqa: E402

_register_pipelines()

# `AutoImageProcessor` finds `HfVaeImageProcessor` for every family registered above.
from .families import FAMILIES as _FAMILIES  # noqa: E402
from .image_processing import register_image_processor as _register_image_processor  # noqa: E402

_register_image_processor(model_class.config_class for model_class in _FAMILIES.values())

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
