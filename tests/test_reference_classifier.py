"""The reference classifier (trained on the 8x8 digits here, in seconds) and `conditional_fidelity` with
a sampler function, the form the two-stage priors use."""

from __future__ import annotations

import pytest
import torch

from hf_vae import data as hd
from hf_vae.fidelity import conditional_fidelity
from hf_vae.reference_classifier import ReferenceClassifier, load_reference_classifier, train_reference_classifier


@pytest.fixture(scope="module")
def classifier():
    model, report = train_reference_classifier("digits", epochs=4, max_shift=0, seed=0)
    return model, report


@pytest.fixture(scope="module")
def test_split():
    view = hd.load_split("digits", "test")
    return torch.stack([view[i]["pixel_values"] for i in range(len(view))]), torch.tensor([view[i]["labels"] for i in range(len(view))])


def test_trains_to_a_useful_accuracy_and_records_it(classifier, test_split):
    model, report = classifier
    assert report["test_accuracy"] >= 0.85, report
    assert report["num_train"] == 1497 and report["num_test"] == 300
    assert model.metadata["test_accuracy"] == report["test_accuracy"]
    images, labels = test_split
    assert model.accuracy(images, labels) == pytest.approx(report["test_accuracy"])
    assert not model.training


def test_same_seed_same_weights_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, _ = train_reference_classifier("digits", epochs=1, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b, _ = train_reference_classifier("digits", epochs=1, seed=3)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_save_and_load_give_identical_predictions(classifier, test_split, tmp_path):
    model, report = classifier
    model.save_pretrained(tmp_path / "clf")
    loaded = load_reference_classifier(tmp_path / "clf")
    assert isinstance(loaded, ReferenceClassifier) and loaded.metadata["test_accuracy"] == report["test_accuracy"]
    images, _ = test_split
    assert torch.equal(loaded(images), model(images))
    with pytest.raises(ValueError, match="directory"):
        load_reference_classifier(tmp_path / "missing")
    with pytest.raises(ValueError, match="pixel_values"):
        loaded(torch.rand(2, 1, 28, 28))


def test_conditional_fidelity_of_a_sampler_function(classifier, test_split):
    model, _ = classifier
    images, labels = test_split
    by_label = [images[labels == y][:20] for y in range(10)]

    seen = [0] * 10

    def real_digits(requested, generator=None):  # a "sampler" returning the next real test digit of each label
        out = []
        for y in requested.tolist():
            out.append(by_label[y][seen[y] % 20])
            seen[y] += 1
        return torch.stack(out)

    metric, per_label = conditional_fidelity(real_digits, model, num_per_label=20, batch_size=37, per_label=True)
    chosen = torch.cat(by_label)
    expected = model.accuracy(chosen, torch.arange(10).repeat_interleave(20))
    assert metric.value == pytest.approx(expected)
    assert metric.unit == "fraction" and "20 samples per label" in metric.estimator
    assert len(per_label.value) == 10 and sum(per_label.value) / 10 == pytest.approx(expected)
    # A sampler that ignores the label: the classifier agrees about one time in ten.
    wrong = conditional_fidelity(lambda requested: real_digits((requested + 1) % 10), model, num_per_label=20)
    assert wrong.value < 0.2
    with pytest.raises(ValueError, match="guidance_scale"):
        conditional_fidelity(real_digits, model, guidance_scale=2.0)
    with pytest.raises(ValueError, match="num_per_label"):
        conditional_fidelity(real_digits, model, num_per_label=0)
    with pytest.raises(ValueError, match="sampler"):
        conditional_fidelity(lambda requested: torch.zeros(3, 1, 8, 8), model, num_per_label=2)
