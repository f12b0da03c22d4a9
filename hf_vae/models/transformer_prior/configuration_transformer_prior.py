"""Configuration of the GPT-style transformer prior over token grids."""

from __future__ import annotations

from ...configuration_utils import TokenPriorConfig
from ...validation import check_bool, check_choice, check_float, check_int

POSITION_EMBEDDINGS = ("learned", "2d_sincos")


class TransformerPriorConfig(TokenPriorConfig):
    r"""Configuration of a decoder-only transformer over a square grid of integer tokens in raster order.

    The sequence is a start token (the class token of a conditional prior, a single BOS token otherwise)
    followed by the grid tokens; the output at each position is the distribution of the next grid token.
    The fields every token prior shares (`vocab_size`, `grid_size`, `num_classes`, `label_dropout`,
    `vqvae_name_or_path`, `vqvae_revision`, `token_source`, `pixel_levels`) are documented on
    `TokenPriorConfig`; with `num_classes` set, the start token is the class token (index `num_classes`:
    the null label).

    Args:
        num_layers (`int`, defaults to 4): transformer blocks (nanoGPT's `n_layer`).
        num_heads (`int`, defaults to 4): attention heads; must divide `hidden_size` (nanoGPT's `n_head`).
        hidden_size (`int`, defaults to 128): width of the residual stream (nanoGPT's `n_embd`).
        dropout (`float`, defaults to 0.0): dropout on embeddings, attention weights and residual branches.
        bias (`bool`, defaults to True): biases in the linear layers and layer norms.
        position_embedding (`str`, defaults to `"learned"`): `"learned"` (a table over the grid positions)
            or `"2d_sincos"` (fixed sin/cos of row and column; `hidden_size` must be divisible by 4).

    Configs saved before the refactor name the first three `n_layer`, `n_head`, `n_embd`; they still load.
    """

    model_type = "transformer_prior"
    legacy_field_names = {"n_layer": "num_layers", "n_head": "num_heads", "n_embd": "hidden_size"}
    # The transformers names of these fields, so generation utilities (caches) find them.
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads"}

    num_layers: int = 4
    num_heads: int = 4
    hidden_size: int = 128
    dropout: float = 0.0
    bias: bool = True
    position_embedding: str = "learned"

    def _check_fields(self) -> None:
        super()._check_fields()
        check_int("num_layers", self.num_layers, minimum=1)
        check_int("num_heads", self.num_heads, minimum=1)
        check_int("hidden_size", self.hidden_size, minimum=1)
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(f"`num_heads` must divide hidden_size={self.hidden_size}, got {self.num_heads!r}")
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        check_bool("bias", self.bias)
        check_choice("position_embedding", self.position_embedding, POSITION_EMBEDDINGS)
        if self.num_channels != 1:  # one token per grid position; colour pixels are the gated PixelCNN's
            raise ValueError(f"`num_channels` must be 1 for the transformer prior, got {self.num_channels!r}")
        if self.position_embedding == "2d_sincos" and self.hidden_size % 4 != 0:
            raise ValueError(
                f"`hidden_size` must be divisible by 4 for 2d_sincos position embeddings, got {self.hidden_size!r}"
            )
