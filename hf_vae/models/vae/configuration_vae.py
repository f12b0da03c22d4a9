"""Configuration of the VAE family (β-VAE is the same model with `beta != 1`)."""

from __future__ import annotations

from ...configuration_utils import HfVaeConfig

from ...validation import check_choice, check_float, check_int, check_int_list
from ...distributions import LIKELIHOODS

ACTIVATIONS = ("silu", "relu", "gelu", "elu")


class VAEConfig(HfVaeConfig):
    r"""Configuration of a convolutional VAE / β-VAE (Kingma & Welling 2014; Higgins et al. 2017).

    Args:
        image_size (`int`, defaults to 28): height and width of the square input images.
        num_channels (`int`, defaults to 1): image channels (1 grey, 3 RGB).
        hidden_channels (`list[int]`, defaults to `[32, 64]`): encoder widths, one stride-2 stage each
            (the decoder mirrors them); `image_size` must be divisible by `2 ** len(hidden_channels)`.
        num_res_blocks (`int`, defaults to 1): residual blocks after each encoder stage and before each
            decoder stage.
        latent_dim (`int`, defaults to 16): dimension of z.
        likelihood (`str`, defaults to `"bernoulli"`): p(x|z); `"bernoulli"` for binary images,
            `"gaussian"` for continuous ones, `"discretized_gaussian"` for 8-bit images (honest bits/dim).
        likelihood_scale (`float`, *optional*): fixed standard deviation of the Gaussian likelihoods;
            `None` learns a per-pixel scale. Ignored by `"bernoulli"`.
        beta (`float`, defaults to 1.0): weight of the KL term (β-VAE when != 1).
        kl_warmup_steps (`int`, defaults to 0): the KL weight ramps linearly from 0 to `beta` over this
            many optimizer steps (0 = no warm-up).
        free_bits (`float`, defaults to 0.0): minimum KL in nats per latent dimension in the training
            objective (Kingma et al. 2016), averaged over the batch; 0 disables it.
        dropout (`float`, defaults to 0.0): dropout inside the residual blocks.
        activation (`str`, defaults to `"silu"`): non-linearity of encoder and decoder.
    """

    model_type = "vae"

    image_size: int = 28
    num_channels: int = 1
    hidden_channels: list[int] | tuple[int, ...] = (32, 64)
    num_res_blocks: int = 1
    latent_dim: int = 16
    likelihood: str = "bernoulli"
    likelihood_scale: float | None = None
    beta: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0
    dropout: float = 0.0
    activation: str = "silu"

    def _check_fields(self) -> None:
        check_int("image_size", self.image_size, minimum=1)
        check_int("num_channels", self.num_channels, minimum=1)
        check_int_list("hidden_channels", self.hidden_channels)
        check_int("num_res_blocks", self.num_res_blocks, minimum=0)
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.likelihood_scale is not None:
            check_float("likelihood_scale", self.likelihood_scale, minimum=0.0, exclusive_minimum=True)
        check_float("beta", self.beta, minimum=0.0)
        check_int("kl_warmup_steps", self.kl_warmup_steps, minimum=0)
        check_float("free_bits", self.free_bits, minimum=0.0)
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        check_choice("activation", self.activation, ACTIVATIONS)
        factor = 2 ** len(self.hidden_channels)
        if self.image_size % factor != 0:
            raise ValueError(
                f"`image_size` must be divisible by 2 ** len(hidden_channels) = {factor}, got {self.image_size}"
            )
