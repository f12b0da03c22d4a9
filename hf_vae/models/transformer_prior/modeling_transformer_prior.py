"""A GPT-style transformer prior over token grids as a Hugging Face model (nanoGPT's model.py, on a grid).

Read top-down: position tables -> attention with a key/value cache -> MLP -> block ->
`TransformerPriorModel` (forward = exact NLL per token, then `log_likelihood` and the logits function
`sample` draws with; `sample`, `bits_per_token` and `bits_per_dim` come from `TokenPriorPreTrainedModel`).
Sampling runs through `hf_vae/sampling.py`, with or without the cache.

The sequence for a grid x_0 .. x_{N-1} (N = H * W, raster order) is [start, x_0, ..., x_{N-2}]: the
output at sequence position p is the distribution of x_p, so logits line up with the grid tokens. The
start token is the class token of a conditional prior (index `num_classes` = the null label, for label
dropout and classifier-free guidance) or a single BOS token. Position p carries the (row, column) of
the token it predicts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, GenerationMixin
from transformers import initialization as init

from ...modeling_outputs import TokenPriorOutput
from ...modeling_utils import TokenPriorPreTrainedModel
from ...sampling import LogitsFn
from ...validation import check_bool, check_generator, check_indices
from .configuration_transformer_prior import TransformerPriorConfig


def sincos_2d_table(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed (grid_size**2, dim) table in raster order: half the channels encode the row, half the column,
    each as [sin, cos] at frequencies 1 / 10000^(i / (dim/4)) (the 2-D table of MAE / ViT)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(positions):
        angles = positions.reshape(-1, 1) * omega  # (N, dim/4)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


class SinCos2dPositionEmbedding(nn.Module):
    """Position index -> fixed 2-D sin/cos vector. A persistent buffer, also rebuilt by `_init_weights`
    (transformers 5 builds models on the meta device, where a buffer set in __init__ holds no values)."""

    def __init__(self, grid_size: int, dim: int):
        super().__init__()
        self.grid_size, self.dim = grid_size, dim
        self.register_buffer("table", sincos_2d_table(grid_size, dim), persistent=True)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; with a cache, the new keys/values are appended to the past ones."""

    def __init__(self, config: TransformerPriorConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.bias)
        self.c_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.bias)
        self.c_proj.is_residual_projection = True  # scaled init (GPT-2), see `_init_weights`
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, past_key_values: DynamicCache | None, past_length: int) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, 3C) -> three (B, num_heads, T, head_dim)
        q, k, v = (t.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        if past_length == 0:
            mask, is_causal = None, T > 1
        elif T == 1:
            mask, is_causal = None, False  # one new query may attend to every cached key
        else:
            # Query t sits at absolute position past_length + t: it sees keys up to there (bottom-right causal).
            mask, is_causal = torch.ones(T, k.shape[2], dtype=torch.bool, device=x.device).tril(past_length), False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: TransformerPriorConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_size, 4 * config.hidden_size, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.hidden_size, config.hidden_size, bias=config.bias)
        self.c_proj.is_residual_projection = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: TransformerPriorConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.hidden_size, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, past_key_values, past_length):
        x = x + self.attn(self.ln_1(x), past_key_values, past_length)
        return x + self.mlp(self.ln_2(x))


class TransformerPriorPreTrainedModel(TokenPriorPreTrainedModel):
    config_class = TransformerPriorConfig
    _no_split_modules = ["Block"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2 / nanoGPT init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * num_layers). The
        # torch.nn.init calls are guarded by transformers, so loaded weights are never overwritten.
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.config.num_layers) if getattr(module, "is_residual_projection", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, SinCos2dPositionEmbedding):
            init.copy_(module.table, sincos_2d_table(module.grid_size, module.dim))


