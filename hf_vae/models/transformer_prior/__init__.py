"""The transformer_prior family: its config, its model, and its registration (AutoConfig now; AutoModel and cards
when the model class is first needed: `hf_vae.families.load_families`)."""

from ...families import family_attribute, register_family
from .configuration_transformer_prior import TransformerPriorConfig

register_family(TransformerPriorConfig, f"{__name__}.modeling_transformer_prior.TransformerPriorModel", tags=("transformer", "autoregressive", "token-prior", "image-generation"))


def __getattr__(name: str):
    """`TransformerPriorModel`: imported (and registered) on first use."""
    return family_attribute(__name__, name)


__all__ = ["TransformerPriorConfig", "TransformerPriorModel"]
