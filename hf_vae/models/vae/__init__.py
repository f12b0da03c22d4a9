"""The vae family: its config, its model, and its registration (AutoConfig now; AutoModel and cards
when the model class is first needed: `hf_vae.families.load_families`)."""

from ...families import family_attribute, register_family, GAUSSIAN_LATENT_METRICS
from .configuration_vae import VAEConfig

register_family(VAEConfig, f"{__name__}.modeling_vae.VAEModel", tags=("vae", "variational-autoencoder", "image-generation"), index_metrics=GAUSSIAN_LATENT_METRICS)


def __getattr__(name: str):
    """`VAEModel`: imported (and registered) on first use."""
    return family_attribute(__name__, name)


__all__ = ["VAEConfig", "VAEModel"]
