"""The transformer_prior family: its config, its model, and its registration (AutoConfig, AutoModel, cards)."""

from ...families import register_family
from .configuration_transformer_prior import TransformerPriorConfig
from .modeling_transformer_prior import TransformerPriorModel

register_family(TransformerPriorConfig, TransformerPriorModel, tags=("transformer", "autoregressive", "token-prior", "image-generation"))

__all__ = ["TransformerPriorConfig", "TransformerPriorModel"]
