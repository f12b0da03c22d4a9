"""Autoregressive sampling of token grids, as a function of a logits function (maskgit `parallel_decode` style).

Both token priors sample through `sample_tokens`; it never touches a model. A model hands it
`logits_fn(tokens, position, state) -> (logits, state)`:

- `tokens`: (rows, num_positions) long, the canvas in raster order. Positions < `position` hold the
  tokens drawn so far; the others hold 0 and must not influence the result (the model is causal).
- `position`: the index of the token to predict next.
- `state`: whatever the model carries between calls (a key/value cache), `None` on the first call.
- `logits`: (rows, vocab_size) unnormalised log-probabilities of the token at `position`.

Classifier-free guidance (Ho & Salimans 2022): with `guidance_scale != 1` the canvas has 2N rows, the
N conditional ones first and then the same N again to be scored *without* the condition (the model
pairs them with its null label); the logits used are uncond + s * (cond - uncond). s = 0 is the
unconditional model, s = 1 the conditional one, s > 1 sharpens towards the condition. On raw logits
this equals the same combination of log-probabilities up to a per-row constant, which softmax removes.

Each draw applies, in this order: guidance, temperature, top-k, top-p, then an inverse-CDF draw with
`generator` (a CPU generator drives sampling on any device). A temperature so small that the scaled
logits overflow gives the greedy (argmax) token, the limit of temperature -> 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from .distributions import uniform
from .validation import check_float, check_generator, check_int

LogitsFn = Callable[[torch.Tensor, int, Any], tuple[torch.Tensor, Any]]


def check_sampling_args(temperature=1.0, top_k=None, top_p=None, guidance_scale=1.0) -> None:
    """Raise `ValueError` naming the argument unless temperature > 0, top_k >= 1, 0 < top_p <= 1, guidance finite >= 0."""
    check_float("temperature", temperature, minimum=0.0, exclusive_minimum=True)
    if top_k is not None:
        check_int("top_k", top_k, minimum=1)
    if top_p is not None:
        check_float("top_p", top_p, minimum=0.0, maximum=1.0, exclusive_minimum=True)
    check_float("guidance_scale", guidance_scale, minimum=0.0)


def is_guided(guidance_scale: float) -> bool:
    """Whether `sample_tokens` doubles the rows for classifier-free guidance."""
    return guidance_scale != 1.0


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the `top_k` largest logits of each row (and any tied with the k-th), set the rest to -inf."""
    top_k = min(top_k, logits.shape[-1])
    kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of most likely tokens whose mass is >= `top_p`.

    A token is dropped when the tokens more likely than it already hold `top_p` of the mass, so the
    most likely token is always kept.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_from_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row of `logits` (N, V) after temperature, top-k and top-p; returns (N,) long."""
    check_sampling_args(temperature, top_k, top_p)
    logits = logits.float()
    scaled = logits / temperature
    # A tiny temperature (1e-45) overflows finite logits to +-inf, and softmax of a row holding +inf is NaN.
    # The limit temperature -> 0 is the greedy choice, so those rows (N,) take the argmax exactly; top-k
    # and top-p always keep the most likely token, so they cannot change it.
    overflow = (torch.isinf(scaled) & torch.isfinite(logits)).any(dim=-1)
    greedy = logits.argmax(dim=-1)
    logits = torch.where(overflow.unsqueeze(-1), logits, scaled)  # finite stand-ins, replaced below
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    # Inverse CDF: the first token whose normalised cumulative mass exceeds u ~ U[0, 1). A token of
    # zero mass never adds to the CDF, so it can never be the first to exceed u.
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)
    cdf = cdf / cdf[:, -1:]
    u = uniform((logits.shape[0], 1), generator=generator, device=logits.device, dtype=cdf.dtype)
    drawn = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)
    return torch.where(overflow, greedy, drawn)


@torch.no_grad()
def sample_tokens(
    logits_fn: LogitsFn,
    num_samples: int,
    num_positions: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Draw `num_samples` sequences of `num_positions` tokens, one position at a time; returns (N, P) long.

    Args:
        logits_fn: `(tokens, position, state) -> (logits, state)`, see the module docstring.
        num_samples: N, the number of sequences.
        num_positions: P, the sequence length (H * W for a grid in raster order).
        temperature: divides the logits; < 1 sharpens, > 1 flattens.
        top_k: keep only the k most likely tokens (None = all).
        top_p: keep the smallest set of most likely tokens with mass >= top_p (None = all).
        guidance_scale: classifier-free guidance scale; != 1 makes `logits_fn` see 2N rows
            (conditional first, then unconditional).
        generator: drives every draw (reproducible samples).
        device: where the canvas lives (the model's device).
        progress: show a tqdm progress bar over positions.
    """
    check_int("num_samples", num_samples, minimum=1)
    check_int("num_positions", num_positions, minimum=1)
    check_sampling_args(temperature, top_k, top_p, guidance_scale)
    check_generator(generator)
    guided = is_guided(guidance_scale)
    rows = 2 * num_samples if guided else num_samples
    tokens = torch.zeros(rows, num_positions, dtype=torch.long, device=device)
    state = None
    for position in tqdm(range(num_positions), desc="sampling tokens", disable=not progress, leave=False):
        logits, state = logits_fn(tokens, position, state)
        if logits.ndim != 2 or logits.shape[0] != rows:
            raise ValueError(f"`logits_fn` must return logits of shape ({rows}, vocab_size), got {tuple(logits.shape)}")
        if guided:
            cond, uncond = logits[:num_samples].float(), logits[num_samples:].float()
            logits = uncond + guidance_scale * (cond - uncond)
        next_tokens = sample_from_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        tokens[:, position] = next_tokens.repeat(2) if guided else next_tokens
    return tokens[:num_samples]
