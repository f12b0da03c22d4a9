"""Configuration of the VAE family (β-VAE is the same model with `beta != 1`)."""

from __future__ import annotations

from ...configuration_utils import AutoencoderConfig
from ...validation import check_float, check_int


class VAEConfig(AutoencoderConfig):
    r"""Configuration of a convolutional VAE / β-VAE (Kingma & Welling 2014; Higgins et al. 2017).

    Takes every field of [`AutoencoderConfig`] (`image_size`, `num_channels`, `hidden_channels`,
    `num_res_blocks`, `likelihood`, `likelihood_scale`, `dropout`, `activation`), plus:

    Args:
        latent_dim (`int`, defaults to 16): dimension of z.
        beta (`float`, defaults to 1.0): weight of the KL term (β-VAE when != 1).
        kl_warmup_steps (`int`, defaults to 0): the KL weight ramps linearly from 0 to `beta` over this
            many optimizer steps (0 = no warm-up).
        free_bits (`float`, defaults to 0.0): minimum KL in nats per latent dimension in the training
            objective (Kingma et al. 2016), averaged over the batch; 0 disables it.
    """

    model_type = "vae"

    latent_dim: int = 16
    beta: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0

    def _check_fields(self) -> None:
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_float("beta", self.beta, minimum=0.0)
        check_int("kl_warmup_steps", self.kl_warmup_steps, minimum=0)
        check_float("free_bits", self.free_bits, minimum=0.0)
        super()._check_fields()  # the shared autoencoder fields
