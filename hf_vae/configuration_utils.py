"""The config base every family shares: a `PreTrainedConfig` that checks its fields when built.

transformers 5 configs are dataclasses; `@strict` would raise its own error types, so the families
validate in `__post_init__` and raise `ValueError` naming the field, the expected and the received value.
"""

from __future__ import annotations


from transformers import PreTrainedConfig

from .distributions import LIKELIHOODS
from .models.modeling_autoencoder import ACTIVATIONS
from .validation import check_choice, check_float, check_int, check_int_list


class HfVaeConfig(PreTrainedConfig):
    """Base of the hf_vae configs: subclasses declare fields and implement `_check_fields`."""

    def __post_init__(self, **kwargs):
        # JSON turns tuples into lists; keep one type so a reloaded config compares equal.
        for field_name, field_value in list(vars(self).items()):
            if isinstance(field_value, tuple):
                setattr(self, field_name, list(field_value))
        self._check_fields()
        super().__post_init__(**kwargs)

    def _check_fields(self) -> None:
        raise NotImplementedError


class AutoencoderConfig(HfVaeConfig):
    r"""Base of the convolutional autoencoder configs (VAE, CVAE, VQ-VAE): the fields of the shared
    encoder/decoder core (`hf_vae/models/modeling_autoencoder.py`) and of p(x|z), with their checks.

    Args:
        image_size (`int`, defaults to 28): height and width of the square input images.
        num_channels (`int`, defaults to 1): image channels (1 grey, 3 RGB).
        hidden_channels (`list[int]`, defaults to `[32, 64]`): encoder widths, one stride-2 stage each
            (the decoder mirrors them); `image_size` must be divisible by `2 ** len(hidden_channels)`.
        num_res_blocks (`int`, defaults to 1): residual blocks after each encoder stage and before each
            decoder stage.
        likelihood (`str`, defaults to `"bernoulli"`): p(x|z); `"bernoulli"` for binary images,
            `"gaussian"` for continuous ones, `"discretized_gaussian"` for 8-bit images (honest bits/dim).
        likelihood_scale (`float`, *optional*): fixed standard deviation of the Gaussian likelihoods;
            `None` learns a per-pixel scale. Ignored by `"bernoulli"`.
        dropout (`float`, defaults to 0.0): dropout inside the residual blocks.
        activation (`str`, defaults to `"silu"`): non-linearity of encoder and decoder.
    """

    image_size: int = 28
    num_channels: int = 1
    hidden_channels: list[int] | tuple[int, ...] = (32, 64)
    num_res_blocks: int = 1
    likelihood: str = "bernoulli"
    likelihood_scale: float | None = None
    dropout: float = 0.0
    activation: str = "silu"

    def _check_fields(self) -> None:
        check_int("image_size", self.image_size, minimum=1)
        check_int("num_channels", self.num_channels, minimum=1)
        check_int_list("hidden_channels", self.hidden_channels)
        check_int("num_res_blocks", self.num_res_blocks, minimum=0)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.likelihood_scale is not None:
            check_float("likelihood_scale", self.likelihood_scale, minimum=0.0, exclusive_minimum=True)
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        check_choice("activation", self.activation, ACTIVATIONS)
        factor = 2 ** len(self.hidden_channels)
        if self.image_size % factor != 0:
            raise ValueError(
                f"`image_size` must be divisible by 2 ** len(hidden_channels) = {factor}, got {self.image_size}"
            )

    @property
    def latent_grid_size(self) -> int:
        """Side of the encoder's output grid: image_size / 2 ** len(hidden_channels)."""
        return self.image_size // 2 ** len(self.hidden_channels)
