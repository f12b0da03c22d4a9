"""Configuration of the GPT-style transformer prior over token grids."""

from __future__ import annotations

from ...configuration_utils import HfVaeConfig

from ...validation import check_choice, check_float, check_int
from ...modeling_utils import check_token_prior_fields

POSITION_EMBEDDINGS = ("learned", "2d_sincos")


class TransformerPriorConfig(HfVaeConfig):
    r"""Configuration of a decoder-only transformer over a square grid of integer tokens in raster order.

    The sequence is a start token (the class token of a conditional prior, a single BOS token otherwise)
    followed by the grid tokens; the output at each position is the distribution of the next grid token.
    The fields shared by every token prior come first and carry the same names there.

    Args:
        vocab_size (`int`, defaults to 512): number of distinct tokens; ids live in [0, vocab_size).
        grid_size (`int`, defaults to 8): height and width of the square token grid.
        num_classes (`int`, *optional*): number of classes for class-conditional modelling; `None` is
            unconditional. The start token is then the class token, with index `num_classes` the null class.
        label_dropout (`float`, defaults to 0.0): probability that a training label is replaced by the
            null class, so one model is also unconditional (needed for classifier-free guidance).
        vqvae_name_or_path (`str`, *optional*): the VQ-VAE whose codes this prior models (recorded only).
        vqvae_revision (`str`, *optional*): its revision (recorded only).
        token_source (`str`, defaults to `"vqvae_codes"`): `"vqvae_codes"` or `"pixels"` (quantized pixels).
        pixel_levels (`int`, *optional*): for pixel tokens, the number of grey levels; token t is the pixel
            value t / (pixel_levels - 1). Must equal `vocab_size`; `None` fills it in. Must be `None` for codes.
        n_layer (`int`, defaults to 4): transformer blocks.
        n_head (`int`, defaults to 4): attention heads; must divide `n_embd`.
        n_embd (`int`, defaults to 128): width of the residual stream.
        dropout (`float`, defaults to 0.0): dropout on embeddings, attention weights and residual branches.
        bias (`bool`, defaults to True): biases in the linear layers and layer norms.
        position_embedding (`str`, defaults to `"learned"`): `"learned"` (a table over the grid positions)
            or `"2d_sincos"` (fixed sin/cos of row and column; `n_embd` must be divisible by 4).
    """

    model_type = "transformer_prior"
    # The transformers names of the GPT fields, so generation utilities (caches) find them.
    attribute_map = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head"}

    vocab_size: int = 512
    grid_size: int = 8
    num_classes: int | None = None
    label_dropout: float = 0.0
    vqvae_name_or_path: str | None = None
    vqvae_revision: str | None = None
    token_source: str = "vqvae_codes"
    pixel_levels: int | None = None
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    position_embedding: str = "learned"

    def _check_fields(self) -> None:
        check_token_prior_fields(self)
        check_int("n_layer", self.n_layer, minimum=1)
        check_int("n_head", self.n_head, minimum=1)
        check_int("n_embd", self.n_embd, minimum=1)
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"`n_head` must divide n_embd={self.n_embd}, got {self.n_head!r}")
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        if not isinstance(self.bias, bool):
            raise ValueError(f"`bias` must be a bool, got {self.bias!r}")
        check_choice("position_embedding", self.position_embedding, POSITION_EMBEDDINGS)
        if self.position_embedding == "2d_sincos" and self.n_embd % 4 != 0:
            raise ValueError(f"`n_embd` must be divisible by 4 for 2d_sincos position embeddings, got {self.n_embd!r}")
