"""The VAE family's objective and prior options: the importance-weighted training bound
(`train_importance_samples`) and the VampPrior (`prior: vamp`), against direct reference computations."""

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

from hf_vae import CVAEConfig, CVAEModel, VAEConfig, VAEModel
from hf_vae import cards
from hf_vae.distributions import DiagonalGaussian
from hf_vae.evaluation import evaluate

from .model_tester import ModelTesterMixin, gaussian_latent_identities, gaussian_latent_per_example
from . import test_vae
from .test_vae import TINY

VAMP = {**TINY, "prior": "vamp", "num_pseudo_inputs": 6}


def _model(model_class=VAEModel, config_class=VAEConfig, **overrides):
    torch.manual_seed(0)
    return model_class(config_class(**{**TINY, **overrides})).eval()


def _images(n=3, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)).round()


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# -- the shared contracts, with each option on -------------------------------------------------------


class TestVampVAE(test_vae.TestVAE):  # (the module, not the class: pytest would run TestVAE here too)
    config_kwargs = VAMP
    bad_config_values = [("num_pseudo_inputs", 0), ("prior", "flow"), ("free_bits", 0.5)]


class TestIWAEVAE(test_vae.TestVAE):
    config_kwargs = {**TINY, "train_importance_samples": 3}
    bad_config_values = [("train_importance_samples", 0), ("beta", 2.0), ("free_bits", 0.5)]

    def named_term_identities(self, model, out):
        # The loss is -IWAE_3 (checked against a reference below); the named terms are the first sample's ELBO.
        identities = gaussian_latent_identities(model, out)
        return {name: pair for name, pair in identities.items() if name.startswith("mean(elbo)")}


class TestVampCVAE(ModelTesterMixin):
    model_class = CVAEModel
    config_class = CVAEConfig
    config_kwargs = {**VAMP, "num_classes": 3, "train_importance_samples": 2}
    bad_config_values = [("prior", "gaussian_mixture")]

    def get_inputs(self, batch_size=4, seed=0):
        inputs = super().get_inputs(batch_size, seed)
        return {**inputs, "labels": torch.arange(batch_size) % 3}

    def named_term_identities(self, model, out):
        identities = gaussian_latent_identities(model, out)
        return {name: pair for name, pair in identities.items() if name.startswith("mean(elbo)")}

    def per_example_outputs(self, model, inputs):
        return gaussian_latent_per_example(model, inputs)

    def sample_outputs(self, model, generator):
        return model.sample(2, generator=generator, labels=torch.tensor([0, 2]))


# -- config checks ------------------------------------------------------------------------------------


def test_config_accepts_a_vamp_beta_vae_and_rejects_options_without_a_meaning():
    assert VAEConfig(**VAMP, beta=2.0).prior == "vamp"  # a β-VAE with a VampPrior: the KL estimate weighted
    with pytest.raises(ValueError, match="`free_bits` must be 0 with train_importance_samples=4"):
        VAEConfig(**TINY, train_importance_samples=4, free_bits=0.1)
    with pytest.raises(ValueError, match="`beta` must be 1 with train_importance_samples=2 .*got 0.5"):
        VAEConfig(**TINY, train_importance_samples=2, beta=0.5)
    with pytest.raises(ValueError, match="`prior` must be one of \\('standard_normal', 'vamp'\\), got 'flow'"):
        VAEConfig(**TINY, prior="flow")


# -- the maths in hf_vae/distributions.py ---------------------------------------------------------------


def test_mixture_log_prob_matches_torch_mixture_same_family():
    g = _g(1)
    means, logvars = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    reference = MixtureSameFamily(Categorical(logits=torch.zeros(5)), Independent(Normal(means, (0.5 * logvars).exp()), 1))
    mixture = DiagonalGaussian(means, logvars)
    for shape in [(7, 3), (4, 2, 3)]:  # latents (N, D) and k samples of a batch (k, B, D)
        z = 2 * torch.randn(shape, generator=g)
        torch.testing.assert_close(mixture.mixture_log_prob(z), reference.log_prob(z))
    # One component is the Gaussian itself.
    z = torch.randn(6, 3, generator=g)
    torch.testing.assert_close(DiagonalGaussian(means[:1], logvars[:1]).mixture_log_prob(z), DiagonalGaussian(means[:1], logvars[:1]).log_prob(z[:, None]).squeeze(1))


