"""The probability maths every family shares, written once and tested against `torch.distributions`.

- `DiagonalGaussian`: the posterior q(z|x) of the VAE family (reparameterised sampling with a
  generator, closed-form KL to N(0, I) or to another diagonal Gaussian, log-density, and the log-density
  of the equal-weight mixture of a batch of them: the VampPrior's p(z)).
- `log_mean_exp` for importance-weighted bounds, and nats <-> bits/dim conversions.
- The observation likelihoods p(x|z) live in `likelihoods.py`.

Conventions: every `log_prob`/`kl` returns one value per example, summed over all non-batch dimensions, in nats.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def sum_except_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,): the per-example total (log-densities of independent dimensions add up)."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def _noise(draw, shape, generator, device, dtype) -> torch.Tensor:
    if generator is not None and device is not None and torch.device(device).type != generator.device.type:
        # A CPU generator drives sampling on any device: draw on the generator's device, then move.
        return draw(shape, generator=generator, dtype=dtype).to(device)
    return draw(shape, generator=generator, device=device, dtype=dtype)


def standard_normal(shape, *, generator=None, device=None, dtype=None) -> torch.Tensor:
    """N(0, I) noise drawn with `generator` (the one place the families draw Gaussian noise)."""
    return _noise(torch.randn, shape, generator, device, dtype)


def uniform(shape, *, generator=None, device=None, dtype=None) -> torch.Tensor:
    """U[0, 1) noise drawn with `generator`."""
    return _noise(torch.rand, shape, generator, device, dtype)


class DiagonalGaussian:
    """N(mean, diag(exp(logvar))) over the trailing dimensions of `mean` (B, ...), batched over dim 0;
    `logvar` (log-variances) has the shape of `mean`."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        if mean.shape != logvar.shape:
            raise ValueError(f"`logvar` must have the shape of `mean` {tuple(mean.shape)}, got {tuple(logvar.shape)}")
        self.mean = mean
        self.logvar = logvar

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample mean + std * eps (gradients flow to mean and logvar)."""
        eps = standard_normal(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample without gradients (`rsample` under `no_grad`)."""
        with torch.no_grad():
            return self.rsample(generator)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self, other: DiagonalGaussian | None = None) -> torch.Tensor:
        """KL(self || other) per example in nats; `other=None` means N(0, I) (sum of `kl_per_dim`)."""
        return sum_except_batch(self.kl_per_dim(other))

    def kl_per_dim(self, other: DiagonalGaussian | None = None) -> torch.Tensor:
        """KL(self || other) per latent dimension, shape of `mean` (free bits, active-unit reports); `other=None`
        is N(0, I). Per dimension: 0.5 * (var/var_o + (mean - mean_o)^2/var_o - 1 + logvar_o - logvar)."""
        if other is None:
            return 0.5 * (self.var + self.mean.pow(2) - 1.0 - self.logvar)
        return 0.5 * (torch.exp(self.logvar - other.logvar) + (self.mean - other.mean).pow(2) / other.var - 1.0
                      + other.logvar - self.logvar)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; mean, var) in nats, summed over the event dims (all but the first of `mean`); `z` may
        carry extra leading sample dims, e.g. (S, B, D) against a (B, D) posterior -> (S, B)."""
        elementwise = -0.5 * (LOG_2PI + self.logvar + (z - self.mean).pow(2) / self.var)
        return elementwise.sum(dim=tuple(range(-(self.mean.ndim - 1), 0)))

    def mixture_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log (1/K) sum_k N(z; mean_k, var_k), the equal-weight mixture of this batch's K Gaussians (K, D):
        z (..., D) -> (...). Every z meets every component, (..., K, D) in memory."""
        return log_mean_exp(self.log_prob(z.unsqueeze(-2)), dim=-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per example in nats."""
    return sum_except_batch(-0.5 * (LOG_2PI + z.pow(2)))


# -- Estimators and units ----------------------------------------------------------------------------


def log_mean_exp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """log(mean(exp(x), dim)) computed stably (the importance-weighted bound of Burda et al.)."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def nats_to_bits_per_dim(nats: torch.Tensor | float, num_dims: int):
    """Negative log-likelihood in nats per example -> bits per dimension."""
    return nats / (num_dims * math.log(2.0))


def bits_per_dim_to_nats(bits_per_dim: torch.Tensor | float, num_dims: int):
    """Bits per dimension -> nats per example (inverse of `nats_to_bits_per_dim`)."""
    return bits_per_dim * num_dims * math.log(2.0)
