"""Folders saved by the release before the architecture refactor (tests/fixtures/pre_refactor, made by
make_pre_refactor.py at commit 76d315e) load with the current code and give the same outputs: integer outputs
(code indices, token samples) identical, float outputs equal to float rounding (a relative 1e-6: oneDNN's reduction
order follows the torch thread count, so with OMP_NUM_THREADS=1 a VAE sample moved by 6e-8; any change of the
model's maths moves them by orders of magnitude more)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import hf_vae  # noqa: F401  (registers the families)

FIXTURES = Path(__file__).parent / "fixtures" / "pre_refactor"


def _load(family):
    folder = FIXTURES / family
    model = AutoModel.from_pretrained(folder).eval()
    assert model.config.model_type == family
    return model, load_file(folder / "expected.safetensors")


def _assert_identical(name, got, expected):
    if got.is_floating_point():
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6, msg=lambda m: f"{name}: {m}")
    else:
        assert torch.equal(got, expected), f"{name}: max |diff| {(got - expected).abs().max()}"


@pytest.mark.parametrize("family", ["vae", "cvae"])
@torch.no_grad()
def test_gaussian_latent_fixture_loads_with_identical_outputs(family):
    model, expected = _load(family)
    x, latents = expected["pixel_values"], expected["latents"]
    conditional = family == "cvae"
    kw = {"labels": expected["labels"]} if conditional else {}
    g = lambda: torch.Generator().manual_seed(1)
    out = model(x, generator=g(), **kw)
    for name in ("loss", "elbo", "reconstruction"):
        _assert_identical(name, getattr(out, name), expected[name])
    posterior = model.encode(x, **kw).latent_dist
    _assert_identical("posterior_mean", posterior.mean, expected["posterior_mean"])
    _assert_identical("posterior_logvar", posterior.logvar, expected["posterior_logvar"])
    _assert_identical("decoded", model.decode(latents, **kw).sample, expected["decoded"])
    sample_kw = {"labels": expected["labels"][:3]} if conditional else {}
    _assert_identical("samples", model.sample(3, generator=g(), **sample_kw), expected["samples"])
    _assert_identical("log_likelihood", model.log_likelihood(x, num_samples=5, generator=g(), **kw), expected["log_likelihood"])


@torch.no_grad()
def test_vqvae_fixture_loads_with_identical_outputs():
    model, expected = _load("vqvae")
    x = expected["pixel_values"]
    out = model(x)
    _assert_identical("loss", out.loss, expected["loss"])
    _assert_identical("reconstruction", out.reconstruction, expected["reconstruction"])
    _assert_identical("indices", model.encode_to_indices(x), expected["indices"])
    _assert_identical("decoded", model.decode_from_indices(expected["indices"]), expected["decoded"])


@pytest.mark.parametrize("family", ["pixelcnn_prior", "transformer_prior"])
@torch.no_grad()
def test_token_prior_fixture_loads_with_identical_outputs(family):
    model, expected = _load(family)
    ids, labels = expected["input_ids"], expected["labels"]
    _assert_identical("loss", model(ids, labels=labels).loss, expected["loss"])
    _assert_identical("log_likelihood", model.log_likelihood(ids, labels), expected["log_likelihood"])
    samples = model.sample(3, labels=1, generator=torch.Generator().manual_seed(4))
    _assert_identical("samples", samples, expected["samples"])
