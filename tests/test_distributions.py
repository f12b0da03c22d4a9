"""The shared maths against torch.distributions and closed forms."""

import math

import pytest
import torch
from torch import distributions as D

from hf_vae.distributions import DiagonalGaussian, bits_per_dim_to_nats, log_mean_exp, nats_to_bits_per_dim, standard_normal_log_prob
from hf_vae.likelihoods import (
    BernoulliLikelihood,
    DiscretizedGaussianLikelihood,
    GaussianLikelihood,
    discretized_gaussian_log_prob,
    get_likelihood,
)


def _reference_normal(mean, logvar):
    return D.Independent(D.Normal(mean, torch.exp(0.5 * logvar)), 1)


def test_kl_seed_example_mu2_sigma_half():
    # KL(N(2, 0.5^2) || N(0, 1)) = 0.5 * (0.25 + 4 - 1 - ln 0.25) = 2.3181 nats
    posterior = DiagonalGaussian(torch.tensor([[2.0]]), torch.tensor([[math.log(0.25)]]))
    assert posterior.kl().item() == pytest.approx(2.318147, abs=1e-5)


def test_kl_to_standard_normal_matches_torch():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    ours = DiagonalGaussian(mean, logvar).kl()
    ref = D.kl_divergence(_reference_normal(mean, logvar), _reference_normal(torch.zeros(5, 7), torch.zeros(5, 7)))
    torch.testing.assert_close(ours, ref)


def test_kl_between_diagonal_gaussians_matches_torch():
    g = torch.Generator().manual_seed(1)
    p = [torch.randn(4, 3, generator=g) for _ in range(4)]
    ours = DiagonalGaussian(p[0], p[1]).kl(DiagonalGaussian(p[2], p[3]))
    ref = D.kl_divergence(_reference_normal(p[0], p[1]), _reference_normal(p[2], p[3]))
    torch.testing.assert_close(ours, ref)
    assert torch.all(DiagonalGaussian(p[0], p[1]).kl(DiagonalGaussian(p[0], p[1])).abs() < 1e-6)


def test_log_prob_matches_torch_and_broadcasts_over_samples():
    g = torch.Generator().manual_seed(2)
    mean, logvar = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    z = torch.randn(6, 3, 4, generator=g)
    ours = DiagonalGaussian(mean, logvar).log_prob(z)
    assert ours.shape == (6, 3)
    torch.testing.assert_close(ours, _reference_normal(mean, logvar).log_prob(z))
    torch.testing.assert_close(standard_normal_log_prob(z[0]), _reference_normal(torch.zeros(3, 4), torch.zeros(3, 4)).log_prob(z[0]))


def test_rsample_is_reproducible_with_generator_and_has_right_moments():
    mean, logvar = torch.full((20000, 2), 1.5), torch.full((20000, 2), math.log(4.0))
    dist = DiagonalGaussian(mean.requires_grad_(), logvar)
    a = dist.rsample(torch.Generator().manual_seed(3))
    b = dist.rsample(torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.mean().item() == pytest.approx(1.5, abs=0.05)
    assert a.std().item() == pytest.approx(2.0, abs=0.05)
    a.sum().backward()  # reparameterised: gradient reaches the mean
    assert mean.grad is not None and torch.all(mean.grad == 1)
    assert torch.equal(dist.mode(), mean)
    assert not dist.sample(torch.Generator().manual_seed(3)).requires_grad


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="logvar"):
        DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 4))


def test_bernoulli_likelihood_matches_torch():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 1, 4, 4, generator=g)
    x = torch.rand(3, 1, 4, 4, generator=g).round()
    ref = D.Independent(D.Bernoulli(logits=logits), 3).log_prob(x)
    torch.testing.assert_close(BernoulliLikelihood().log_prob(logits, x), ref)
    torch.testing.assert_close(BernoulliLikelihood().mean(logits), torch.sigmoid(logits))
    draw = BernoulliLikelihood().sample(logits, torch.Generator().manual_seed(0))
    assert set(draw.unique().tolist()) <= {0.0, 1.0}


def test_gaussian_likelihood_fixed_and_learned_scale_match_torch():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 4, 4, generator=g)
    mean = torch.rand(2, 3, 4, 4, generator=g)
    fixed = GaussianLikelihood(scale=0.1)
    assert fixed.num_params == 1
    torch.testing.assert_close(fixed.log_prob(mean, x), D.Independent(D.Normal(mean, 0.1), 3).log_prob(x))
    log_scale = torch.randn(2, 3, 4, 4, generator=g) * 0.3 - 1
    learned = GaussianLikelihood(scale=None)
    assert learned.num_params == 2
    params = torch.cat([mean, log_scale], dim=1)
    torch.testing.assert_close(learned.log_prob(params, x), D.Independent(D.Normal(mean, log_scale.exp()), 3).log_prob(x))


def test_discretized_gaussian_is_a_probability_over_256_bins():
    # The masses of all 256 bins sum to one for any mean/scale: the likelihood is honest.
    grid = torch.arange(256.0) / 255.0
    for mean, log_scale in [(0.3, -3.0), (0.0, -6.0), (1.2, 0.5), (0.5, -1.0)]:
        log_p = discretized_gaussian_log_prob(grid, torch.full_like(grid, mean), torch.full_like(grid, log_scale))
        assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-4)
        assert torch.all(log_p <= 0)


def test_discretized_gaussian_interior_bin_matches_cdf_difference():
    mean, scale, x = 0.4, 0.05, torch.tensor([[100 / 255.0]])
    normal = D.Normal(mean, scale)
    expected = math.log(normal.cdf(torch.tensor(100.5 / 255)) - normal.cdf(torch.tensor(99.5 / 255)))
    lik = DiscretizedGaussianLikelihood(scale=scale)
    assert lik.log_prob(torch.full((1, 1, 1, 1), mean), x.view(1, 1, 1, 1)).item() == pytest.approx(expected, abs=1e-5)
    draw = lik.sample(torch.full((1, 1, 8, 8), mean), torch.Generator().manual_seed(0))
    assert torch.allclose(draw * 255, (draw * 255).round(), atol=1e-4)


def test_get_likelihood_rejects_unknown_name():
    assert isinstance(get_likelihood("bernoulli"), BernoulliLikelihood)
    with pytest.raises(ValueError, match="likelihood.*'poisson'"):
        get_likelihood("poisson")


def test_log_mean_exp_is_stable_and_exact():
    x = torch.tensor([[1000.0, 1000.0], [1000.0, -1000.0]])
    out = log_mean_exp(x, dim=0)
    assert out[0].item() == pytest.approx(1000.0)
    assert out[1].item() == pytest.approx(1000.0 - math.log(2.0))
    y = torch.randn(5, 3)
    torch.testing.assert_close(log_mean_exp(y, 0), torch.log(torch.exp(y).mean(0)))


def test_nats_bits_per_dim_round_trip():
    assert nats_to_bits_per_dim(784 * math.log(2.0), 784) == pytest.approx(1.0)
    assert bits_per_dim_to_nats(nats_to_bits_per_dim(87.3, 784), 784) == pytest.approx(87.3)