def test_kl_per_dim_to_another_gaussian_matches_torch():
    g = _g(2)
    q = DiagonalGaussian(torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g))
    p = DiagonalGaussian(torch.randn(1, 3, generator=g), torch.randn(1, 3, generator=g))
    reference = kl_divergence(Normal(q.mean, q.std), Normal(p.mean, p.std))
    torch.testing.assert_close(q.kl_per_dim(p), reference)
    torch.testing.assert_close(q.kl(p), reference.sum(1))
    torch.testing.assert_close(q.kl(), kl_divergence(Normal(q.mean, q.std), Normal(0.0, 1.0)).sum(1))


# -- the importance-weighted objective ------------------------------------------------------------------


def _reference_log_weights(model, x, k, seed, weight=1.0):
    """log w_i = log p(x|z_i) + weight * (log p(z_i) - log q(z_i|x)) with torch.distributions, drawing the
    k (B, D) noises in the order the model draws them; (k, B)."""
    g = _g(seed)
    moments = model.encoder(x)
    mean, logvar = moments.chunk(2, dim=1)
    q = Independent(Normal(mean, (0.5 * logvar).exp()), 1)
    if model.config.prior == "vamp":
        components = model.encoder(model.pseudo_inputs()).chunk(2, dim=1)
        K = components[0].shape[0]
        p = MixtureSameFamily(Categorical(logits=torch.zeros(K)), Independent(Normal(components[0], (0.5 * components[1]).exp()), 1))
    else:
        p = Independent(Normal(torch.zeros_like(mean[0]), torch.ones_like(mean[0])), 1)
    rows = []
    for _ in range(k):
        z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g)
        logits = model.decoder(z)
        log_px_z = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
        rows.append(log_px_z + weight * (p.log_prob(z) - q.log_prob(z)))
    return torch.stack(rows)


@pytest.mark.parametrize("prior", ["standard_normal", "vamp"])
def test_iwae_loss_matches_a_direct_computation(prior):
    model = _model(train_importance_samples=5, prior=prior, num_pseudo_inputs=6)
    x = _images(4)
    log_w = _reference_log_weights(model, x, 5, seed=3)
    expected = -(torch.logsumexp(log_w, 0) - math.log(5)).mean()
    out = model(x, generator=_g(3))
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-4)
    # Jensen: the k-sample bound is above the mean of the k one-sample ELBOs of the same draws.
    assert -out.loss >= log_w.mean() - 1e-5
    # The KL warm-up weighs log p(z) - log q(z|x) inside each weight: 0.25 at step 0 of 4.
    model.config.kl_warmup_steps = 4
    warm = _reference_log_weights(model, x, 5, seed=3, weight=0.25)
    torch.testing.assert_close(model(x, generator=_g(3), global_step=0).loss,
                               -(torch.logsumexp(warm, 0) - math.log(5)).mean(), rtol=1e-5, atol=1e-4)


def test_one_importance_sample_is_the_elbo_and_k_samples_keep_its_terms():
    x = _images(4)
    elbo_model, iwae_model = _model(), _model(train_importance_samples=4)
    assert all(torch.equal(p, q) for p, q in zip(elbo_model.parameters(), iwae_model.parameters()))
    elbo = elbo_model(x, generator=_g(5))
    # k = 1 is the negative ELBO, closed-form KL, exactly.
    assert torch.equal(elbo.loss, elbo.reconstruction_loss + elbo.kl_loss)
    log_px_z = elbo_model.likelihood.log_prob(elbo_model.decoder(elbo.latents), x)
    kl = DiagonalGaussian(elbo.posterior_mean, elbo.posterior_logvar).kl()
    torch.testing.assert_close(elbo.loss, -(log_px_z - kl).mean())
    iwae = iwae_model(x, generator=_g(5))
    # The first of the k draws is the ELBO's draw: the same named terms, a different (tighter) loss.
    for name in ("reconstruction_loss", "kl_loss", "elbo", "latents", "reconstruction"):
        assert torch.equal(getattr(iwae, name), getattr(elbo, name)), name
    assert not torch.equal(iwae.loss, elbo.loss)


