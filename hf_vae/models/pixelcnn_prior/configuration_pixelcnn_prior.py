"""Configuration of the Gated PixelCNN prior over token grids (van den Oord et al. 2016)."""

from __future__ import annotations

from ...configuration_utils import TokenPriorConfig
from ...validation import check_int


class PixelCNNPriorConfig(TokenPriorConfig):
    r"""Configuration of a Gated PixelCNN over a square grid of integer tokens in raster order.

    The tokens are VQ-VAE codes (`vocab_size` = the codebook size) or quantized pixels (binarized MNIST:
    `vocab_size=2`). The fields every token prior shares (`vocab_size`, `grid_size`, `num_classes`,
    `label_dropout`, `vqvae_name_or_path`, `vqvae_revision`, `token_source`, `pixel_levels`) are documented
    on `TokenPriorConfig`.

    Args:
        hidden_size (`int`, defaults to 64): channels of the vertical and horizontal stacks (saved before
            the refactor as `hidden_channels`, which still loads).
        num_layers (`int`, defaults to 8): gated layers; the first is type A (excludes the current token),
            the others type B. The receptive field grows by `kernel_size // 2` per layer.
        kernel_size (`int`, defaults to 3): odd size n of the (masked) n x n convolutions.
        output_channels (`int`, defaults to 256): width of the 1x1 output head before the logits.

    With `num_channels=3` (RGB pixel tokens, `token_source="pixels"`, e.g. `vocab_size=256`) every layer's channels
    split into three groups, one per colour, and the convolutions that read the current pixel are masked so
    that R sees no colour of its own pixel, G sees R and B sees R and G (the channel masks of the PixelCNN
    paper); `hidden_size` and `output_channels` must then be multiples of 3.
    """

    model_type = "pixelcnn_prior"
    legacy_field_names = {"hidden_channels": "hidden_size"}

    hidden_size: int = 64
    num_layers: int = 8
    kernel_size: int = 3
    output_channels: int = 256

    def _check_fields(self) -> None:
        super()._check_fields()
        check_int("hidden_size", self.hidden_size, minimum=1)
        check_int("num_layers", self.num_layers, minimum=1)
        check_int("kernel_size", self.kernel_size, minimum=3)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be an odd int >= 3, got {self.kernel_size!r}")
        check_int("output_channels", self.output_channels, minimum=1)
        # Colour: the channels of every layer split into `num_channels` groups, one per colour (R, G, B).
        for name in ("hidden_size", "output_channels"):
            if getattr(self, name) % self.num_channels != 0:
                raise ValueError(f"`{name}` must be a multiple of num_channels={self.num_channels}, got {getattr(self, name)!r}")
