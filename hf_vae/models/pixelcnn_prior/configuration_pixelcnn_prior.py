"""Configuration of the Gated PixelCNN prior over token grids (van den Oord et al. 2016)."""

from __future__ import annotations

from ...configuration_utils import HfVaeConfig

from ...validation import check_int
from ...modeling_utils import check_token_prior_fields


class PixelCNNPriorConfig(HfVaeConfig):
    r"""Configuration of a Gated PixelCNN over a square grid of integer tokens in raster order.

    The tokens are VQ-VAE codes (`vocab_size` = the codebook size) or quantized pixels (binarized MNIST:
    `vocab_size=2`). The fields shared by every token prior come first and carry the same names there.

    Args:
        vocab_size (`int`, defaults to 512): number of distinct tokens; ids live in [0, vocab_size).
        grid_size (`int`, defaults to 8): height and width of the square token grid.
        num_classes (`int`, *optional*): number of classes for class-conditional modelling; `None` is
            unconditional. A conditional prior also learns a null class (index `num_classes`).
        label_dropout (`float`, defaults to 0.0): probability that a training label is replaced by the
            null class, so one model is also unconditional (needed for classifier-free guidance).
        vqvae_name_or_path (`str`, *optional*): the VQ-VAE whose codes this prior models (recorded only).
        vqvae_revision (`str`, *optional*): its revision (recorded only).
        token_source (`str`, defaults to `"vqvae_codes"`): `"vqvae_codes"` or `"pixels"` (quantized pixels).
        pixel_levels (`int`, *optional*): for pixel tokens, the number of grey levels; token t is the pixel
            value t / (pixel_levels - 1). Must equal `vocab_size`; `None` fills it in. Must be `None` for codes.
        hidden_channels (`int`, defaults to 64): width of the vertical and horizontal stacks.
        num_layers (`int`, defaults to 8): gated layers; the first is type A (excludes the current token),
            the others type B. The receptive field grows by `kernel_size // 2` per layer.
        kernel_size (`int`, defaults to 3): odd size n of the (masked) n x n convolutions.
        output_channels (`int`, defaults to 256): width of the 1x1 output head before the logits.
    """

    model_type = "pixelcnn_prior"

    vocab_size: int = 512
    grid_size: int = 8
    num_classes: int | None = None
    label_dropout: float = 0.0
    vqvae_name_or_path: str | None = None
    vqvae_revision: str | None = None
    token_source: str = "vqvae_codes"
    pixel_levels: int | None = None
    hidden_channels: int = 64
    num_layers: int = 8
    kernel_size: int = 3
    output_channels: int = 256

    def _check_fields(self) -> None:
        check_token_prior_fields(self)
        check_int("hidden_channels", self.hidden_channels, minimum=1)
        check_int("num_layers", self.num_layers, minimum=1)
        check_int("kernel_size", self.kernel_size, minimum=3)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be an odd int >= 3, got {self.kernel_size!r}")
        check_int("output_channels", self.output_channels, minimum=1)