def test_vamp_with_one_sample_is_the_one_sample_elbo():
    model = _model(prior="vamp", num_pseudo_inputs=6)
    x = _images(4)
    log_w = _reference_log_weights(model, x, 1, seed=2)
    out = model(x, generator=_g(2))
    torch.testing.assert_close(out.loss, -log_w[0].mean(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out.elbo, log_w[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("overrides", [{"train_importance_samples": 3}, {"prior": "vamp", "num_pseudo_inputs": 6},
                                       {"prior": "vamp", "num_pseudo_inputs": 6, "train_importance_samples": 3}])
def test_gradients_reach_every_parameter(overrides):
    model = _model(**overrides).train()
    model(_images(4), generator=_g(0)).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


# -- the VampPrior ----------------------------------------------------------------------------------------


def test_vamp_prior_is_the_mixture_of_the_posteriors_at_the_pseudo_inputs():
    model = _model(**VAMP)
    u = model.pseudo_inputs().detach()
    assert u.shape == (6, 1, 8, 8) and 0 <= u.min() and u.max() <= 1  # hardtanh: pixel space
    posterior = model.encode(u).latent_dist
    z = torch.randn(5, 4, generator=_g(1))
    reference = MixtureSameFamily(Categorical(logits=torch.zeros(6)), Independent(Normal(posterior.mean, posterior.std), 1))
    torch.testing.assert_close(model.prior_log_prob(z), reference.log_prob(z))
    # The standard normal prior is N(0, I).
    torch.testing.assert_close(_model().prior_log_prob(z), Independent(Normal(torch.zeros(4), torch.ones(4)), 1).log_prob(z))


def test_vamp_samples_draw_a_component_then_its_gaussian():
    model = _model(**VAMP)
    g = _g(4)
    eps = torch.randn(5, 4, generator=g)
    pick = (torch.rand(5, generator=g) * 6).long()
    prior = model.prior_components()
    expected = model.decode(prior.mean[pick] + 0.5 * prior.std[pick] * eps).sample
    assert torch.equal(model.sample(5, generator=_g(4), temperature=0.5), expected)
    assert not torch.equal(model.sample(5, generator=_g(5)), model.sample(5, generator=_g(4)))


def test_vamp_log_likelihood_uses_the_prior_and_does_not_depend_on_chunks():
    model = _model(**VAMP)
    x = _images(3)
    log_w = _reference_log_weights(model, x, 7, seed=6)
    expected = torch.logsumexp(log_w, 0) - math.log(7)
    got = model.log_likelihood(x, num_samples=7, generator=_g(6), channels_last=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    chunked = model.log_likelihood(x, num_samples=7, generator=_g(6), chunk_size=3, channels_last=False)
    torch.testing.assert_close(chunked, got)


def test_vamp_save_load_round_trip(tmp_path):
    model = _model(**VAMP, train_importance_samples=2)
    model.save_pretrained(tmp_path)
    reloaded = VAEModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.prior == "vamp" and reloaded.config.train_importance_samples == 2
    assert torch.equal(reloaded.pseudo_inputs.weight, model.pseudo_inputs.weight)
    x = _images(2)
    assert torch.equal(reloaded.log_likelihood(x, num_samples=4, generator=_g(1)), model.log_likelihood(x, num_samples=4, generator=_g(1)))
    assert torch.equal(reloaded.sample(3, generator=_g(2)), model.sample(3, generator=_g(2)))


def test_cvae_vamp_prior_encodes_the_pseudo_inputs_with_the_null_label():
    model = _model(CVAEModel, CVAEConfig, prior="vamp", num_pseudo_inputs=6, num_classes=3)
    prior = model.prior_components()
    null = model.label_embedding(torch.full((6,), model.null_label), model.dtype)
    mean, logvar = model.encoder(model.pseudo_inputs(), null).chunk(2, dim=1)
    assert torch.equal(prior.mean, mean) and torch.equal(prior.logvar, logvar)
    labelled = model.sample(4, generator=_g(0), labels=torch.tensor([0, 1, 2, 0]))
    assert labelled.shape == (4, 1, 8, 8)


# -- evaluate() and the card ------------------------------------------------------------------------------


def _dataset(n=6):
    return [{"pixel_values": image} for image in _images(n, seed=9)]


def test_evaluate_reports_vamp_diagnostics_against_the_prior():
    model = _model(**VAMP)
    with pytest.warns(UserWarning, match="posterior collapse"):  # (untrained: few units move)
        metrics = evaluate(model, _dataset(), num_importance_samples=3, progress=False, batch_size=3)
    assert metrics["kl"].estimator == "1 posterior sample, VampPrior"
    assert "moment-matched" in metrics["kl_per_dim"].estimator
    # kl_per_dim: closed form against the Gaussian with the mixture's mean and variance per dimension.
    prior = model.prior_components()
    mean = prior.mean.mean(0)
    var = (prior.var + prior.mean.pow(2)).mean(0) - mean.pow(2)
    x = torch.stack([example["pixel_values"] for example in _dataset()])
    posterior = model.encode(x).latent_dist
    expected = kl_divergence(Normal(posterior.mean, posterior.std), Normal(mean, var.sqrt())).mean(0)
    torch.testing.assert_close(torch.tensor(metrics["kl_per_dim"].value), expected, rtol=1e-4, atol=1e-5)
    assert math.isfinite(metrics["nll"].value)
    # The standard normal prior keeps its exact numbers.
    with pytest.warns(UserWarning, match="posterior collapse"):
        plain = evaluate(_model(), _dataset(), num_importance_samples=3, progress=False, batch_size=3)
    assert plain["kl"].estimator == plain["kl_per_dim"].estimator == "closed form"


def test_card_names_the_objective_and_the_prior(tmp_path):
    _model(**VAMP, train_importance_samples=5).save_pretrained(tmp_path / "vamp")
    text = str(cards.render_card(tmp_path / "vamp", "someone/vamp"))
    assert "IWAE with k = 5 posterior samples" in text and "VampPrior" in text and "6 learned pseudo-inputs" in text
    _model().save_pretrained(tmp_path / "plain")
    text = str(cards.render_card(tmp_path / "plain", "someone/plain"))
    assert "Objective: the ELBO; prior p(z): N(0, I)." in text and "VampPrior" not in text


def test_best_checkpoint_follows_the_validation_nll_when_validation_estimates_one():
    """An importance-weighted objective improves the NLL while its ELBO gets worse: where validation reports an NLL
    (IWAE, `validation_importance_samples` > 0; the priors' exact one) the best checkpoint is chosen by it, else by -ELBO."""
    from hf_vae.evaluation import Metric
    from hf_vae.training.loop import _validation_metric

    elbo, nll = Metric(-121.4, "nats", "ELBO", ""), Metric(103.3, "nats", "IWAE, k=100", "")
    assert _validation_metric({"elbo": elbo, "nll": nll}) == pytest.approx(103.3)
    assert _validation_metric({"elbo": elbo}) == pytest.approx(121.4)


def test_recipe_warns_when_an_iwae_run_would_select_its_checkpoint_by_elbo():
    import warnings

    from hf_vae.training import Recipe

    tiny = Path(__file__).resolve().parents[1] / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
    with pytest.warns(UserWarning, match="`evaluation.validation_importance_samples` is 0 with model.config.train_importance_samples=3"):
        Recipe.from_yaml(tiny, ["model.config.train_importance_samples=3", "evaluation.validation_importance_samples=0"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # selecting by the validation NLL, or the ELBO objective: no warning
        Recipe.from_yaml(tiny, ["model.config.train_importance_samples=3", "evaluation.validation_importance_samples=10"])
        Recipe.from_yaml(tiny, ["evaluation.validation_importance_samples=0"])
