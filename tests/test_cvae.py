"""Conditional VAE: the shared contracts plus labels, label dropout and classifier-free guidance."""

import pytest
import torch

from hf_vae import CVAEConfig, CVAEModel, VAEConfig, VAEModel
from hf_vae.distributions import DiagonalGaussian, standard_normal_log_prob

from .model_tester import ModelTesterMixin, gaussian_latent_identities, gaussian_latent_per_example

TINY = dict(image_size=8, num_channels=1, hidden_channels=[8, 16], latent_dim=4, num_res_blocks=1,
            num_classes=3, label_embedding_dim=4)


class TestCVAE(ModelTesterMixin):
    model_class = CVAEModel
    config_class = CVAEConfig
    config_kwargs = TINY
    bad_config_values = [
        ("num_classes", 1),
        ("num_classes", 2.0),
        ("label_embedding", "embedding"),
        ("label_embedding_dim", 0),
        ("label_dropout", 1.0),
        ("label_dropout", -0.1),
        # the VAE's own checks come along
        ("latent_dim", 0),
        ("likelihood", "poisson"),
        ("image_size", 10),
    ]

    def get_inputs(self, batch_size: int = 4, seed: int = 0) -> dict:
        inputs = super().get_inputs(batch_size, seed)
        g = torch.Generator().manual_seed(seed + 1)
        inputs["labels"] = torch.randint(0, TINY["num_classes"], (batch_size,), generator=g)
        return inputs

    def sample_outputs(self, model, generator):
        return model.sample(2, labels=torch.tensor([0, 2]), guidance_scale=2.0, generator=generator)

    def named_term_identities(self, model, out):
        return gaussian_latent_identities(model, out)

    def per_example_outputs(self, model, inputs):
        return gaussian_latent_per_example(model, inputs)


def _model(**overrides):
    torch.manual_seed(0)
    return CVAEModel(CVAEConfig(**{**TINY, **overrides})).eval()


def _batch(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g).round(), torch.randint(0, 3, (n,), generator=g)


def test_config_and_model_extend_the_vae():
    config = CVAEConfig(**TINY)
    assert isinstance(config, VAEConfig) and config.model_type == "cvae"
    # The CVAE is the VAE with condition hooks: objective, importance sampling and interpolation are the VAE's.
    assert issubclass(CVAEModel, VAEModel)
    for method in ("forward", "encode", "decode", "sample", "reconstruct", "log_likelihood", "kl_weight"):
        assert getattr(CVAEModel, method) is getattr(VAEModel, method), method
    assert config.label_dim == 4
    assert CVAEConfig(**{**TINY, "label_embedding": "one_hot"}).label_dim == 4  # 3 classes + null


@pytest.mark.parametrize(
    "labels, expected",
    [
        (None, "None"),
        (torch.tensor([[0], [1], [2]]), "shape"),
        (torch.tensor([0, 1]), "shape"),
        (torch.tensor([0.0, 1.0, 2.0]), "integer"),
        (torch.tensor([True, False, True]), "integer"),
        (torch.tensor([0, 1, 3]), r"\[0, 3\)"),  # 3 is the internal null label, not a class
        (torch.tensor([0, -1, 2]), r"\[0, 3\)"),
        (["0", 1, 2], "no class names"),  # lists of ids and class names are taken; "0" is no name here
    ],
    ids=["missing", "rank", "length", "float", "bool", "too-large", "negative", "unknown-name"],
)
def test_bad_labels_raise(labels, expected):
    model = _model()
    x, _ = _batch()
    for call in (lambda: model(x, labels), lambda: model.encode(x, labels), lambda: model.reconstruct(x, labels)):
        with pytest.raises(ValueError, match="labels") as info:
            call()
        assert info.match(expected)
    if labels is not None:
        with pytest.raises(ValueError, match="labels"):
            model.decode(torch.zeros(3, 4), labels)
        with pytest.raises(ValueError, match="labels"):
            model.log_likelihood(x, labels, num_samples=2)


def test_bad_sample_arguments_raise():
    model = _model()
    with pytest.raises(ValueError, match="labels"):
        model.sample(2, labels=3)
    with pytest.raises(ValueError, match="labels"):
        model.sample(2, labels=torch.tensor([0, 1, 2]))  # length disagrees with num_samples
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(None, labels=1)  # the number of images is always num_samples
    with pytest.raises(ValueError, match="guidance_scale"):
        model.sample(2, labels=1, guidance_scale=-1.0)
    with pytest.raises(ValueError, match="guidance_scale"):
        model.sample(2, guidance_scale=3.0)  # nothing to guide towards without labels
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, labels=1, temperature=0.0)


def test_labels_condition_encoder_and_decoder():
    model = _model()
    x, y = _batch()
    other = (y + 1) % 3
    assert not torch.equal(model.encode(x, y).latent_dist.mean, model.encode(x, other).latent_dist.mean)
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(model.decode(z, y).sample, model.decode(z, other).sample)
    # `labels=None` is the null label.
    null = torch.full((3,), model.null_label)
    params = model.decoder(z, model.label_embedding(null, torch.float32))
    torch.testing.assert_close(model.decode(z).sample, torch.sigmoid(params))


