"""One `evaluate()` for every family: the numbers that go into model cards, benchmarks and training logs.

Every number is a `Metric` that carries its unit and the estimator that produced it ("ELBO",
"IWAE, k=1000", "exact"), because cards and benchmarks print them verbatim. Families plug in with
`register_evaluator(model_type)`.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import torch
from tqdm.auto import tqdm

from .distributions import nats_to_bits_per_dim


@dataclass
class Metric:
    """One measured number with its unit, estimator and a one-line description."""

    value: Any
    unit: str
    estimator: str
    description: str

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        value = f"{self.value:.4g}" if isinstance(self.value, float) else str(self.value)
        estimator = f" ({self.estimator})" if self.estimator else ""
        return f"{self.description}{estimator}: {value} {self.unit}".rstrip()


EVALUATORS: dict[str, Callable[..., dict[str, Metric]]] = {}


def register_evaluator(*model_types: str):
    """Decorator: use the function as `evaluate` for models whose `config.model_type` is in `model_types`."""

    def wrap(function):
        for model_type in model_types:
            EVALUATORS[model_type] = function
        return function

    return wrap


def evaluate(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset | Iterable[dict],
    *,
    batch_size: int = 100,
    num_importance_samples: int = 1000,
    seed: int = 0,
    max_examples: int | None = None,
    progress: bool = True,
    **family_kwargs,
) -> dict[str, Metric]:
    """Evaluate `model` on `dataset` (examples or batches of `{"pixel_values", "labels"}`).

    Args:
        model: any hf_vae model; the evaluator is chosen by `model.config.model_type`.
        dataset: a map-style dataset of examples (e.g. `hf_vae.data.ImageDataset`) or a DataLoader.
        batch_size: examples per forward pass when `dataset` is not already a DataLoader.
        num_importance_samples: k of the importance-weighted NLL (0 skips it: ELBO terms only).
        seed: seeds the generator of every stochastic estimate, so two calls agree exactly.
        max_examples: evaluate on the first `max_examples` examples only.
        progress: show a progress bar.
        **family_kwargs: passed to the family's evaluator (e.g. `active_unit_threshold` for VAEs).

    Returns:
        `{name: Metric}`; `to_flat_dict` turns it into `{name: value}` for loggers.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in EVALUATORS:
        raise ValueError(f"`model` must be an hf_vae model of type {sorted(EVALUATORS)}, got model_type {model_type!r}")
    if isinstance(num_importance_samples, bool) or not isinstance(num_importance_samples, int) or num_importance_samples < 0:
        raise ValueError(f"`num_importance_samples` must be an int >= 0, got {num_importance_samples!r}")
    if isinstance(dataset, torch.utils.data.DataLoader):
        loader = dataset
    else:
        if max_examples is not None:
            dataset = torch.utils.data.Subset(dataset, range(min(max_examples, len(dataset))))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return EVALUATORS[model_type](
                model, loader, num_importance_samples=num_importance_samples, seed=seed, progress=progress, **family_kwargs
            )
    finally:
        model.train(was_training)


def to_flat_dict(metrics: dict[str, Metric], prefix: str = "") -> dict[str, float]:
    """`{prefix + name: value}` for the scalar metrics (what trackers and CSV logs take)."""
    return {prefix + name: float(m.value) for name, m in metrics.items() if isinstance(m.value, (int, float, bool))}


def _takes_labels(method) -> bool:
    return "labels" in inspect.signature(method).parameters


