"""Observation likelihoods p(x|z), the decoder's output distribution of every autoencoder family (and of the
PixelCNN's logistic-mixture head), written once and tested against references.

- `BernoulliLikelihood` (binary, on logits), `GaussianLikelihood` (fixed or learned scale),
  `DiscretizedGaussianLikelihood` (the mass of each of the 256 bins of 8-bit images) and
  `DiscretizedLogisticMixtureLikelihood` (PixelCNN++'s, channels conditioned R -> G -> B).
- `get_likelihood(name)` for the config names in `LIKELIHOODS`.
- `warn_if_not_a_likelihood`: a `NotALikelihoodWarning` when -log p(x|z) is no likelihood of the data.

Conventions (as `distributions.py`): every `log_prob` returns one value per example, summed over all non-batch
dimensions, in nats.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from .distributions import LOG_2PI, sum_except_batch, standard_normal, uniform

# -- Observation likelihoods p(x | z): the decoder emits `params` (B, num_outputs(C), H, W); each likelihood
# knows how many it needs and how to score and sample.


class ObservationLikelihood:
    """Base class: `log_prob(params, x)` per example, `mean(params)`, `sample(params, generator)`."""

    name: str = ""
    num_params: int = 1  # decoder output channels per image channel

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def not_a_likelihood(self, x: torch.Tensor) -> str | None:
        """Why `log_prob(params, x)` is not a log-likelihood of `x`, or None when it is."""
        return None

    def num_outputs(self, num_channels: int) -> int:
        """Decoder output channels for images of `num_channels` channels."""
        return num_channels * self.num_params

    def guide(self, cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
        """Classifier-free guidance on the decoder's parameters: uncond + scale * (cond - uncond) on what
        locates the distribution (logits, means); its spread is the conditional pass's."""
        return uncond + scale * (cond - uncond)

    def init_output_bias(self, bias: torch.Tensor) -> None:
        """Move a freshly initialised decoder's last bias (num_outputs,) to where training should start (in place)."""


class BernoulliLikelihood(ObservationLikelihood):
    """Bernoulli(sigmoid(logits)) per pixel; for binary (or binarised) images in {0, 1}."""

    name = "bernoulli"

    def log_prob(self, params, x):
        # -BCE with logits is the numerically stable log Bernoulli(x; sigmoid(logits)).
        return -sum_except_batch(F.binary_cross_entropy_with_logits(params, x, reduction="none"))

    def mean(self, params):
        return torch.sigmoid(params)

    def sample(self, params, generator=None):
        u = uniform(params.shape, generator=generator, device=params.device, dtype=params.dtype)
        return (u < torch.sigmoid(params)).to(params.dtype)

    def not_a_likelihood(self, x):
        # Bernoulli is a distribution over {0, 1}: on grey values the "log-probability" is a cross-entropy.
        if bool(((x == 0) | (x == 1)).all()):
            return None
        return ("a Bernoulli likelihood scored grey-level (non-binary) pixel values: the number is a "
                "cross-entropy, not a log-likelihood of the images (binarize them, e.g. `data.eval_binarize: static`)")


class NotALikelihoodWarning(UserWarning):
    """A reported log-likelihood is not one: the data lie outside the support of the model's p(x|z)."""


def warn_if_not_a_likelihood(likelihood: ObservationLikelihood, x: torch.Tensor, stacklevel: int = 3) -> str | None:
    """Warn once (a `NotALikelihoodWarning`) and return the reason when `likelihood` gives no likelihood of `x`."""
    reason = likelihood.not_a_likelihood(x)
    if reason is not None:
        warnings.warn(reason, NotALikelihoodWarning, stacklevel=stacklevel)
    return reason


def _split_mean_log_scale(params: torch.Tensor, fixed_log_scale: float | None):
    if fixed_log_scale is None:
        mean, log_scale = params.chunk(2, dim=1)
        # Bound the learned scale from below: an unbounded Gaussian on near-discrete data drives
        # sigma -> 0 and the density to infinity.
        log_scale = log_scale.clamp(min=-7.0)
    else:
        mean, log_scale = params, torch.full_like(params, fixed_log_scale)
    return mean, log_scale


