"""The one evaluate() API: estimator-labelled numbers, exact reproducibility, active units, collapse."""

import math
import warnings

import pytest
import torch

from hf_vae import VAEConfig, VAEModel
from hf_vae.evaluation import Metric, evaluate, to_flat_dict


class _Images(torch.utils.data.Dataset):
    def __init__(self, n=20, seed=0):
        self.x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)).round()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": torch.tensor(i % 10)}


def _model(**kw):
    torch.manual_seed(0)
    return VAEModel(VAEConfig(image_size=8, hidden_channels=[8, 16], latent_dim=4, **kw))


def test_metrics_carry_units_and_estimators_and_are_reproducible():
    model, data = _model(), _Images()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = evaluate(model, data, batch_size=7, num_importance_samples=20, seed=3, progress=False)
        b = evaluate(model, data, batch_size=7, num_importance_samples=20, seed=3, progress=False)
    assert a["nll"].estimator == "IWAE, k=20" and a["nll"].unit == "nats"
    assert a["elbo"].estimator.startswith("ELBO") and a["bits_per_dim"].unit == "bits/dim"
    assert to_flat_dict(a) == to_flat_dict(b)
    assert a["num_examples"].value == 20
    # bits/dim is the NLL over 64 dimensions in base 2; the IWAE bound is above the ELBO.
    assert a["bits_per_dim"].value == pytest.approx(a["nll"].value / (64 * math.log(2)))
    assert -a["nll"].value >= a["elbo"].value - 0.5
    assert a["elbo"].value == pytest.approx(-(a["reconstruction_loss"].value + a["kl"].value), rel=1e-5)
    assert len(a["kl_per_dim"].value) == 4
    assert sum(a["kl_per_dim"].value) == pytest.approx(a["kl"].value, rel=1e-4)
    assert "IWAE, k=20" in str(a["nll"])


def test_zero_importance_samples_reports_elbo_only_and_model_mode_is_restored():
    model = _model().train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = evaluate(model, _Images(), num_importance_samples=0, progress=False, max_examples=5)
    assert "nll" not in metrics and metrics["num_examples"].value == 5
    assert model.training


def test_active_units_and_posterior_collapse_warning():
    model = _model()
    # Make two latent means follow the input and zero the other two: exactly 2 active units.
    with torch.no_grad():
        layer = model.encoder.to_moments
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[0, :] = 2.0
        layer.weight[1, :] = -2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = evaluate(model, _Images(40), num_importance_samples=0, progress=False)
    assert metrics["active_units"].value == 2 and not metrics["posterior_collapse"].value
    with torch.no_grad():
        model.encoder.to_moments.weight.zero_()
    with pytest.warns(UserWarning, match="posterior collapse"):
        collapsed = evaluate(model, _Images(40), num_importance_samples=0, progress=False)
    assert collapsed["active_units"].value == 0 and collapsed["posterior_collapse"].value


def test_continuous_likelihood_bits_are_flagged_as_a_density():
    model = _model(likelihood="gaussian", likelihood_scale=0.1)
    metrics = evaluate(model, _Images(), num_importance_samples=2, progress=False)
    assert "not a probability" in metrics["bits_per_dim"].description


def test_bad_arguments():
    with pytest.raises(ValueError, match="model"):
        evaluate(torch.nn.Linear(2, 2), _Images())
    with pytest.raises(ValueError, match="num_importance_samples"):
        evaluate(_model(), _Images(), num_importance_samples=-1)
    assert isinstance(Metric(1.0, "nats", "exact", "x").to_dict(), dict)


def test_token_prior_evaluation_reads_indices_and_is_exact():
    """A prior is scored on `indices` grids (its main input) with the exact likelihood: the mean NLL equals
    -log_likelihood averaged over the examples, in any batching."""
    from hf_vae import TransformerPriorConfig, TransformerPriorModel

    torch.manual_seed(0)
    prior = TransformerPriorModel(TransformerPriorConfig(vocab_size=5, grid_size=3, num_classes=2, num_layers=1,
                                                         num_heads=2, hidden_size=8)).eval()
    g = torch.Generator().manual_seed(0)
    indices, labels = torch.randint(0, 5, (6, 3, 3), generator=g), torch.tensor([0, 1, 0, 1, 1, 0])
    examples = [{"indices": indices[i], "labels": labels[i]} for i in range(6)]
    metrics = evaluate(prior, examples, batch_size=4, progress=False)
    expected = -prior.log_likelihood(indices, labels).mean().item()
    assert metrics["num_examples"].value == 6 and metrics["nll"].estimator == "exact"
    assert metrics["nll"].value == pytest.approx(expected, rel=1e-6)
    assert metrics["bits_per_token"].value == pytest.approx(expected / (9 * math.log(2)), rel=1e-6)
