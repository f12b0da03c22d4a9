"""VAE / β-VAE: the shared contracts plus the family's own methods and maths."""

import math

import pytest
import torch

from hf_vae import VAEConfig, VAEModel
from hf_vae.distributions import DiagonalGaussian, standard_normal_log_prob
from hf_vae.modeling_outputs import DecoderOutput, EncoderOutput

from .model_tester import ModelTesterMixin, gaussian_latent_identities, gaussian_latent_per_example

TINY = dict(image_size=8, num_channels=1, hidden_channels=[8, 16], latent_dim=4, num_res_blocks=1)


class TestVAE(ModelTesterMixin):
    model_class = VAEModel
    config_class = VAEConfig
    config_kwargs = TINY
    bad_config_values = [
        ("latent_dim", 0),
        ("latent_dim", 2.5),
        ("beta", -1.0),
        ("likelihood", "poisson"),
        ("hidden_channels", []),
        ("image_size", 10),  # not divisible by 2 ** 2
        ("kl_warmup_steps", -3),
        ("free_bits", -0.1),
        ("dropout", 1.0),
        ("likelihood_scale", 0.0),
        ("activation", "tanh"),
    ]

    def named_term_identities(self, model, out):
        return gaussian_latent_identities(model, out)

    def per_example_outputs(self, model, inputs):
        return gaussian_latent_per_example(model, inputs)


class TestGaussianVAE(TestVAE):
    """The same contracts with a learned-scale discretized Gaussian likelihood (8-bit images)."""

    config_kwargs = {**TINY, "num_channels": 3, "likelihood": "discretized_gaussian"}
    bad_config_values = [("likelihood_scale", -1.0)]

    def get_inputs(self, batch_size=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        return {"pixel_values": torch.randint(0, 256, (batch_size, 3, 8, 8), generator=g).float() / 255}


def _model(**overrides):
    torch.manual_seed(0)
    return VAEModel(VAEConfig(**{**TINY, **overrides})).eval()


def _images(n=3, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)).round()


def test_loss_is_negative_elbo_with_beta():
    x = _images()
    for beta in (1.0, 4.0):
        out = _model(beta=beta)(x, generator=torch.Generator().manual_seed(0))
        assert out.loss.item() == pytest.approx(out.reconstruction_loss.item() + beta * out.kl_loss.item(), rel=1e-6)
        # The per-example ELBO is the beta = 1 bound whatever beta is.
        assert out.elbo.mean().item() == pytest.approx(-(out.reconstruction_loss + out.kl_loss).item(), rel=1e-6)
        torch.testing.assert_close(out.kl_loss, DiagonalGaussian(out.posterior_mean, out.posterior_logvar).kl().mean())


def test_kl_warmup_ramps_to_beta():
    model = _model(beta=2.0, kl_warmup_steps=10)
    assert model.kl_weight(0) == pytest.approx(0.2)
    assert model.kl_weight(4) == pytest.approx(1.0)
    assert model.kl_weight(100) == pytest.approx(2.0)
    assert model.kl_weight(None) == pytest.approx(2.0)
    x = _images()
    early = model(x, generator=torch.Generator().manual_seed(0), global_step=0)
    assert early.loss.item() == pytest.approx(early.reconstruction_loss.item() + 0.2 * early.kl_loss.item(), rel=1e-6)


def test_free_bits_floor_each_dimension():
    model = _model(free_bits=5.0)
    out = model(_images(), generator=torch.Generator().manual_seed(0))
    # A fresh model has a tiny KL per dimension, so each of the 4 dimensions counts 5 nats.
    assert out.loss.item() == pytest.approx(out.reconstruction_loss.item() + 4 * 5.0, rel=1e-6)


