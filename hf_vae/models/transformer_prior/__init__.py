from .configuration_transformer_prior import TransformerPriorConfig
from .modeling_transformer_prior import TransformerPriorModel

__all__ = ["TransformerPriorConfig", "TransformerPriorModel"]
