"""The vqvae family: its config, its model, and its registration (AutoConfig, AutoModel, cards)."""

from ...families import register_family
from .configuration_vqvae import VQVAEConfig
from .modeling_vqvae import VQVAEModel

register_family(VQVAEConfig, VQVAEModel, pipeline_tag="image-to-image", tags=("vq-vae", "vector-quantization", "image-tokenizer"))

__all__ = ["VQVAEConfig", "VQVAEModel"]
