"""The vae family: its config, its model, and its registration (AutoConfig, AutoModel, cards)."""

from ...families import register_family, GAUSSIAN_LATENT_METRICS
from .configuration_vae import VAEConfig
from .modeling_vae import VAEModel

register_family(VAEConfig, VAEModel, tags=("vae", "variational-autoencoder", "image-generation"), index_metrics=GAUSSIAN_LATENT_METRICS)

__all__ = ["VAEConfig", "VAEModel"]