def test_encode_returns_distribution_and_decode_images():
    model = _model()
    encoded = model.encode(_images())
    assert isinstance(encoded, EncoderOutput)
    posterior = encoded.latent_dist
    assert isinstance(posterior, DiagonalGaussian) and posterior.mean.shape == (3, 4)
    assert model.encode(_images(), return_dict=False)[0].mean.equal(posterior.mean)
    decoded = model.decode(posterior.mode())
    assert isinstance(decoded, DecoderOutput)
    images = decoded.sample
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(model.decode(posterior.mode(), return_dict=False)[0], images)
    binary = model.decode(posterior.mode(), generator=torch.Generator().manual_seed(0), output="sample").sample
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="latents"):
        model.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="output"):
        model.decode(posterior.mode(), output="median")


def test_sample_temperature_and_bad_arguments():
    model = _model()
    cold = model.sample(4, generator=torch.Generator().manual_seed(0), temperature=1e-6)
    zero = model.decode(torch.zeros(4, 4)).sample
    torch.testing.assert_close(cold, zero, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(0)
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, temperature=0.0)
    with pytest.raises(ValueError, match="generator"):
        model.sample(2, generator=1234)
    # The unconditional VAE takes the shared vocabulary and refuses what it cannot use, before any work.
    with pytest.raises(ValueError, match="`labels` must be None"):
        model.sample(2, labels=1)
    with pytest.raises(ValueError, match="`guidance_scale` must be 1"):
        model.sample(2, guidance_scale=2.0)
    with pytest.raises(ValueError, match="`labels` must be None"):
        model.encode(_images(), torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError):
        model.sample(2, torch.Generator())  # keyword-only after num_samples


def test_reconstruct_is_deterministic_at_posterior_mean():
    model = _model()
    x = _images()
    torch.testing.assert_close(model.reconstruct(x), model.decode(model.encode(x).latent_dist.mean).sample)
    a = model.reconstruct(x, generator=torch.Generator().manual_seed(1), sample_posterior=True)
    b = model.reconstruct(x, generator=torch.Generator().manual_seed(1), sample_posterior=True)
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolate_endpoints_are_the_reconstructions(method):
    model = _model()
    x = _images(2)
    path = model.interpolate(x[0], x[1], steps=5, method=method)
    assert path.shape == (5, 1, 8, 8)
    torch.testing.assert_close(path[0], model.reconstruct(x[:1])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path[-1], model.reconstruct(x[1:])[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="method"):
        model.interpolate(x[0], x[1], method="cubic")
    with pytest.raises(ValueError, match="steps"):
        model.interpolate(x[0], x[1], steps=1)


def test_slerp_keeps_norm_between_orthogonal_unit_vectors():
    from hf_vae.models.vae.modeling_vae import slerp

    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    path = slerp(a, b, torch.linspace(0, 1, 7)[:, None])
    torch.testing.assert_close(path.norm(dim=1), torch.ones(7))
    torch.testing.assert_close(path[3], torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]))