def test_guidance_scale_one_is_plain_conditional_decoding():
    model = _model()
    _, y = _batch()
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.decode(z, y, guidance_scale=1.0).sample, model.decode(z, y).sample)
    sampled = model.sample(3, labels=y, guidance_scale=1.0, generator=torch.Generator().manual_seed(3))
    drawn = torch.randn(3, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sampled, model.decode(drawn, y).sample)
    # One class id for every sample is the same as a tensor of that id.
    a = model.sample(3, labels=2, generator=torch.Generator().manual_seed(3))
    b = model.sample(3, labels=torch.tensor([2, 2, 2]), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_guidance_mixes_logits_for_bernoulli():
    model = _model()
    _, y = _batch()
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    cond = model.decoder(z, model.label_embedding(y, torch.float32))
    uncond = model.decoder(z, model.label_embedding(torch.full_like(y, 3), torch.float32))
    guided = model.decode(z, y, guidance_scale=3.0).sample
    torch.testing.assert_close(guided, torch.sigmoid(uncond + 3.0 * (cond - uncond)))
    assert not torch.allclose(guided, model.decode(z, y).sample)
    torch.testing.assert_close(model.decode(z, y, guidance_scale=0.0).sample, model.decode(z).sample)


def test_guidance_moves_the_mean_for_gaussians():
    model = _model(likelihood="gaussian", label_embedding="one_hot")  # learned scale: 2 params per pixel
    _, y = _batch()
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    cond = model.decoder(z, model.label_embedding(y, torch.float32))
    uncond = model.decoder(z, model.label_embedding(torch.full_like(y, 3), torch.float32))
    guided = model.decode(z, y, guidance_scale=2.5).sample
    torch.testing.assert_close(guided, uncond[:, :1] + 2.5 * (cond[:, :1] - uncond[:, :1]))
    # A draw uses the guided mean with the conditional scale.
    drawn = model.decode(z, y, guidance_scale=2.5, output="sample", generator=torch.Generator().manual_seed(1)).sample
    eps = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(drawn, guided + torch.exp(cond[:, 1:].clamp(min=-7.0)) * eps)


def test_label_dropout_is_reproducible_and_only_in_training():
    model = _model(label_dropout=0.5)
    labels = torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(model.drop_labels(labels, torch.Generator().manual_seed(1)), labels)  # eval: untouched
    model.train()
    a = model.drop_labels(labels, torch.Generator().manual_seed(1))
    b = model.drop_labels(labels, torch.Generator().manual_seed(1))
    c = model.drop_labels(labels, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    dropped = a == model.null_label
    assert 60 < int(dropped.sum()) < 140 and torch.equal(a[~dropped], labels[~dropped])

    # The forward applies it in training only: without label dropout train and eval losses agree.
    x, y = _batch()
    train = model(x, y, generator=torch.Generator().manual_seed(4)).loss
    assert torch.equal(train, model(x, y, generator=torch.Generator().manual_seed(4)).loss)
    undropped = _model(label_dropout=0.0).train()
    assert torch.equal(
        undropped(x, y, generator=torch.Generator().manual_seed(4)).loss,
        undropped.eval()(x, y, generator=torch.Generator().manual_seed(4)).loss,
    )


def test_loss_is_negative_elbo_with_beta():
    model = _model(beta=2.0)
    x, y = _batch()
    out = model(x, y, generator=torch.Generator().manual_seed(0))
    assert out.loss.item() == pytest.approx(out.reconstruction_loss.item() + 2.0 * out.kl_loss.item(), rel=1e-6)
    assert out.elbo.shape == (3,) and out.reconstruction.shape == (3, 1, 8, 8)


def test_log_likelihood_shape_finite_and_chunk_independent():
    model = _model()
    x, y = _batch()
    a = model.log_likelihood(x, y, num_samples=20, generator=torch.Generator().manual_seed(0), chunk_size=3)
    b = model.log_likelihood(x, y, num_samples=20, generator=torch.Generator().manual_seed(0), chunk_size=10_000)
    assert a.shape == (3,) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    # k = 1 with the forward's noise is the forward's ELBO sample (eval mode: no label dropout): the
    # forward's closed-form KL swapped for the single-sample log p(z) - log q(z|x, y) at its z.
    k1 = model.log_likelihood(x, y, num_samples=1, generator=torch.Generator().manual_seed(5))
    out = model(x, y, generator=torch.Generator().manual_seed(5))
    posterior = DiagonalGaussian(out.posterior_mean, out.posterior_logvar)
    monte_carlo = out.elbo + posterior.kl() + standard_normal_log_prob(out.latents) - posterior.log_prob(out.latents)
    torch.testing.assert_close(k1, monte_carlo, rtol=1e-5, atol=1e-4)
    unconditional = model.log_likelihood(x, None, num_samples=20, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(unconditional).all() and not torch.allclose(unconditional, a)
    with pytest.raises(ValueError, match="num_samples"):
        model.log_likelihood(x, y, num_samples=0)


def test_reconstruct_and_interpolate_endpoints():
    model = _model()
    x, y = _batch(2)
    torch.testing.assert_close(model.reconstruct(x, y), model.decode(model.encode(x, y).latent_dist.mean, y).sample)
    path = model.interpolate(x[0], x[1], int(y[0]), y[1], steps=4, method="slerp")
    assert path.shape == (4, 1, 8, 8)
    torch.testing.assert_close(path[0], model.reconstruct(x[:1], y[:1])[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path[-1], model.reconstruct(x[1:], y[1:])[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="label_b"):
        model.interpolate(x[0], x[1], 0, 7)
