from .configuration_cvae import CVAEConfig
from .modeling_cvae import CVAEModel

__all__ = ["CVAEConfig", "CVAEModel"]