class GaussianLikelihood(ObservationLikelihood):
    """N(x; mean, scale^2) per pixel, a density on continuous x. `scale`: a fixed standard deviation, or None to
    learn a per-pixel log-scale (the decoder then emits 2 channels per image channel: mean and log-scale)."""

    name = "gaussian"

    def __init__(self, scale: float | None = None):
        self.fixed_log_scale = None if scale is None else math.log(scale)
        self.num_params = 2 if scale is None else 1

    def log_prob(self, params, x):
        mean, log_scale = _split_mean_log_scale(params, self.fixed_log_scale)
        return sum_except_batch(-0.5 * LOG_2PI - log_scale - 0.5 * ((x - mean) * torch.exp(-log_scale)).pow(2))

    def mean(self, params):
        return _split_mean_log_scale(params, self.fixed_log_scale)[0]

    def guide(self, cond, uncond, scale):
        if self.num_params == 1:
            return super().guide(cond, uncond, scale)
        cond_mean, cond_log_scale = cond.chunk(2, dim=1)
        uncond_mean = uncond.chunk(2, dim=1)[0]
        return torch.cat([uncond_mean + scale * (cond_mean - uncond_mean), cond_log_scale], dim=1)

    def sample(self, params, generator=None):
        mean, log_scale = _split_mean_log_scale(params, self.fixed_log_scale)
        eps = standard_normal(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(log_scale) * eps


def _off_grid(x: torch.Tensor, num_bins: int) -> str | None:
    """Why a discretized likelihood's log_prob is no log-likelihood of `x` (values off its grid), or None."""
    levels = x * (num_bins - 1)
    if bool(((levels - levels.round()).abs() <= 1e-4).all()):
        return None
    return (f"a discretized likelihood scored pixel values off its {num_bins}-level grid: the number is no "
            "probability of those values (quantize them to 8 bits first)")


def discretized_gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, num_bins: int = 256
) -> torch.Tensor:
    """Elementwise log-probability of the bin holding x under N(mean, scale^2), x on the grid k/(num_bins-1); the
    edge bins take the tails, so the masses sum to one (Ho et al.'s 8-bit likelihood, on [0, 1] not [-1, 1])."""
    half_bin = 0.5 / (num_bins - 1)
    inv_scale = torch.exp(-log_scale)
    normal = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    cdf_plus = normal.cdf((x - mean + half_bin) * inv_scale)
    cdf_minus = normal.cdf((x - mean - half_bin) * inv_scale)
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_mass = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(
        x < half_bin, log_cdf_plus, torch.where(x > 1.0 - half_bin, log_one_minus_cdf_minus, log_mass)
    )


class DiscretizedGaussianLikelihood(GaussianLikelihood):
    """A Gaussian integrated over the 256 bins of 8-bit pixels: a probability, not a density (a continuous density
    on [0, 1] data is no likelihood of the discrete image and can report negative bits)."""

    name = "discretized_gaussian"

    def __init__(self, scale: float | None = None, num_bins: int = 256):
        super().__init__(scale)
        self.num_bins = num_bins

    def log_prob(self, params, x):
        mean, log_scale = _split_mean_log_scale(params, self.fixed_log_scale)
        return sum_except_batch(discretized_gaussian_log_prob(x, mean, log_scale, self.num_bins))

    def not_a_likelihood(self, x):
        return _off_grid(x, self.num_bins)

    def sample(self, params, generator=None):
        x = super().sample(params, generator)
        # Snap to the pixel grid the likelihood is defined on.
        return torch.round(x.clamp(0.0, 1.0) * (self.num_bins - 1)) / (self.num_bins - 1)


#: The logistic log-scales' bounds. Below: as for the Gaussian, a scale -> 0 on discrete data sends the density to
#: infinity. Above: a scale of e^7 already spreads a component flat over [0, 1]; unbounded, a diverging run reached
#: exp(-log_scale) = 0, whose bins all had mass exp(log 0) and NaN gradients.
LOGISTIC_LOG_SCALE_RANGE = (-7.0, 7.0)