def test_log_likelihood_k1_is_the_single_sample_elbo():
    model = _model()
    x = _images(2)
    # With the forward's noise, one importance weight is exactly the single-sample (Monte Carlo) ELBO
    # log p(x|z) + log p(z) - log q(z|x) at the forward's z; the forward's `elbo` has the closed-form KL.
    out = model(x, generator=torch.Generator().manual_seed(5))
    posterior = DiagonalGaussian(out.posterior_mean, out.posterior_logvar)
    monte_carlo = out.elbo + posterior.kl() + standard_normal_log_prob(out.latents) - posterior.log_prob(out.latents)
    k1 = model.log_likelihood(x, num_samples=1, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(k1, monte_carlo, rtol=1e-5, atol=1e-4)
    # One importance weight is a single-sample estimate of the ELBO. With the same noise as forward()
    # the two differ by log p(z) - log q(z|x) + KL, which has mean zero.
    gaps = []
    for seed in range(300):
        k1 = model.log_likelihood(x, num_samples=1, generator=torch.Generator().manual_seed(seed))
        gaps.append(k1 - model(x, generator=torch.Generator().manual_seed(seed)).elbo)
    assert k1.shape == (2,)
    assert torch.stack(gaps).mean(0).abs().max() < 0.05


def test_log_likelihood_is_independent_of_chunking():
    model = _model()
    x = _images(3)
    a = model.log_likelihood(x, num_samples=50, generator=torch.Generator().manual_seed(0), chunk_size=3)
    b = model.log_likelihood(x, num_samples=50, generator=torch.Generator().manual_seed(0), chunk_size=10_000)
    torch.testing.assert_close(a, b)


def _linear_gaussian_vae(encoder_shift: float = 0.0):
    """A VAE whose log p(x) is known in closed form: x = W z + b + N(0, 0.5^2), z ~ N(0, I).

    The encoder is the exact posterior (shifted by `encoder_shift` to make it wrong on purpose).
    Returns the model and the exact marginal p(x).
    """
    model = VAEModel(VAEConfig(image_size=4, num_channels=1, hidden_channels=[2], num_res_blocks=0,
                               latent_dim=2, likelihood="gaussian", likelihood_scale=0.5)).eval()
    torch.manual_seed(0)
    W = torch.randn(16, 2) * 0.3
    b = torch.rand(16) * 0.5 + 0.25
    cov = torch.linalg.inv(torch.eye(2) + W.t() @ W / 0.25)

    class LinearDecoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))  # the model reads its device from a parameter

        def forward(self, z, condition=None):
            return (z @ W.t() + b).view(-1, 1, 4, 4)

    class PosteriorEncoder(torch.nn.Module):
        def forward(self, x, condition=None):
            mean = (x.flatten(1) - b) @ W @ cov / 0.25 + encoder_shift
            return torch.cat([mean, torch.log(torch.diagonal(cov)).expand(x.shape[0], 2)], dim=1)

    model.decoder, model.encoder = LinearDecoder(), PosteriorEncoder()
    return model, torch.distributions.MultivariateNormal(b, W @ W.t() + 0.25 * torch.eye(16))


def test_log_likelihood_exact_for_linear_gaussian_model():
    model, marginal = _linear_gaussian_vae()
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    estimate = model.log_likelihood(x, num_samples=5000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(estimate, marginal.log_prob(x.flatten(1)), atol=0.05, rtol=0)


def test_more_importance_samples_tighten_the_bound():
    model, marginal = _linear_gaussian_vae(encoder_shift=0.3)  # a deliberately wrong posterior
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    exact = marginal.log_prob(x.flatten(1))

    def mean_over_seeds(estimate, seeds=50):
        return torch.stack([estimate(torch.Generator().manual_seed(s)) for s in range(seeds)]).mean(0)

    elbo = mean_over_seeds(lambda g: model(x, generator=g).elbo.detach())
    k10 = mean_over_seeds(lambda g: model.log_likelihood(x, num_samples=10, generator=g))
    k5000 = model.log_likelihood(x, num_samples=5000, generator=torch.Generator().manual_seed(0))
    # In expectation: ELBO <= IWAE_10 <= IWAE_5000 ~= log p(x) (Burda et al., Theorem 1).
    assert torch.all(elbo < k10 - 0.2), (elbo, k10)
    assert torch.all(k10 < exact), (k10, exact)
    torch.testing.assert_close(k5000, exact, atol=0.05, rtol=0)


def test_log_likelihood_rejects_bad_input():
    model = _model()
    with pytest.raises(ValueError, match="num_samples"):
        model.log_likelihood(_images(), num_samples=0)
    with pytest.raises(ValueError, match="pixel_values"):
        model.log_likelihood(_images() * 3)


def test_pickle_weights_load_only_when_the_caller_opts_in(tmp_path):
    from transformers import AutoModel

    model = _model()
    model.save_pretrained(tmp_path)
    # Replace the safetensors file by a pickle checkpoint of the same weights.
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(OSError, match="safetensors"):
        AutoModel.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="safetensors"):
        VAEModel.from_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, use_safetensors=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
