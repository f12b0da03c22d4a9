"""A GPT-style transformer prior over token grids as a Hugging Face model (nanoGPT's model.py, on a grid).

Read top-down: position tables -> attention with a key/value cache -> MLP -> block ->
`TransformerPriorModel` (forward = exact NLL per token, then `log_likelihood`, `bits_per_token`,
`bits_per_dim`, `sample`). Sampling runs through `hf_vae/sampling.py`, with or without the cache.

The sequence for a grid x_0 .. x_{N-1} (N = H * W, raster order) is [start, x_0, ..., x_{N-2}]: the
output at sequence position p is the distribution of x_p, so logits line up with the grid tokens. The
start token is the class token of a conditional prior (index `num_classes` = null class, for label
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

from ...distributions import uniform
from ...modeling_outputs import TokenPriorOutput
from ...modeling_utils import TokenPriorPreTrainedModel
from ...validation import check_generator, check_indices, check_labels
from ...sampling import sample_tokens
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
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_projection = True  # scaled init (GPT-2), see `_init_weights`
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, past_key_values: DynamicCache | None, past_length: int) -> torch.Tensor:
        B, T, C = x.shape
        # (B, T, 3C) -> three (B, n_head, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
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
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.is_residual_projection = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: TransformerPriorConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, past_key_values, past_length):
        x = x + self.attn(self.ln_1(x), past_key_values, past_length)
        return x + self.mlp(self.ln_2(x))


class TransformerPriorPreTrainedModel(TokenPriorPreTrainedModel):
    config_class = TransformerPriorConfig
    _no_split_modules = ["Block"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2 / nanoGPT init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer). The
        # torch.nn.init calls are guarded by transformers, so loaded weights are never overwritten.
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if getattr(module, "is_residual_projection", False) else 0.02
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

    `forward(input_ids)` returns the mean NLL per token (`loss`), the logits (B, sequence, vocab_size)
    and the exact per-example log-likelihood in nats; `use_cache=True` also returns the key/value cache.
    """

    card_template = "transformer_prior.md.j2"

    def __init__(self, config: TransformerPriorConfig):
        super().__init__(config)
        self.num_positions = config.grid_size**2
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        # Start tokens: one per class plus the null class, or a single BOS token when unconditional.
        self.start_embedding = nn.Embedding(1 if config.num_classes is None else config.num_classes + 1, config.n_embd)
        if config.position_embedding == "learned":
            self.position_embedding = nn.Embedding(self.num_positions, config.n_embd)
        else:
            self.position_embedding = SinCos2dPositionEmbedding(config.grid_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embedding

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def prepare_inputs_for_generation(self, input_ids, labels=None, **kwargs):
        """`GenerationMixin` hook: the default one, plus the class `labels` (which it never forwards).

        So `generate(input_ids=prefix (B, L), labels=..., max_new_tokens=N - L)` completes grids; an empty
        prefix (B, 0) samples whole ones. It decodes with the key/value cache (forward accepts prefixes
        only then); `sample` is the hf_vae way (guidance, with or without the cache).
        """
        if kwargs.get("use_cache") is False:
            raise ValueError("`use_cache` must be True for generate (it decodes with the key/value cache), got False")
        model_inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        model_inputs["labels"] = labels
        return model_inputs

    # -- checks and conditioning ----------------------------------------------------------------------

    def _start_ids(self, labels, batch_size: int, generator=None, drop_labels: bool = False) -> torch.Tensor:
        """Labels (B,) -> start-token ids (B,): the class tokens (null where dropped), or BOS (0) if unconditional."""
        check_labels(labels, self.config.num_classes, batch_size)
        if self.config.num_classes is None:
            return torch.zeros(batch_size, dtype=torch.long, device=self.device)
        if labels is None:
            if self.config.label_dropout == 0:
                raise ValueError(
                    "`labels` are required: this prior is class-conditional and was configured without label "
                    "dropout (label_dropout=0), so it has no unconditional mode; got None"
                )
            return torch.full((batch_size,), self.null_class, dtype=torch.long, device=self.device)
        labels = labels.to(self.device)
        if drop_labels and self.config.label_dropout > 0:
            drop = uniform((batch_size,), generator=generator, device=labels.device) < self.config.label_dropout
            labels = labels.masked_fill(drop, self.null_class)
        return labels

    # -- the network ------------------------------------------------------------------------------

    def _run(self, input_ids: torch.Tensor, start_ids: torch.Tensor, past_key_values: DynamicCache | None):
        """Grid tokens (B, T) -> logits (B, T', V).

        With an empty cache the sequence is [start, input_ids] cut to the grid's N positions (T' =
        min(T + 1, N)); otherwise `input_ids` continue the cached sequence (T' = T).
        """
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        x = self.token_embedding(input_ids)  # (B, T, n_embd)
        if past_length == 0:
            x = torch.cat([self.start_embedding(start_ids)[:, None], x], dim=1)[:, : self.num_positions]
        if past_length + x.shape[1] > self.num_positions:
            raise ValueError(
                f"`input_ids` must end within the grid: the cache holds {past_length} of {self.num_positions} "
                f"positions, got {input_ids.shape[1]} more tokens"
            )
        positions = torch.arange(past_length, past_length + x.shape[1], device=x.device)
        x = self.drop(x + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x, past_key_values, past_length)
        # fp32 logits even under bf16 autocast: the likelihood sums a log-softmax over every position.
        return self.lm_head(self.ln_f(x)).float()

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        past_key_values: DynamicCache | None = None,
        use_cache: bool = False,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        attention_mask: torch.Tensor | None = None,
    ) -> TokenPriorOutput | tuple:
        """Exact negative log-likelihood of token grids (or raster-order prefixes of them).

        Args:
            input_ids: (B, grid_size, grid_size) integer tokens in [0, vocab_size), or the same flattened
                in raster order (B, N). When decoding with a cache (`use_cache=True` or `past_key_values`,
                as `generate` does) a raster-order prefix (B, L < N) is accepted too. From an empty cache
                the output at position p is p(x_p | x_<p) for p = 0 .. min(L, N - 1); with a non-empty
                cache, `input_ids` continue the cached sequence.
            labels: (B,) class ids in [0, num_classes) for a conditional prior; None = the null class
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
        flat = "prefix" if decoding else "full"
        check_indices(input_ids, self.config.vocab_size, self.config.grid_size, "input_ids", flat=flat)
        check_generator(generator)
        if attention_mask is not None and not bool(torch.all(attention_mask == 1)):
            raise ValueError("`attention_mask` must be None or all ones: grids have no padding")
        if past_key_values is not None and not isinstance(past_key_values, DynamicCache):
            got = type(past_key_values).__name__
            raise ValueError(f"`past_key_values` must be a transformers DynamicCache or None, got {got}")
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        tokens = input_ids.flatten(1).to(self.device)  # (B, L) raster order
        start_ids = self._start_ids(labels, tokens.shape[0], generator, drop_labels=self.training)
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

    # -- public methods -------------------------------------------------------------------------------

    @torch.no_grad()
    def log_likelihood(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(input_ids | labels) per example in nats, shape (B,) (no label dropout).

        `input_ids`: grids (B, H, W), or flattened in raster order (B, H * W).
        """
        check_indices(input_ids, self.config.vocab_size, self.config.grid_size, "input_ids", flat="full")
        tokens = input_ids.flatten(1).to(self.device)
        logits = self._run(tokens, self._start_ids(labels, tokens.shape[0]), None)
        return -F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(dim=1)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        labels: torch.Tensor | int | None = None,
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        progress: bool = True,
    ) -> torch.Tensor:
        """Draw `num_samples` token grids (N, H, W) in raster order through `hf_vae.sampling.sample_tokens`.

        Args:
            labels: (N,) class ids, or one int for all samples, for a conditional prior; None samples the
                unconditional model (null class, needs `label_dropout > 0`).
            guidance_scale: classifier-free guidance scale; != 1 needs `labels` and `label_dropout > 0`.
            temperature, top_k, top_p: see `hf_vae.sampling.sample_from_logits`.
            generator: drives every draw (reproducible samples).
            use_cache: feed one token per step against a key/value cache (O(N) work per step) instead of
                rerunning the whole prefix (O(N^2)); the draws are the same.
            progress: show a progress bar over the H * W positions.
        """
        labels, guided = self._check_sampling(num_samples, labels, temperature, top_k, top_p, guidance_scale, generator)
        start_ids = self._start_ids(labels, num_samples)
        if guided:  # one unconditional (null-class) row per sample for classifier-free guidance
            start_ids = torch.cat([start_ids, torch.full_like(start_ids, self.null_class)])

        def logits_fn(tokens, position, cache):
            if use_cache:
                cache = DynamicCache() if cache is None else cache
                # Position 0 feeds the start token alone; position p feeds x_{p-1}, the last token drawn.
                logits = self._run(tokens[:, max(position - 1, 0) : position], start_ids, cache)
            else:
                logits = self._run(tokens[:, :position], start_ids, None)
            return logits[:, -1], cache

        tokens = sample_tokens(
            logits_fn, num_samples, self.num_positions, temperature=temperature, top_k=top_k, top_p=top_p,
            guidance_scale=guidance_scale, generator=generator, device=self.device, progress=progress,
        )
        return tokens.view(num_samples, self.config.grid_size, self.config.grid_size)
