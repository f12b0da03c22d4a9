"""Configuration of the Gated PixelCNN prior over token grids (van den Oord et al. 2016)."""

from __future__ import annotations

from ...configuration_utils import TokenPriorConfig
from ...validation import check_choice, check_float, check_int

#: What the head outputs per token: a softmax over the vocabulary, or (pixel tokens) a discretized logistic mixture.
OUTPUT_DISTRIBUTIONS = ("categorical", "discretized_logistic_mixture")
#: How tokens enter the network: a learned vector per token, or (pixel tokens) the pixel's value.
INPUT_EMBEDDINGS = ("table", "value")


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
        output_distribution (`str`, defaults to `"categorical"`): the distribution of each token given the ones
            before it: `"categorical"` (a softmax over `vocab_size` logits, the PixelCNN paper's), or, for pixel
            tokens, `"discretized_logistic_mixture"` (PixelCNN++'s: `num_mixtures` logistics integrated over the
            `pixel_levels` bins, 3 * num_mixtures outputs per colour instead of `vocab_size`; their exact log bin
            masses are the logits, so likelihood and sampling are unchanged). Nearby levels share mass, and a
            training step costs less than half the softmax head's (it scores each token's own level only).
        num_mixtures (`int`, defaults to 5): components of the logistic mixture.
        input_embedding (`str`, defaults to `"table"`): how tokens enter the network: `"table"`, a learned vector
            per token (and per colour); or, for pixel tokens, `"value"`: the level t / (pixel_levels - 1) scaled to
            [-1, 1] times a learned vector per colour, plus a bias (the PixelCNN paper's real-valued input). With
            256 levels a table learns each level on its own and leaves the levels a training set rarely shows
            untrained; values interpolate.
        dropout (`float`, defaults to 0.0): dropout probability on each layer's gated output, before its
            residual and skip 1x1 convolutions, in training mode only (a regulariser for small datasets;
            evaluation, `log_likelihood`, `score` and sampling with or without the cache run in eval mode).

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
    output_distribution: str = "categorical"
    num_mixtures: int = 5
    input_embedding: str = "table"
    dropout: float = 0.0

    def _check_fields(self) -> None:
        super()._check_fields()
        check_int("hidden_size", self.hidden_size, minimum=1)
        check_int("num_layers", self.num_layers, minimum=1)
        check_int("kernel_size", self.kernel_size, minimum=3)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be an odd int >= 3, got {self.kernel_size!r}")
        check_int("output_channels", self.output_channels, minimum=1)
        check_choice("output_distribution", self.output_distribution, OUTPUT_DISTRIBUTIONS)
        check_int("num_mixtures", self.num_mixtures, minimum=1)
        check_choice("input_embedding", self.input_embedding, INPUT_EMBEDDINGS)
        if self.input_embedding != "table" and self.token_source != "pixels":
            raise ValueError(f"`input_embedding` must be 'table' for VQ-VAE codes (token_source={self.token_source!r}), "
                             f"got {self.input_embedding!r}")
        if self.output_distribution != "categorical" and self.token_source != "pixels":
            raise ValueError(f"`output_distribution` must be 'categorical' for VQ-VAE codes (token_source="
                             f"{self.token_source!r}), got {self.output_distribution!r}")
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        # Colour: the channels of every layer split into `num_channels` groups, one per colour (R, G, B).
        for name in ("hidden_size", "output_channels"):
            if getattr(self, name) % self.num_channels != 0:
                raise ValueError(f"`{name}` must be a multiple of num_channels={self.num_channels}, got {getattr(self, name)!r}")
