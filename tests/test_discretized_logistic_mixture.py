"""The PixelCNN++ discretized logistic mixture: a probability over the 256 bins of every subpixel (edge bins
take the tails), equal to numerical integration of the logistic density, channels conditioned R -> G -> B."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from hf_vae.likelihoods import DiscretizedLogisticMixtureLikelihood


def random_params(likelihood, num_channels, height=1, width=1, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(batch, likelihood.num_outputs(num_channels), height, width, generator=g, dtype=torch.float64)
    k = likelihood.num_mixtures
    params[:, k:k + num_channels * k] = torch.rand(batch, num_channels * k, height, width, generator=g, dtype=torch.float64)
    params[:, k + num_channels * k:k + 2 * num_channels * k] -= 2.0  # scales around exp(-2): several bins wide
    return params


def grid(num_bins, num_channels):
    """Every image of one pixel: (num_bins ** C, C, 1, 1) on the grid k / (num_bins - 1)."""
    values = [v / (num_bins - 1) for v in range(num_bins)]
    return torch.tensor(list(itertools.product(values, repeat=num_channels)), dtype=torch.float64)[:, :, None, None]


@pytest.mark.parametrize("num_channels, num_bins", [(1, 256), (2, 32), (3, 12)])
def test_masses_sum_to_one_over_every_image_of_a_pixel(num_channels, num_bins):
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=3, num_bins=num_bins)
    images = grid(num_bins, num_channels)
    params = random_params(likelihood, num_channels).expand(len(images), -1, -1, -1)
    total = torch.logsumexp(likelihood.log_prob(params, images), 0).exp()
    assert total.item() == pytest.approx(1.0, abs=1e-9)


def test_one_component_matches_numerical_integration_and_edge_bins_take_the_tails():
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=1)
    mu_r, mu_g, log_s, coeff = 0.3, 0.5, math.log(0.05), 0.4  # tanh(atanh(0.4)) = 0.4
    params = torch.tensor([0.0, mu_r, mu_g, log_s, log_s, math.atanh(coeff)], dtype=torch.float64)[None, :, None, None]
    half = 0.5 / 255
    pdf = lambda t, centre: stats.logistic.pdf(t, loc=centre, scale=0.05)  # noqa: E731
    for r, g in [(0, 128), (77, 255), (200, 3), (255, 0)]:
        x = torch.tensor([r / 255, g / 255], dtype=torch.float64)[None, :, None, None]
        centre_g = mu_g + coeff * r / 255  # G's centre moves with R
        masses = []
        for value, centre in ((r / 255, mu_r), (g / 255, centre_g)):
            low = -np.inf if value < half else value - half  # the edge bins take the whole tails
            high = np.inf if value > 1 - half else value + half
            masses.append(integrate.quad(pdf, low, high, args=(centre,), epsabs=1e-13)[0])
        assert likelihood.log_prob(params, x).item() == pytest.approx(math.log(masses[0] * masses[1]), rel=1e-6)


def test_mixture_is_the_weighted_sum_of_its_components():
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=2)
    params = random_params(likelihood, 3, seed=3)
    x = torch.tensor([0.2, 0.7, 1.0], dtype=torch.float64)[None, :, None, None]
    logits, centres, log_scales, coeffs = (t[0, ..., 0, 0] for t in likelihood._unpack(params, 3))
    total = 0.0
    for k in range(2):
        r, g, b = x[0, :, 0, 0].tolist()
        centre = [centres[0, k], centres[1, k] + coeffs[0, k] * r, centres[2, k] + coeffs[1, k] * r + coeffs[2, k] * g]
        mass = 1.0
        for value, c, log_scale in zip((r, g, b), centre, log_scales[:, k]):
            cdf = lambda t: stats.logistic.cdf(t, loc=float(c), scale=math.exp(float(log_scale)))  # noqa: E731
            low = 0.0 if value < 0.5 / 255 else cdf(value - 0.5 / 255)
            high = 1.0 if value > 1 - 0.5 / 255 else cdf(value + 0.5 / 255)
            mass *= high - low
        total += torch.softmax(logits, 0)[k].item() * mass
    assert likelihood.log_prob(params, x).item() == pytest.approx(math.log(total), rel=1e-9)


def test_samples_follow_the_masses():
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=2, num_bins=6)
    params = random_params(likelihood, 2, seed=1).float()
    images = grid(6, 2).float()
    probabilities = likelihood.log_prob(params.expand(len(images), -1, -1, -1), images).exp()
    draws = likelihood.sample(params.expand(40000, -1, -1, -1), torch.Generator().manual_seed(0))
    assert draws.shape == (40000, 2, 1, 1)
    index = (draws[:, :, 0, 0] * 5).round().long()
    frequencies = torch.bincount(index[:, 0] * 6 + index[:, 1], minlength=36).float() / 40000
    assert torch.allclose(frequencies, probabilities, atol=0.01)
    again = likelihood.sample(params.expand(40000, -1, -1, -1), torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_mean_is_the_conditioned_centre_and_gradients_flow():
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=1)
    params = torch.tensor([0.0, 0.3, 0.4, -3.0, -3.0, math.atanh(0.5)])[None, :, None, None].requires_grad_()
    mean = likelihood.mean(params)
    assert torch.allclose(mean[0, :, 0, 0], torch.tensor([0.3, 0.4 + 0.5 * 0.3]))
    (mean.sum() - likelihood.log_prob(params, torch.tensor([0.3, 0.55])[None, :, None, None]).sum()).backward()
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0


def test_params_of_the_wrong_size_are_refused():
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=2)
    assert likelihood.num_outputs(3) == 20 and likelihood.num_outputs(1) == 6
    with pytest.raises(ValueError, match="`params` must have 20 channels"):
        likelihood.log_prob(torch.zeros(1, 19, 2, 2), torch.zeros(1, 3, 2, 2))


def test_far_tail_bins_are_exact_in_float32():
    # A sharp component (scale e^-7) far from most bins: the masses underflow as differences of sigmoids,
    # not in the log form, and float32 agrees with float64.
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=1)
    params = torch.tensor([0.0, 0.1, -7.0], dtype=torch.float64)[None, :, None, None]
    x = torch.tensor([0.3, 0.6, 0.99], dtype=torch.float64).view(3, 1, 1, 1)
    exact = likelihood.log_prob(params.expand(3, -1, -1, -1), x)
    single = likelihood.log_prob(params.float().expand(3, -1, -1, -1), x.float())
    assert torch.isfinite(single).all() and (exact < -100).all()
    assert torch.allclose(single.double(), exact, rtol=1e-5)
    # and against scipy's log survival function: log P(bin) ~ log sf(lower edge) for a far right-tail bin
    lower = (0.3 - 0.5 / 255 - 0.1) / math.exp(-7.0)
    upper = (0.3 + 0.5 / 255 - 0.1) / math.exp(-7.0)
    reference = stats.logistic.logsf(lower) + math.log(-math.expm1(stats.logistic.logsf(upper) - stats.logistic.logsf(lower)))
    assert exact[0].item() == pytest.approx(reference, rel=1e-9)


def test_level_log_probs_are_every_levels_mass_under_the_mixture():
    """`level_log_probs` over every level (a PixelCNN head's logits) sums to one per pixel and, read at the pixel's
    level, is `log_prob` of a one-channel image and `level_log_probs` of that level; far-tail bins stay finite."""
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=3)
    params = torch.randn(2, 9, 4, 5, generator=torch.Generator().manual_seed(0)) * 3
    log_probs = likelihood.level_log_probs(params)
    assert log_probs.shape == (2, 256, 4, 5) and torch.isfinite(log_probs).all()
    torch.testing.assert_close(log_probs.double().logsumexp(1), torch.zeros(2, 4, 5, dtype=torch.float64), atol=1e-5, rtol=0)
    levels = torch.randint(0, 256, (2, 1, 4, 5), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(log_probs.gather(1, levels).sum((1, 2, 3)), likelihood.log_prob(params, levels.float() / 255))
    torch.testing.assert_close(likelihood.level_log_probs(params, levels[:, 0]), log_probs.gather(1, levels)[:, 0])
    with pytest.raises(ValueError, match="`params` must have 9 channels"):
        likelihood.level_log_probs(params[:, :6])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_scales_and_centres_give_finite_masses_and_gradients(dtype):
    # A diverging run pushes log-scales far up or down and centres far off [0, 1]. Unbounded, a log-scale of
    # 100 made exp(-log_scale) = 0, every inner bin log 0 = -inf, and `torch.where`'s dropped branch then sent
    # 0 * inf = NaN gradients even where an edge bin was scored; in bf16 the bin width computed as a difference
    # of two standardised edges far from the centre cancelled to 0 the same way.
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=2)
    k, c = 2, 3
    x = torch.tensor([0.0, 100 / 255, 1.0], dtype=dtype).view(1, 3, 1, 1).expand(4, -1, 2, 2).contiguous()
    params = torch.zeros(4, likelihood.num_outputs(c), 2, 2, dtype=dtype)
    params[:, k:k + c * k] = torch.tensor([-40.0, 40.0, 0.5, -0.5]).view(4, 1, 1, 1).to(dtype)  # centres
    params[:, k + c * k:k + 2 * c * k] = torch.tensor([100.0, -100.0, 100.0, -100.0]).view(4, 1, 1, 1).to(dtype)  # log-scales
    params.requires_grad_(True)
    log_prob = likelihood.log_prob(params, x)
    assert torch.isfinite(log_prob).all(), log_prob
    log_prob.sum().backward()
    assert torch.isfinite(params.grad).all()
    # Past the bounds the log-scales are clamped: 100 scores as 7, -100 as -7.
    clamped = params.detach().clone()
    clamped[:, k + c * k:k + 2 * c * k] = clamped[:, k + c * k:k + 2 * c * k].clamp(-7.0, 7.0)
    torch.testing.assert_close(likelihood.log_prob(clamped, x), log_prob.detach())


def test_level_log_probs_stay_finite_with_gradients_at_extreme_scales():
    likelihood = DiscretizedLogisticMixtureLikelihood(num_mixtures=2)
    params = torch.tensor([0.0, 0.0, -30.0, 0.5, 100.0, -100.0])[None, :, None, None].requires_grad_(True)
    masses = likelihood.level_log_probs(params)  # (1, 256, 1, 1): every level of one subpixel
    assert torch.isfinite(masses).all()
    assert torch.logsumexp(masses, 1).exp().item() == pytest.approx(1.0, abs=1e-4)
    masses[:, [0, 77, 255]].sum().backward()
    assert torch.isfinite(params.grad).all()
