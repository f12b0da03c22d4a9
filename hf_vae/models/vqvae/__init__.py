"""The vqvae family: its config, its model, and its registration (AutoConfig now; AutoModel and cards
when the model class is first needed: `hf_vae.families.load_families`)."""

from ...families import family_attribute, register_family
from .configuration_vqvae import VQVAEConfig

register_family(VQVAEConfig, f"{__name__}.modeling_vqvae.VQVAEModel", pipeline_tag="image-to-image", tags=("vq-vae", "vector-quantization", "image-tokenizer"))


def __getattr__(name: str):
    """`VQVAEModel`: imported (and registered) on first use."""
    return family_attribute(__name__, name)


__all__ = ["VQVAEConfig", "VQVAEModel"]
