"""The cvae family: its config, its model, and its registration (AutoConfig, AutoModel, cards)."""

from ...families import register_family, GAUSSIAN_LATENT_METRICS
from .configuration_cvae import CVAEConfig
from .modeling_cvae import CVAEModel

register_family(CVAEConfig, CVAEModel, tags=("conditional-vae", "variational-autoencoder", "image-generation"),
                index_metrics=GAUSSIAN_LATENT_METRICS)

__all__ = ["CVAEConfig", "CVAEModel"]
