"""The pixelcnn_prior family: its config, its model, and its registration (AutoConfig, AutoModel, cards)."""

from ...families import register_family
from .configuration_pixelcnn_prior import PixelCNNPriorConfig
from .modeling_pixelcnn_prior import PixelCNNPriorModel

register_family(PixelCNNPriorConfig, PixelCNNPriorModel, tags=("pixelcnn", "autoregressive", "token-prior", "image-generation"))

__all__ = ["PixelCNNPriorConfig", "PixelCNNPriorModel"]
