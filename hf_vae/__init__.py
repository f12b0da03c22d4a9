"""hf_vae: latent-variable generative models (VAE, β-VAE, ...) as Hugging Face models.

Importing the package registers every config and model with `AutoConfig` / `AutoModel`.
"""

from transformers import AutoConfig, AutoModel

from .distributions import DiagonalGaussian, get_likelihood, log_mean_exp, nats_to_bits_per_dim
from .models.vae import VAEConfig, VAEModel

__version__ = "0.1.0"

for _config_class, _model_class in ((VAEConfig, VAEModel),):
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _model_class, exist_ok=True)

__all__ = [
    "DiagonalGaussian",
    "VAEConfig",
    "VAEModel",
    "get_likelihood",
    "log_mean_exp",
    "nats_to_bits_per_dim",
]