class TransformerPriorModel(TransformerPriorPreTrainedModel, GenerationMixin):
    """Decoder-only transformer p(x) = prod_i p(x_i | x_<i, class) over a (grid_size x grid_size) token grid.

    `forward(indices)` returns the mean NLL per token (`loss`), the logits (B, sequence, vocab_size)
    and the exact per-example log-likelihood in nats; `use_cache=True` also returns the key/value cache.
    `sample` (from `TokenPriorPreTrainedModel`) also takes `use_cache` (default True; same draws).
    """

    card_template = "transformer_prior.md.j2"
    decoding_options = frozenset({"use_cache"})
    sample_options = TokenPriorPreTrainedModel.sample_options | decoding_options

    def __init__(self, config: TransformerPriorConfig):
        super().__init__(config)
        self.num_positions = config.grid_size**2
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        # Start tokens: one per class plus the null label, or a single BOS token when unconditional.
        self.start_embedding = nn.Embedding(1 if config.num_classes is None else config.num_classes + 1, config.hidden_size)
        if config.position_embedding == "learned":
            self.position_embedding = nn.Embedding(self.num_positions, config.hidden_size)
        else:
            self.position_embedding = SinCos2dPositionEmbedding(config.grid_size, config.hidden_size)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, bias=config.bias)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embedding

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    # -- transformers `generate` ------------------------------------------------------------------------
    # GenerationMixin names its running sequence `input_ids` (the text convention) wherever the model's
    # main input is called something else; these two methods translate at its edges, so callers and
    # `forward` only ever see `indices`.

    def generate(self, indices: torch.Tensor, **kwargs):
        """`GenerationMixin.generate` from a raster-order prefix `indices` (B, L): returns (B, L + new tokens)
        (or generate's output object with `return_dict_in_generate=True`).

        `generate(indices=prefix, labels=..., max_new_tokens=N - L)` completes grids (N = grid_size**2); an
        empty prefix (B, 0) samples whole ones. It decodes with the key/value cache (`use_cache=False`
        raises); `sample` is the hf_vae way (guidance, with or without the cache).
        """
        kwargs["input_ids"] = indices  # the sequence generate() grows, under its own name
        return super().generate(indices, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, labels=None, **kwargs):
        """`GenerationMixin` hook: the default one, with the running sequence handed to `forward` as
        `indices` and the class `labels` (which the default never forwards) passed along."""
        if kwargs.get("use_cache") is False:
            raise ValueError("`use_cache` must be True for generate (it decodes with the key/value cache), got False")
        model_inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        model_inputs["indices"] = model_inputs.pop("input_ids")
        model_inputs["labels"] = labels
        return model_inputs

    # -- the network ------------------------------------------------------------------------------

    def _run(self, tokens: torch.Tensor, start_ids: torch.Tensor, past_key_values: DynamicCache | None):
        """Grid tokens in raster order (B, T) -> logits (B, T', V).

        With an empty cache the sequence is [start, tokens] cut to the grid's N positions (T' =
        min(T + 1, N)); otherwise `tokens` continue the cached sequence (T' = T).
        """
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        x = self.token_embedding(tokens)  # (B, T, hidden_size)
        if past_length == 0:
            x = torch.cat([self.start_embedding(start_ids)[:, None], x], dim=1)[:, : self.num_positions]
        if past_length + x.shape[1] > self.num_positions:
            raise ValueError(
                f"`indices` must end within the grid: the cache holds {past_length} of {self.num_positions} "
                f"positions, got {tokens.shape[1]} more tokens"
            )
        positions = torch.arange(past_length, past_length + x.shape[1], device=x.device)
        x = self.drop(x + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x, past_key_values, past_length)
        # fp32 logits even under bf16 autocast: the likelihood sums a log-softmax over every position.
        return self.lm_head(self.ln_f(x)).float()

    def forward(
        self,
        indices: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        past_key_values: DynamicCache | None = None,
        use_cache: bool = False,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        attention_mask: torch.Tensor | None = None,
    ) -> TokenPriorOutput | tuple:
        """Exact negative log-likelihood of token grids (or raster-order prefixes of them).

        Args:
            indices: (B, grid_size, grid_size) integer tokens in [0, vocab_size), or the same flattened
                in raster order (B, N). When decoding with a cache (`use_cache=True` or `past_key_values`,
                as `generate` does) a raster-order prefix (B, L < N) is accepted too. From an empty cache
                the output at position p is p(x_p | x_<p) for p = 0 .. min(L, N - 1); with a non-empty
                cache, `indices` continue the cached sequence.
            labels: (B,) class ids in [0, num_classes) for a conditional prior; None = the null label
                (needs `label_dropout > 0`). Must be None for an unconditional prior.
            past_key_values: a `DynamicCache` to continue; `use_cache=True` creates one when None.
            use_cache: return the key/value cache in `past_key_values`.
            generator: drives label dropout in training (reproducible losses).
            return_dict: return a `TokenPriorOutput` (default) or a tuple.
            attention_mask: accepted for `GenerationMixin.generate`; must be None or all ones (no padding).

        Returns the loss and log-likelihood of the given tokens when the cache starts empty (a prefix
        scores its own tokens); `None` when continuing a cache.
        """
        decoding = use_cache or past_key_values is not None
        check_indices(indices, self.config.vocab_size, self.config.grid_size, flat="prefix" if decoding else "full")
        check_generator(generator)
        if attention_mask is not None and not bool(torch.all(attention_mask == 1)):
            raise ValueError("`attention_mask` must be None or all ones (grids have no padding), got a mask with zeros")
        if past_key_values is not None and not isinstance(past_key_values, DynamicCache):
            got = type(past_key_values).__name__
            raise ValueError(f"`past_key_values` must be a transformers DynamicCache or None, got {got}")
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        tokens = indices.flatten(1).to(self.device)  # (B, L) raster order
        start_ids = self._condition_ids(labels, tokens.shape[0], generator, drop_labels=self.training)
        continuing = past_key_values is not None and past_key_values.get_seq_length() > 0
        logits = self._run(tokens, start_ids, past_key_values)

        loss = log_likelihood = None
        if not continuing:
            length = tokens.shape[1]
            token_nll = F.cross_entropy(logits[:, :length].transpose(1, 2), tokens, reduction="none")  # (B, L)
            log_likelihood = -token_nll.sum(dim=1)
            loss = token_nll.mean() if length > 0 else None
        output = TokenPriorOutput(
            loss=loss,
            logits=logits,
            log_likelihood=log_likelihood,
            past_key_values=past_key_values if use_cache else None,
        )
        return output if return_dict else output.to_tuple()

    # -- public methods (`bits_per_token`, `bits_per_dim`: `TokenPriorPreTrainedModel`) -------------

    @torch.no_grad()
    def log_likelihood(self, indices: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(indices | labels) per example in nats, shape (B,) (no label dropout).

        `indices`: grids (B, H, W), or flattened in raster order (B, H * W).
        """
        check_indices(indices, self.config.vocab_size, self.config.grid_size, flat="full")
        tokens = indices.flatten(1).to(self.device)
        logits = self._run(tokens, self._condition_ids(labels, tokens.shape[0]), None)
        return -F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(dim=1)

    def _next_token_logits(self, condition_ids: torch.Tensor, use_cache: bool = True) -> LogitsFn:
        """`sample(..., use_cache=True)` feeds one token per step against a key/value cache (O(N) work per
        step); `use_cache=False` reruns the whole prefix (O(N^2)). The draws are the same."""
        check_bool("use_cache", use_cache)

        def logits_fn(tokens, position, cache):
            if use_cache:
                cache = DynamicCache() if cache is None else cache
                # Position 0 feeds the start token alone; position p feeds x_{p-1}, the last token drawn.
                logits = self._run(tokens[:, max(position - 1, 0) : position], condition_ids, cache)
            else:
                logits = self._run(tokens[:, :position], condition_ids, None)
            return logits[:, -1], cache

        return logits_fn