def _batch_to(batch: dict, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    labels = batch.get("labels")
    return batch["pixel_values"].to(device), None if labels is None else labels.to(device)


@register_evaluator("vae", "cvae")
def evaluate_gaussian_latent(
    model,
    loader,
    *,
    num_importance_samples: int,
    seed: int,
    progress: bool,
    active_unit_threshold: float = 0.01,
    collapse_fraction: float = 0.1,
) -> dict[str, Metric]:
    """ELBO and its terms, importance-weighted NLL, bits/dim, KL per latent dimension, active units.

    Active units follow Burda et al. (2016): dimension u is active when Cov_x(E_q(z|x)[z_u]) exceeds
    `active_unit_threshold`. Fewer than `collapse_fraction` of the dimensions active triggers a
    posterior-collapse warning (and `posterior_collapse = True`).
    """
    conditional = _takes_labels(model.encode)
    generator = torch.Generator().manual_seed(seed)
    totals = {"elbo": 0.0, "reconstruction": 0.0, "kl": 0.0, "nll": 0.0}
    kl_per_dim, means = 0.0, []
    count = 0
    num_dims = None
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        pixel_values, labels = _batch_to(batch, model.device)
        label_kwargs = {"labels": labels} if conditional else {}
        out = model(pixel_values, generator=generator, **label_kwargs)
        n = pixel_values.shape[0]
        num_dims = pixel_values[0].numel()
        totals["elbo"] += out.elbo.sum().item()
        totals["reconstruction"] += out.reconstruction_loss.item() * n
        totals["kl"] += out.kl_loss.item() * n
        posterior = model.encode(pixel_values, **label_kwargs)
        kl_per_dim = kl_per_dim + posterior.kl_per_dim().sum(dim=0)
        means.append(posterior.mean.float())
        if num_importance_samples:
            log_px = model.log_likelihood(pixel_values, num_samples=num_importance_samples, generator=generator, **label_kwargs)
            totals["nll"] -= log_px.sum().item()
        count += n
    if count == 0:
        raise ValueError("`dataset` must hold at least one example, got none")

    means = torch.cat(means)
    activity = means.var(dim=0, unbiased=count > 1)
    active = int((activity > active_unit_threshold).sum())
    latent_dim = means.shape[1]
    collapsed = active < math.ceil(collapse_fraction * latent_dim)
    if collapsed:
        warnings.warn(
            f"posterior collapse: only {active} of {latent_dim} latent dimensions are active "
            f"(Cov_x E[z_u] > {active_unit_threshold}); the decoder is ignoring z",
            stacklevel=2,
        )
    likelihood = model.config.likelihood
    honest_bits = likelihood in ("bernoulli", "discretized_gaussian")
    bits_note = "" if honest_bits else "; a continuous density on [0, 1] data, not a probability of the pixels"

    elbo = totals["elbo"] / count
    metrics = {
        "elbo": Metric(elbo, "nats", "ELBO, 1 sample", "Mean evidence lower bound per example"),
        "reconstruction_loss": Metric(totals["reconstruction"] / count, "nats", "1 posterior sample", "Mean -log p(x|z)"),
        "kl": Metric(totals["kl"] / count, "nats", "closed form", "Mean KL(q(z|x) || p(z))"),
        "elbo_bits_per_dim": Metric(
            nats_to_bits_per_dim(-elbo, num_dims), "bits/dim", "ELBO, 1 sample", "Negative ELBO in bits per dimension" + bits_note
        ),
        "kl_per_dim": Metric((kl_per_dim / count).tolist(), "nats", "closed form", "Mean KL per latent dimension"),
        "active_units": Metric(active, "dimensions", f"Cov_x E[z] > {active_unit_threshold}", f"Active latent units of {latent_dim}"),
        "latent_dim": Metric(latent_dim, "dimensions", "", "Latent dimensions"),
        "posterior_collapse": Metric(collapsed, "", f"active units < {collapse_fraction:.0%} of latent_dim", "Posterior collapse"),
        "num_examples": Metric(count, "examples", "", "Evaluated examples"),
    }
    if num_importance_samples:
        nll = totals["nll"] / count
        estimator = f"IWAE, k={num_importance_samples}"
        metrics["nll"] = Metric(nll, "nats", estimator, "Negative log-likelihood per example")
        metrics["bits_per_dim"] = Metric(nats_to_bits_per_dim(nll, num_dims), "bits/dim", estimator, "Negative log-likelihood" + bits_note)
    return metrics


@register_evaluator("pixelcnn_prior", "transformer_prior")
def evaluate_token_prior(model, loader, *, num_importance_samples: int, seed: int, progress: bool) -> dict[str, Metric]:
    """Exact negative log-likelihood of token grids: nats per example, bits per token, and bits per
    dimension for pixel tokens (one token per pixel). `num_importance_samples` is unused: the
    likelihood of an autoregressive prior is exact."""
    from .modeling_utils import pixels_to_tokens

    conditional = getattr(model.config, "num_classes", None) is not None
    total, count, num_tokens = 0.0, 0, model.config.grid_size**2
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        if "input_ids" in batch:
            input_ids = batch["input_ids"]
        else:
            input_ids = pixels_to_tokens(batch["pixel_values"], model.config.pixel_levels)
        labels = batch["labels"].to(model.device) if conditional else None
        total -= model.log_likelihood(input_ids.to(model.device), labels=labels).sum().item()
        count += len(input_ids)
    if count == 0:
        raise ValueError("`dataset` must hold at least one example, got none")
    nll = total / count
    metrics = {
        "nll": Metric(nll, "nats", "exact", "Negative log-likelihood per example"),
        "bits_per_token": Metric(nats_to_bits_per_dim(nll, num_tokens), "bits/token", "exact", "Negative log-likelihood per token"),
        "num_examples": Metric(count, "examples", "", "Evaluated examples"),
    }
    if model.config.token_source == "pixels":
        metrics["bits_per_dim"] = Metric(nats_to_bits_per_dim(nll, num_tokens), "bits/dim", "exact", "Negative log-likelihood per pixel")
    return metrics
