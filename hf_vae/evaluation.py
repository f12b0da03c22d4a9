"""One `evaluate()` for every family: the numbers that go into model cards, benchmarks and training logs.

Every number is a `Metric` that carries its unit and the estimator that produced it ("ELBO",
"IWAE, k=1000", "exact"), because cards and benchmarks print them verbatim. Families plug in with
`register_evaluator(name)` and the `evaluator` attribute of their model class.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from .distributions import DiagonalGaussian, nats_to_bits_per_dim
from .families import check_decoder_precision
from .image_quality import image_quality
from .likelihoods import NotALikelihoodWarning
from .validation import check_choice, check_int

# Burda et al. (2016): latent dimension u is active when Cov_x(E_q(z|x)[z_u]) exceeds this (the trainer's
# final evaluation and the KL-per-dimension picture use it).
ACTIVE_UNIT_THRESHOLD = 0.01

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


def register_evaluator(name: str):
    """Decorator: register the function as the evaluator `name`; a family runs the one its model class
    declares in `evaluator`."""

    def wrap(function):
        EVALUATORS[name] = function
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
    decoder_precision: str = "fp32",
    **family_kwargs,
) -> dict[str, Metric]:
    """Evaluate `model` on `dataset` (examples or batches of `{"pixel_values", "labels"}`).

    Args:
        model: any hf_vae model; the evaluator is the one its class declares (`evaluator`).
        dataset: a map-style or iterable dataset of examples (e.g. `hf_vae.data.ImageDataset`,
            `StreamingImageDataset`, `TensorDictDataset`), a DataLoader, or a `datasets.Dataset` /
            `IterableDataset` / `DatasetDict` (its "test" split), read at its native size and channels (wrap it
            with `hf_vae.data.load_split(..., binarize=...)` to binarize or resize).
        batch_size: examples per forward pass when `dataset` is not already a DataLoader.
        num_importance_samples: k of the importance-weighted NLL (0 skips it: ELBO terms only).
        seed: seeds the generator of every stochastic estimate, so two calls agree exactly.
        max_examples: evaluate on the first `max_examples` examples only.
        progress: show a progress bar.
        decoder_precision: "bf16" runs the IWAE decoder passes under bf16 autocast (VAE/CVAE only).
        **family_kwargs: passed to the family's evaluator (e.g. `active_unit_threshold` for VAEs).

    Returns:
        `{name: Metric}`; `to_flat_dict` turns it into `{name: value}` for loggers. When a reported
        likelihood is not one (a Bernoulli model on grey pixels), `"warnings"` lists why, and each is
        also raised as a `NotALikelihoodWarning` (a `UserWarning`).
    """
    evaluator = EVALUATORS.get(getattr(type(model), "evaluator", None))
    if evaluator is None:
        raise ValueError(f"`model` must be an hf_vae model (a registered family), got {type(model).__name__}")
    check_int("num_importance_samples", num_importance_samples, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    if max_examples is not None:
        check_int("max_examples", max_examples, minimum=1)
    check_decoder_precision("decoder_precision", decoder_precision, model.config.model_type)
    family_kwargs.update({"decoder_precision": decoder_precision} if decoder_precision != "fp32" else {})
    dataset = _examples_of(dataset)
    if isinstance(dataset, torch.utils.data.DataLoader):
        loader = dataset
    else:
        from .data import make_eval_loader

        loader = make_eval_loader(dataset, batch_size, max_examples)
    was_training = model.training
    model.eval()
    try:
        # The model warns about a number that is no likelihood on every batch it scores; the evaluator
        # records the reason once, in metrics["warnings"] (which the card prints), warned once below.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotALikelihoodWarning)
            metrics = evaluator(
                model, loader, num_importance_samples=num_importance_samples, seed=seed, progress=progress, **family_kwargs
            )
    finally:
        model.train(was_training)
    for message in metrics["warnings"].value if "warnings" in metrics else []:
        warnings.warn(message, NotALikelihoodWarning, stacklevel=2)
    return metrics


def _examples_of(dataset):
    """A `datasets` object as a torch dataset of examples (`hf_vae.data.load_split`, native size and channels); a
    `DatasetDict` gives its "test" split. Anything else is returned as it is."""
    import datasets

    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if "test" not in dataset:
            raise ValueError(f"`dataset` must have a 'test' split when it is a {type(dataset).__name__} (or pass the "
                             f"split to evaluate), got splits {list(dataset)}")
        dataset = dataset["test"]
    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        from .data import load_split

        return load_split(dataset, None)  # the view names the split by the dataset's own name
    return dataset


def to_flat_dict(metrics: dict[str, Metric], prefix: str = "") -> dict[str, float]:
    """`{prefix + name: value}` for the scalar metrics (what trackers and CSV logs take)."""
    return {prefix + name: float(m.value) for name, m in metrics.items() if isinstance(m.value, (int, float, bool))}


def _bits_note(likelihood: str, reasons: set) -> str:
    """What a bits/dim of this likelihood is when it is no probability of the pixels ("" when it is)."""
    if likelihood == "bernoulli" and any(reasons):
        return "; a cross-entropy on grey-level data, not a probability of the pixels"
    if likelihood == "gaussian":
        return "; a continuous density on [0, 1] data, not a probability of the pixels"
    if likelihood.startswith("discretized") and not any(reasons):
        return "; 8-bit convention: -log2 p(x) / (C*H*W), x on the 256-level grid"
    return ""


def _warnings_metric(reasons: set) -> dict[str, Metric]:
    """`{"warnings": Metric([...])}` for the reasons a likelihood is not one (none: `{}`)."""
    reasons = sorted(reason for reason in reasons if reason)
    return {"warnings": Metric(reasons, "evaluation", "", "Warnings")} if reasons else {}


def _batch_to(batch: dict, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    labels = batch.get("labels")
    return batch["pixel_values"].to(device), None if labels is None else labels.to(device)


@register_evaluator("gaussian_latent")
def evaluate_gaussian_latent(
    model,
    loader,
    *,
    num_importance_samples: int,
    seed: int,
    progress: bool,
    active_unit_threshold: float = ACTIVE_UNIT_THRESHOLD,
    collapse_fraction: float = 0.1,
    decoder_precision: str = "fp32",
) -> dict[str, Metric]:
    """ELBO and its terms, importance-weighted NLL, bits/dim, KL per latent dimension, active units.

    `decoder_precision="bf16"` (`VAEModel.log_likelihood`; speed and error in benchmarks/results/iwae_speed.md)
    is named by the estimator ("IWAE, k=1000, bf16 decoder").

    Active units follow Burda et al. (2016): dimension u is active when Cov_x(E_q(z|x)[z_u]) exceeds
    `active_unit_threshold`. Fewer than `collapse_fraction` of the dimensions active triggers a
    posterior-collapse warning (and `posterior_collapse = True`).

    With the VampPrior the KL is a one-sample estimate, and since the mixture's KL does not split over
    dimensions, `kl_per_dim` is the KL per dimension to the prior's moment-matched diagonal Gaussian
    (the mixture's mean and variance per dimension), a collapse diagnostic; activity does not involve p(z).
    """
    conditional = model.is_conditional
    prior_moments = _moment_matched(model.prior_components())  # None for N(0, I): the exact KL per dimension
    generator = torch.Generator().manual_seed(seed)
    totals = {"elbo": 0.0, "reconstruction": 0.0, "kl": 0.0, "nll": 0.0}
    kl_per_dim, means = 0.0, []
    count = 0
    num_dims = None
    reasons = set()  # why a reported likelihood is not one (Bernoulli on grey pixels)
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        pixel_values, labels = _batch_to(batch, model.device)
        reasons.add(model.likelihood.not_a_likelihood(pixel_values))
        label_kwargs = {"labels": labels} if conditional else {}
        out = model(pixel_values, generator=generator, **label_kwargs)
        n = pixel_values.shape[0]
        num_dims = pixel_values[0].numel()
        totals["elbo"] += out.elbo.sum().item()
        totals["reconstruction"] += out.reconstruction_loss.item() * n
        totals["kl"] += out.kl_loss.item() * n
        posterior = model.encode(pixel_values, **label_kwargs).latent_dist
        kl_per_dim = kl_per_dim + posterior.kl_per_dim(prior_moments).sum(dim=0)
        means.append(posterior.mean.float())
        if num_importance_samples:
            log_px = model.log_likelihood(pixel_values, num_samples=num_importance_samples, generator=generator,
                                          decoder_precision=decoder_precision, **label_kwargs)
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
    bits_note = _bits_note(likelihood, reasons)
    kl_estimator, kl_per_dim_estimator = "closed form", "closed form"
    if prior_moments is not None:
        kl_estimator, kl_per_dim_estimator = "1 posterior sample, VampPrior", "closed form, to the VampPrior's moment-matched Gaussian"

    elbo = totals["elbo"] / count
    metrics = {
        "elbo": Metric(elbo, "nats", "ELBO, 1 sample", "Mean evidence lower bound per example"),
        "reconstruction_loss": Metric(totals["reconstruction"] / count, "nats", "1 posterior sample", "Mean -log p(x|z)"),
        "kl": Metric(totals["kl"] / count, "nats", kl_estimator, "Mean KL(q(z|x) || p(z))"),
        "elbo_bits_per_dim": Metric(
            nats_to_bits_per_dim(-elbo, num_dims), "bits/dim", "ELBO, 1 sample", "Negative ELBO in bits per dimension" + bits_note
        ),
        "kl_per_dim": Metric((kl_per_dim / count).tolist(), "nats", kl_per_dim_estimator, "Mean KL per latent dimension"),
        "latent_activity": Metric(activity.tolist(), "variance", f"over the examples; active when > {active_unit_threshold}",
                                  "Variance over x of the posterior mean E_q[z_u] per latent dimension"),
        "active_units": Metric(active, "dimensions", f"Cov_x E[z] > {active_unit_threshold}", f"Active latent units of {latent_dim}"),
        "latent_dim": Metric(latent_dim, "dimensions", "", "Latent dimensions"),
        "posterior_collapse": Metric(collapsed, "", f"active units < {collapse_fraction:.0%} of latent_dim", "Posterior collapse"),
        "num_examples": Metric(count, "examples", "", "Evaluated examples"),
    }
    if num_importance_samples:
        nll = totals["nll"] / count
        estimator = f"IWAE, k={num_importance_samples}" + (", bf16 decoder" if decoder_precision == "bf16" else "")
        metrics["nll"] = Metric(nll, "nats", estimator, "Negative log-likelihood per example")
        metrics["bits_per_dim"] = Metric(nats_to_bits_per_dim(nll, num_dims), "bits/dim", estimator, "Negative log-likelihood" + bits_note)
    metrics.update(_warnings_metric(reasons))
    return metrics


def _moment_matched(components):
    """The diagonal Gaussian (1, D) with the mean and variance of the equal-weight mixture of `components`
    (K, D) per dimension (var = E_k[var_k + mean_k^2] - mean^2); None for None."""
    if components is None:
        return None
    mean = components.mean.mean(dim=0, keepdim=True)
    var = (components.var + components.mean.pow(2)).mean(dim=0, keepdim=True) - mean.pow(2)
    return DiagonalGaussian(mean, var.clamp(min=1e-12).log())


@register_evaluator("token_prior")
def evaluate_token_prior(model, loader, *, num_importance_samples: int, seed: int, progress: bool, vqvae=None) -> dict[str, Metric]:
    """Exact negative log-likelihood of token grids: nats per example, bits per token, and bits per
    dimension for pixel tokens (one token per pixel). `num_importance_samples` is unused: the
    likelihood of an autoregressive prior is exact.

    A prior over VQ-VAE codes given images (`pixel_values`, not cached code grids) encodes them with `vqvae`
    (None: the one its config names) and also reports the two-stage bound -log p(codes) - log p(x|z_q), in
    nats and bits/dim (an upper bound on -log p(x): the encoder is deterministic, q(z|x) puts all its mass on
    the nearest codes, so its entropy term is 0), its two terms, and the code rate in bits per pixel.
    """
    from .generation import prior_vqvae
    from .modeling_utils import pixels_to_indices

    conditional = model.is_conditional
    total, reconstruction, count, shape, reasons = 0.0, 0.0, 0, None, set()
    num_tokens = model.num_tokens
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        if model.main_input_name in batch:  # VQ-VAE code grids, prepared by the trainer
            indices = batch[model.main_input_name]
        elif model.config.token_source == "vqvae_codes":  # images: encode them, and score x given its codes
            vqvae = prior_vqvae(model, vqvae)
            pixel_values, shape = batch["pixel_values"].to(vqvae.device), batch["pixel_values"].shape[1:]
            reasons.add(vqvae.likelihood.not_a_likelihood(pixel_values))
            indices = vqvae.encode_to_indices(pixel_values)
            reconstruction += vqvae.score(pixel_values).score.sum().item()  # -log p(x|z_q) at those codes
        else:
            indices = pixels_to_indices(batch["pixel_values"], model.config.pixel_levels, num_channels=model.config.num_channels)
        labels = batch["labels"].to(model.device) if conditional else None
        total -= model.log_likelihood(indices.to(model.device), labels=labels).sum().item()
        count += len(indices)
    if count == 0:
        raise ValueError("`dataset` must hold at least one example, got none")
    nll = total / count
    metrics = {
        "nll": Metric(nll, "nats", "exact", "Negative log-likelihood per example"),
        "bits_per_token": Metric(nats_to_bits_per_dim(nll, num_tokens), "bits/token", "exact", "Negative log-likelihood per token"),
        "num_examples": Metric(count, "examples", "", "Evaluated examples"),
    }
    if model.config.token_source == "pixels":
        metrics["bits_per_dim"] = Metric(nats_to_bits_per_dim(nll, num_tokens), "bits/dim", "exact",
                                         "Negative log-likelihood per dimension, -log2 p(x) / (C * H * W), x on the "
                                         f"{model.config.pixel_levels}-level grid")
    if shape is not None:
        metrics.update(_two_stage_bound(nll, reconstruction / count, shape, vqvae.config.likelihood, reasons))
    return metrics


def _two_stage_bound(code_nll: float, reconstruction: float, shape, likelihood: str, reasons: set) -> dict[str, Metric]:
    """The VQ-VAE + prior numbers of images of `shape` (C, H, W): -log p(codes) (`code_nll`, nats) and
    -log p(x|z_q) (`reconstruction`, nats) per example, their sum as a bound in bits/dim, the code rate per pixel."""
    num_dims, num_pixels = math.prod(shape), math.prod(shape[1:])
    note = _bits_note(likelihood, reasons)
    bound = "VQ-VAE + prior bound, exact -log p(codes) - log p(x|z_q) at the nearest codes"
    return {
        "nll_bound": Metric(code_nll + reconstruction, "nats", bound, "Negative log-likelihood of the image per example" + note),
        "bits_per_dim": Metric(nats_to_bits_per_dim(code_nll + reconstruction, num_dims), "bits/dim", bound,
                               "Negative log-likelihood of the image" + note),
        "reconstruction_loss": Metric(reconstruction, "nats", "nearest codes (deterministic)", f"Mean -log p(x|z_q) ({likelihood})" + note),
        "reconstruction_bits_per_dim": Metric(nats_to_bits_per_dim(reconstruction, num_dims), "bits/dim", "nearest codes (deterministic)",
                                              "-log p(x|z_q) in bits per dimension" + note),
        "code_bits_per_pixel": Metric(nats_to_bits_per_dim(code_nll, num_pixels), "bits/pixel", "exact, under the prior",
                                      f"Code rate: -log2 p(codes) / (H*W), {num_pixels} pixels of {shape[0]} channels"),
        "code_bits_per_dim": Metric(nats_to_bits_per_dim(code_nll, num_dims), "bits/dim", "exact, under the prior",
                                    "-log2 p(codes) / (C*H*W): the codes' share of the bound"),
    }


# ---------------------------------------------------------------------------------------------
# Conditional VAE: the VAE's numbers plus conditional fidelity judged by a reference classifier
# ---------------------------------------------------------------------------------------------


@register_evaluator("cvae")
def evaluate_cvae(
    model,
    loader,
    *,
    num_importance_samples: int,
    seed: int,
    progress: bool,
    classifier: torch.nn.Module | None = None,
    num_per_label: int = 100,
    guidance_scale: float | Sequence[float] = 1.0,
    **gaussian_latent_kwargs,
) -> dict[str, Metric]:
    """The VAE's metrics with the label given to encoder and decoder (conditional ELBO, IWAE estimate of
    log p(x|y), active units), plus, when a `classifier` is passed, `conditional_fidelity`: the fraction
    of `num_per_label` samples per label that the classifier assigns to the requested label.

    `guidance_scale` may be a list: one fidelity metric per scale, named `conditional_fidelity` for 1
    (plain conditional sampling) and `conditional_fidelity_guided_<s>` for the others. Samples are
    drawn with a generator seeded by `seed`.
    """
    from .fidelity import conditional_fidelity  # (it builds on this module's Metric)

    metrics = evaluate_gaussian_latent(model, loader, num_importance_samples=num_importance_samples, seed=seed,
                                       progress=progress, **gaussian_latent_kwargs)
    if classifier is not None:
        scales = [guidance_scale] if isinstance(guidance_scale, numbers.Real) else list(guidance_scale)
        for scale in scales:
            name = "conditional_fidelity" if scale == 1 else f"conditional_fidelity_guided_{scale:g}"
            fidelity = conditional_fidelity(model, classifier, num_per_label=num_per_label, guidance_scale=scale,
                                            generator=torch.Generator().manual_seed(seed), per_label=True)
            metrics[name], metrics[name + "_per_label"] = fidelity
    return metrics


@register_evaluator("vqvae")
def evaluate_vqvae(model, loader, *, num_importance_samples: int, seed: int, progress: bool) -> dict[str, Metric]:
    """Reconstruction MSE, PSNR and SSIM (scikit-image's), -log p(x|z_q), the uniform-prior cost of the code grid, and codebook
    health (perplexity, codes used, dead codes) from code counts accumulated over the whole split.

    The VQ-VAE encoder is deterministic and it has no prior of its own, so there is no likelihood to
    estimate (`num_importance_samples` and `seed` are unused). `code_bits_per_dim`,
    h * w * log2(K) / (C * H * W), is what the code costs under a uniform prior: a prior over the codes
    is worth having when its bits/dim are below it.
    """
    config = model.config
    codebook_size = config.codebook_size
    counts = torch.zeros(codebook_size, dtype=torch.float64)
    totals = {"reconstruction": 0.0, "squared_error": 0.0, "psnr": 0.0, "ssim": 0.0}
    count, reasons = 0, set()  # reasons: why -log p(x|z_q) is not a likelihood (Bernoulli on grey pixels)
    shape = None
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        pixel_values, _ = _batch_to(batch, model.device)
        out = model(pixel_values)  # eval mode: the codebook state is not touched
        n = pixel_values.shape[0]
        shape = pixel_values.shape[1:]
        reasons.add(model.likelihood.not_a_likelihood(pixel_values))
        totals["reconstruction"] += out.reconstruction_loss.item() * n
        mse = (out.reconstruction.float() - pixel_values.float()).pow(2).flatten(1).mean(dim=1)  # (B,)
        totals["squared_error"] += mse.sum().item()
        psnr, ssim = image_quality(out.reconstruction, pixel_values)
        totals["psnr"] += psnr.sum().item()
        totals["ssim"] += ssim.sum().item()
        counts += torch.bincount(out.indices.flatten().cpu(), minlength=codebook_size).double()
        count += n
    if count == 0:
        raise ValueError("`dataset` must hold at least one example, got none")

    num_dims = math.prod(shape)
    grid = model.code_grid_size
    num_tokens = grid * grid
    usage = model.quantizer.usage_statistics(counts.float())
    used = int((counts > 0).sum())
    reconstruction = totals["reconstruction"] / count
    likelihood = config.likelihood
    bits_note = _bits_note(likelihood, reasons)
    split_counts = f"code counts over the {count} examples"
    metrics = {
        "reconstruction_loss": Metric(reconstruction, "nats", "nearest codes (deterministic)", f"Mean -log p(x|z_q) ({likelihood})" + bits_note),
        "reconstruction_bits_per_dim": Metric(nats_to_bits_per_dim(reconstruction, num_dims), "bits/dim", "nearest codes (deterministic)",
                                              "-log p(x|z_q) in bits per dimension" + bits_note),
        "mse": Metric(totals["squared_error"] / count, "", "mean of p(x|z_q) vs x, intensities in [0, 1]", "Mean squared reconstruction error per pixel"),
        "psnr": Metric(totals["psnr"] / count, "dB", "per image, peak 1, averaged over images (scikit-image)",
                       "Reconstruction PSNR, mean over images of 10 log10(1 / MSE), capped at 100 dB"),
        "ssim": Metric(totals["ssim"] / count, "", "per image, data range 1, 7x7 Gaussian-free window, averaged over images (scikit-image)",
                       "Reconstruction SSIM (Wang et al. 2004), mean over images"),
        "code_bits_per_dim": Metric(num_tokens * math.log2(codebook_size) / num_dims, "bits/dim", "uniform prior over the codes",
                                    f"Code grid {grid}x{grid} x log2({codebook_size}) bits / {num_dims} dims: the bound a learned prior must beat"),
        "code_bits_per_token": Metric(math.log2(codebook_size), "bits/token", "uniform prior over the codes", "log2(codebook_size)"),
        "num_tokens": Metric(num_tokens, "tokens", "", f"Codes per image ({grid}x{grid} grid)"),
        "codebook_size": Metric(codebook_size, "codes", "", "Codebook size K"),
        "perplexity": Metric(float(usage["perplexity"]), "codes", split_counts, "Codebook perplexity exp(H(code usage))"),
        "codes_used_fraction": Metric(used / codebook_size, "fraction", split_counts, "Fraction of the codebook used"),
        "codes_used": Metric(used, "codes", split_counts, f"Codes used of {codebook_size}"),
        "dead_codes": Metric(int(usage["dead_codes"]), "codes", f"{split_counts}, fewer than {config.dead_code_threshold:g} assignments",
                             "Dead codes"),
        "num_examples": Metric(count, "examples", "", "Evaluated examples"),
    }
    metrics.update(_warnings_metric(reasons))
    return metrics