def _log_bin_mass(x: torch.Tensor, centre: torch.Tensor, log_scale: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Elementwise log-mass of the bin holding x (on the grid k / (num_bins - 1)) under Logistic(centre,
    scale); the edge bins take the tails, so the `num_bins` masses sum to one.

    Computed in logs throughout, exact in every bin: log sigmoid(a) = -softplus(-a), log(1 - sigmoid(b)) =
    -softplus(b), and for a bin [b, a] (standardised edges) sigmoid(a) - sigmoid(b) = sigmoid(a) *
    sigmoid(-b) * (1 - exp(b - a)), so a far-tail bin neither underflows nor needs PixelCNN++'s
    density-times-width fallback.
    """
    half_bin = 0.5 / (num_bins - 1)
    inv_scale = torch.exp(-log_scale)
    plus = (x - centre + half_bin) * inv_scale
    minus = (x - centre - half_bin) * inv_scale
    # b - a = -2 * half_bin / scale, written out: as `minus - plus` it cancels (to exactly 0 in bf16 far from the
    # centre), and log(0) = -inf in a branch `torch.where` drops still sends NaN gradients (0 * inf).
    inner = -F.softplus(-plus) - F.softplus(minus) + torch.log(-torch.expm1(-2.0 * half_bin * inv_scale))
    return torch.where(x < half_bin, -F.softplus(-plus), torch.where(x > 1.0 - half_bin, -F.softplus(minus), inner))


class DiscretizedLogisticMixtureLikelihood(ObservationLikelihood):
    """The PixelCNN++ likelihood of 8-bit images (Salimans et al. 2017): per pixel a mixture of K
    components, each a logistic per channel integrated over the 256 bins, and within a component the
    channels are autoregressive: the centre of channel c is mu_c + sum_{c' < c} coeff_{c,c'} * x_{c'}
    (for RGB: G depends on R, B on R and G), so one pixel's channels are correlated.

    `params` (B, K * (1 + 2C + C(C-1)/2), H, W): the K mixture logits, the C*K centres mu, the C*K log-scales,
    and K coefficients (tanh, in [-1, 1]) per channel pair (c, c' < c). Images are in [0, 1] on the grid
    k / (num_bins - 1) (PixelCNN++ uses [-1, 1]; the masses are equal)."""

    name = "discretized_logistic_mixture"

    def __init__(self, num_mixtures: int = 5, num_bins: int = 256):
        self.num_mixtures = num_mixtures
        self.num_bins = num_bins

    def num_outputs(self, num_channels: int) -> int:
        """Decoder output channels for images of `num_channels` channels."""
        return self.num_mixtures * (1 + 2 * num_channels + num_channels * (num_channels - 1) // 2)

    def init_output_bias(self, bias):
        """Centres at mid-grey and scales of about a dozen levels (log-scale -3), not 0 and the whole range: Adam
        moves a bias by about the learning rate per step, so from 0 this takes thousands of steps."""
        k, c = self.num_mixtures, self._channels(bias[None])
        with torch.no_grad():
            bias[k : k + c * k] += 0.5
            bias[k + c * k : k + 2 * c * k] -= 3.0

    def _unpack(self, params: torch.Tensor, num_channels: int):
        """-> logits (B, K, H, W), centres and log-scales (B, C, K, H, W), coefficients (B, P, K, H, W)."""
        k, c = self.num_mixtures, num_channels
        if params.shape[1] != self.num_outputs(c):
            raise ValueError(f"`params` must have {self.num_outputs(c)} channels for {c}-channel images and "
                             f"{k} mixtures, got {params.shape[1]}")
        batch, _, height, width = params.shape
        logits, centres, log_scales, coeffs = params.split([k, c * k, c * k, k * c * (c - 1) // 2], dim=1)
        shape = (batch, -1, k, height, width)
        log_scales = log_scales.reshape(shape).clamp(*LOGISTIC_LOG_SCALE_RANGE)
        return logits, centres.reshape(shape), log_scales, torch.tanh(coeffs.reshape(shape))

    @staticmethod
    def _conditioned(centres: torch.Tensor, coeffs: torch.Tensor, previous: torch.Tensor, channel: int) -> torch.Tensor:
        """The centre (B, K, H, W) of `channel` given the earlier channels' values `previous`
        (B, >= channel, 1 or K, H, W; None for the first channel)."""
        centre, pair = centres[:, channel], channel * (channel - 1) // 2  # pairs (1,0), (2,0), (2,1), ...
        for earlier in range(channel):
            centre = centre + coeffs[:, pair + earlier] * previous[:, earlier]
        return centre

    def guide(self, cond, uncond, scale):
        """Guidance on the mixture logits and the centres; log-scales and coefficients are the conditional's."""
        k, c = self.num_mixtures, self._channels(cond)
        located = k + c * k  # logits, then centres
        guided = uncond[:, :located] + scale * (cond[:, :located] - uncond[:, :located])
        return torch.cat([guided, cond[:, located:]], dim=1)

    def not_a_likelihood(self, x):
        return _off_grid(x, self.num_bins)

    def log_prob(self, params, x):
        """log p(x) per image in nats: logsumexp over components of log pi_k + the channels' log-masses."""
        logits, centres, log_scales, coeffs = self._unpack(params, x.shape[1])
        values = x.unsqueeze(2)  # (B, C, 1, H, W): broadcast against the K components
        log_masses = [
            _log_bin_mass(values[:, c], self._conditioned(centres, coeffs, values, c), log_scales[:, c], self.num_bins)
            for c in range(x.shape[1])
        ]  # each (B, K, H, W)
        per_pixel = torch.logsumexp(F.log_softmax(logits, dim=1) + torch.stack(log_masses).sum(0), dim=1)
        return sum_except_batch(per_pixel)

    def mean(self, params):
        """The mean of the continuous mixture (the tails that the edge bins take are not folded back), clipped
        to [0, 1]: a smooth reconstruction, not a point of the 8-bit grid."""
        num_channels = self._channels(params)
        logits, centres, _, coeffs = self._unpack(params, num_channels)
        weights = F.softmax(logits, dim=1)  # (B, K, H, W)
        # Within a component E[x_c] = mu_c + sum coeff * E[x_c'], since a logistic's mean is its centre.
        means = []  # per channel (B, K, H, W); a list, not in-place writes, so autograd can go through it
        for c in range(num_channels):
            means.append(self._conditioned(centres, coeffs, torch.stack(means, 1) if means else None, c))
        return (weights.unsqueeze(1) * torch.stack(means, 1)).sum(2).clamp(0.0, 1.0)

    def sample(self, params, generator=None):
        """One image per row on the `num_bins` grid: a component per pixel, then the channels in order."""
        num_channels = self._channels(params)
        logits, centres, log_scales, coeffs = self._unpack(params, num_channels)
        # Gumbel-max picks the component k ~ softmax(logits) per pixel.
        u = uniform(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype).clamp(1e-6, 1 - 1e-6)
        pick = F.one_hot((logits - torch.log(-torch.log(u))).argmax(1), self.num_mixtures).permute(0, 3, 1, 2)
        pick = pick.to(params.dtype).unsqueeze(1)  # (B, 1, K, H, W)
        channels = []  # per channel (B, 1, H, W), drawn in order
        for c in range(num_channels):
            previous = torch.stack(channels, 1) if channels else None
            centre = (self._conditioned(centres, coeffs, previous, c) * pick[:, 0]).sum(1, keepdim=True)
            log_scale = (log_scales[:, c] * pick[:, 0]).sum(1, keepdim=True)
            u = uniform(centre.shape, generator=generator, device=centre.device, dtype=centre.dtype).clamp(1e-6, 1 - 1e-6)
            value = centre + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))  # the logistic's inverse CDF
            channels.append(torch.round(value.clamp(0.0, 1.0) * (self.num_bins - 1)) / (self.num_bins - 1))
        return torch.cat(channels, 1)

    def level_log_probs(self, params: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
        """Log-masses of pixel levels under single-channel params (B, 3K, *spatial) (logits, centres, log-scales).

        `levels` (B, *spatial) integers in [0, num_bins): log p(level) per position, (B, *spatial): a token prior's
        exact NLL at the price of one bin. None: every level, (B, num_bins, *spatial), each position's masses summing
        to one: the logits a token prior samples from (its masks order the colours).
        """
        k = self.num_mixtures
        if params.shape[1] != 3 * k:
            raise ValueError(f"`params` must have {3 * k} channels (one channel, {k} mixtures), got {params.shape[1]}")
        logits, centres, log_scales = params.split(k, dim=1)  # each (B, K, *spatial)
        if levels is None:
            spatial = (1,) * (params.ndim - 2)
            levels = torch.arange(self.num_bins, device=params.device).view(1, -1, 1, *spatial)  # (1, bins, 1, ...)
        else:
            levels = levels.unsqueeze(1).unsqueeze(1)  # (B, 1, 1, *spatial)
        values = levels.to(params.dtype) / (self.num_bins - 1)
        # (B, L, K, *spatial): each level under each component, the log-scales bounded as in `_unpack`.
        log_scales = log_scales.clamp(*LOGISTIC_LOG_SCALE_RANGE)
        log_masses = _log_bin_mass(values, centres.unsqueeze(1), log_scales.unsqueeze(1), self.num_bins)
        log_probs = torch.logsumexp(F.log_softmax(logits, dim=1).unsqueeze(1) + log_masses, dim=2)
        return log_probs if levels.shape[1] > 1 else log_probs[:, 0]

    def _channels(self, params: torch.Tensor) -> int:
        """The image channels C that `params` holds (K * (1 + 2C + C(C-1)/2) decoder outputs)."""
        for c in range(1, 5):
            if self.num_outputs(c) == params.shape[1]:
                return c
        raise ValueError(f"`params` must have K * (1 + 2C + C(C-1)/2) channels for K = {self.num_mixtures} and "
                         f"C in 1..4, got {params.shape[1]}")


LIKELIHOODS = ("bernoulli", "gaussian", "discretized_gaussian", "discretized_logistic_mixture")


def get_likelihood(name: str, scale: float | None = None, num_mixtures: int = 5) -> ObservationLikelihood:
    """The observation likelihood called `name` (one of `LIKELIHOODS`); `scale` None = learned (the
    Gaussians); `num_mixtures` components for the logistic mixture."""
    if name == "bernoulli":
        return BernoulliLikelihood()
    if name == "gaussian":
        return GaussianLikelihood(scale)
    if name == "discretized_gaussian":
        return DiscretizedGaussianLikelihood(scale)
    if name == "discretized_logistic_mixture":
        return DiscretizedLogisticMixtureLikelihood(num_mixtures)
    raise ValueError(f"`likelihood` must be one of {LIKELIHOODS}, got {name!r}")
