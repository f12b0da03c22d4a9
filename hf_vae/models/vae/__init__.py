from .configuration_vae import VAEConfig
from .modeling_vae import VAEModel

__all__ = ["VAEConfig", "VAEModel"]
