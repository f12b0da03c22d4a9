"""A GPT-style transformer prior over token grids as a Hugging Face model (nanoGPT's model.py, on a grid).

Read top-down: position tables -> attention with a key/value cache -> MLP -> block -> `PriorTokenDraw`
(the logits processor through which transformers' `generate` draws as `sample` does) ->
`TransformerPriorModel` (`generate`, forward = exact NLL per token, then `log_likelihood` and the logits
function `sample` draws with; `sample`, `bits_per_token` and `bits_per_dim` come from
`TokenPriorPreTrainedModel`). Sampling runs through `hf_vae/sampling.py`, with or without the cache.

The sequence for a grid x_0 .. x_{N-1} (N = H * W, raster order) is [start, x_0, ..., x_{N-2}]: the
output at sequence position p is the distribution of x_p, so logits line up with the grid tokens. The
start token is the class token of a conditional prior (index `num_classes` = the null label, for label
dropout and classifier-free guidance) or a single BOS token. Position p carries the (row, column) of
the token it predicts.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, GenerationConfig, GenerationMixin, LogitsProcessor, LogitsProcessorList
from transformers import initialization as init

from ...modeling_outputs import TokenPriorOutput
from ...modeling_utils import TokenPriorPreTrainedModel
from ...sampling import LogitsFn, check_sampling_args, is_guided, sample_from_logits
from ...validation import check_bool, check_generator, check_indices, check_int, check_labels
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


class PriorTokenDraw(LogitsProcessor):
    """The last logits processor of `TransformerPriorModel.generate`: it draws each next token exactly as
    `sample` does (`hf_vae.sampling.sample_tokens`: guidance, temperature, top-k, top-p, then the
    inverse-CDF draw with `generator`; the argmax when `do_sample=False`) and returns scores where only the
    drawn token is finite, so generate's greedy step reads it back and its torch.multinomial never runs.

    With `guidance_scale != 1` the batch holds 2B rows (B conditional, then the same B with the null
    label); the guided logits uncond + s * (cond - uncond) pick one token per pair, given to both rows.
    """

    def __init__(self, *, do_sample: bool, temperature: float, top_k: int | None, top_p: float | None,
                 guidance_scale: float, generator: torch.Generator | None):
        self.do_sample, self.temperature, self.top_k, self.top_p = do_sample, temperature, top_k, top_p
        self.guidance_scale, self.generator = guidance_scale, generator

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float()  # (rows, vocab_size)
        guided = is_guided(self.guidance_scale)
        if guided:
            cond, uncond = logits.chunk(2)
            logits = uncond + self.guidance_scale * (cond - uncond)
        if self.do_sample:
            tokens = sample_from_logits(logits, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                                        generator=self.generator)
        else:
            tokens = logits.argmax(dim=-1)
        tokens = tokens.repeat(2) if guided else tokens  # (rows,)
        return torch.full_like(scores, float("-inf")).scatter_(1, tokens[:, None], 0.0)


class TransformerPriorPreTrainedModel(TokenPriorPreTrainedModel):
    config_class = TransformerPriorConfig
    _no_split_modules = ["Block"]
    # `gradient_checkpointing_enable()` sets the flag and `_gradient_checkpointing_func` that `_run` reads
    # (by hand rather than a `GradientCheckpointingLayer`, which would drop a key/value cache in training mode).
    supports_gradient_checkpointing = True
    gradient_checkpointing = False

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
    `sample` (from `TokenPriorPreTrainedModel`) also takes `use_cache` (default True; same draws);
    `generate` (transformers') draws the same tokens for the same seed, from no `input_ids`.
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
        # `generate` samples whole grids by default, as `sample` does (folders saved before this have
        # neither field; `generate` falls back to the same values).
        self.generation_config.update(do_sample=True, max_length=self.num_positions)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embedding

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    # -- transformers `generate` ------------------------------------------------------------------------
    # GenerationMixin names its running sequence `input_ids` (the text convention) wherever the model's
    # main input is called something else; `generate` and `prepare_inputs_for_generation` translate at its
    # edges, so callers and `forward` only ever see `indices`. The start token is not a grid token: it is
    # the class token of `labels` (the null label, or the BOS token of an unconditional prior), fed through
    # `start_ids`, so generation needs no `bos_token_id` and may start from an empty grid.

    def generate(self, indices: torch.Tensor | None = None, generation_config: GenerationConfig | None = None, *,
                 labels=None, num_samples: int | None = None, generator: torch.Generator | None = None, **kwargs):
        """`GenerationMixin.generate` over token grids: returns (B, L + new tokens) in raster order (or
        generate's output object with `return_dict_in_generate=True`).

        `generate(labels=[3, 7])` or `generate(num_samples=4)` samples whole grids from nothing (B = the
        number of labels or `num_samples`, 1 by default; add `.view(-1, grid_size, grid_size)`);
        `generate(prefix, labels=...)` completes raster-order prefixes (B, L). Generation stops at the end of
        the grid (`generation_config.max_length = grid_size**2`) unless `max_new_tokens` says sooner.

        Each token is drawn as `sample` draws it (`hf_vae.sampling`): `do_sample` (default True; False =
        greedy), `temperature`, `top_k`, `top_p` and `guidance_scale` from the kwargs or the generation config,
        where a field left unset takes `sample`'s default (top-k and top-p off), not transformers' text
        defaults (top_k=50). `guidance_scale != 1` is the prior's classifier-free guidance against its null
        label (it needs `labels` and `label_dropout > 0`), never transformers' text guidance. So
        `generate(labels=y, generator=torch.Generator().manual_seed(s))` returns the tokens of
        `sample(len(y), labels=y, generator=torch.Generator().manual_seed(s))`. Without `generator`, both draw
        from torch's global RNG (transformers' convention): `torch.manual_seed(s)` (or `transformers.set_seed`)
        before each call gives the same equality. With guidance, an output object's `sequences` hold the B
        samples, its `logits` all 2B rows (conditional, then null label), its `scores` the drawn tokens only.
        """
        config = copy.deepcopy(generation_config if generation_config is not None else self.generation_config)
        model_kwargs = config.update(**kwargs)  # generation fields land on `config`, model inputs stay

        def setting(name, default, off=None):
            value = next((v for v in (getattr(config, name), getattr(self.generation_config, name)) if v is not None), default)
            return None if value == off else value  # transformers' "off" values (top_k=0, top_p=1) -> None

        do_sample, temperature, guidance_scale = setting("do_sample", True), setting("temperature", 1.0), setting("guidance_scale", 1.0)
        top_k, top_p = setting("top_k", None, off=0), setting("top_p", None, off=1.0)
        check_bool("do_sample", do_sample)
        check_sampling_args(temperature, top_k, top_p, guidance_scale)
        check_generator(generator)
        if (config.num_beams or 1) != 1:
            raise ValueError(f"`num_beams` must be 1 (grids are sampled or decoded greedily), got {config.num_beams!r}")
        if indices is None:  # also under transformers' name
            indices = model_kwargs.pop("input_ids", None)
        if indices is None:
            sized = isinstance(labels, (list, tuple, torch.Tensor)) and num_samples is None
            num_samples = len(labels) if sized else 1 if num_samples is None else num_samples
            check_int("num_samples", num_samples, minimum=1)
            indices = torch.zeros(num_samples, 0, dtype=torch.long, device=self.device)
        elif num_samples is not None:
            raise ValueError(f"`num_samples` must be None when `indices` are given (one sample per row), got {num_samples!r}")
        self._check_guidance(guidance_scale, labels)
        start_ids = self._condition_ids(labels, indices.shape[0])  # (B,): checks the labels
        # num_return_sequences copies each row in place (transformers' order); done here, as generate's
        # greedy step (below) refuses it.
        copies = config.num_return_sequences or 1
        indices, start_ids = indices.repeat_interleave(copies, dim=0), start_ids.repeat_interleave(copies)
        guided = is_guided(guidance_scale)
        if guided:
            if self.config.label_dropout == 0:
                raise ValueError("`guidance_scale` must be 1 unless the prior was trained with label dropout "
                                 f"(label_dropout=0), got {guidance_scale!r}")
            # The rows of `sample_tokens`: the B conditional ones, then the same B with the null label.
            indices = torch.cat([indices, indices])
            start_ids = torch.cat([start_ids, torch.full_like(start_ids, self.null_label)])
        if config.max_new_tokens is None and config.max_length is None and self.generation_config.max_length is None:
            config.max_new_tokens = self.num_positions - indices.shape[1]  # a folder saved without max_length
        # transformers' own sampling, warpers and text guidance stay off: the last processor has drawn the
        # token, so generate's greedy step only reads it back (these are its neutral values for greedy).
        config.update(do_sample=False, temperature=1.0, top_k=50, top_p=1.0, guidance_scale=1.0, num_return_sequences=1)
        processors = LogitsProcessorList(model_kwargs.pop("logits_processor", None) or [])
        processors.append(PriorTokenDraw(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                                         guidance_scale=guidance_scale, generator=generator))
        model_kwargs.update(input_ids=indices, start_ids=start_ids)  # the sequence generate() grows, under its own name
        output = super().generate(indices, generation_config=config, logits_processor=processors, **model_kwargs)
        if not guided:
            return output
        if isinstance(output, torch.Tensor):
            return output[: output.shape[0] // 2]
        output.sequences = output.sequences[: output.sequences.shape[0] // 2]
        return output

    def prepare_inputs_for_generation(self, input_ids, start_ids=None, **kwargs):
        """`GenerationMixin` hook: the default one, with the running sequence handed to `forward` as
        `indices` and the start-token ids (which the default never forwards) passed along."""
        if kwargs.get("use_cache") is False:
            raise ValueError("`use_cache` must be True for generate (it decodes with the key/value cache), got False")
        model_inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        model_inputs["indices"] = model_inputs.pop("input_ids")
        model_inputs["start_ids"] = start_ids
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
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled() and past_key_values is None:
                # `gradient_checkpointing_enable()`: keep only the block's input and recompute it in the
                # backward pass (torch restores the RNG, so dropout draws the same). Never with a cache,
                # which the recomputation would append to a second time.
                x = self._gradient_checkpointing_func(block.__call__, x, None, 0)
            else:
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
        start_ids: torch.Tensor | None = None,
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
            start_ids: (B,) start-token ids used as they are, the null label included (what `generate` passes
                for guidance); in [0, num_classes] (conditional) or 0 (unconditional). Exclusive with `labels`.

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
        if start_ids is None:
            start_ids = self._condition_ids(labels, tokens.shape[0], generator, drop_labels=self.training)
        elif labels is not None:
            raise ValueError(f"`labels` must be None when `start_ids` are given, got {type(labels).__name__}")
        else:
            check_labels(start_ids, self.start_embedding.num_embeddings, tokens.shape[0], "start_ids")
            start_ids = start_ids.to(self.device)
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
