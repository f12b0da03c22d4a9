"""The pixelcnn_prior family: its config, its model, and its registration (AutoConfig now; AutoModel and cards
when the model class is first needed: `hf_vae.families.load_families`)."""

from ...families import family_attribute, register_family
from .configuration_pixelcnn_prior import PixelCNNPriorConfig

register_family(PixelCNNPriorConfig, f"{__name__}.modeling_pixelcnn_prior.PixelCNNPriorModel", tags=("pixelcnn", "autoregressive", "token-prior", "image-generation"))


def __getattr__(name: str):
    """`PixelCNNPriorModel`: imported (and registered) on first use."""
    return family_attribute(__name__, name)


__all__ = ["PixelCNNPriorConfig", "PixelCNNPriorModel"]
