"""The "add a family" steps of docs/design.md, done for a throwaway family: a factorized Bernoulli model
of binary images (one logit per pixel, exact likelihood). Nothing outside this file is edited, and the
trainer, `evaluate`, the pipelines, the model cards and `AutoModel` all take the new family."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, pipeline
from transformers.utils import ModelOutput

import hf_vae  # noqa: F401  (registers the shipped families)
from hf_vae import cards, families
from hf_vae.data import load_split
from hf_vae.configuration_utils import HfVaeConfig
from hf_vae.distributions import nats_to_bits_per_dim
from hf_vae.evaluation import EVALUATORS, Metric, evaluate, register_evaluator
from hf_vae.modeling_utils import HfVaePreTrainedModel
from hf_vae.validation import check_generator, check_int, check_labels, check_number, check_pixel_values


# Step 1: the config, validated on construction.
class PixelBernoulliConfig(HfVaeConfig):
    """A factorized Bernoulli model of `num_channels` x `image_size` x `image_size` binary images."""

    model_type = "pixel_bernoulli_test"

    image_size: int = 8
    num_channels: int = 1

    def _check_fields(self) -> None:
        check_int("image_size", self.image_size, minimum=1)
        check_int("num_channels", self.num_channels, minimum=1)


@dataclass
class PixelBernoulliOutput(ModelOutput):
    loss: torch.Tensor | None = None
    log_likelihood: torch.Tensor | None = None


# Steps 2 and 3: the model, with the family protocol declared on the class.
class PixelBernoulliModel(HfVaePreTrainedModel):
    config_class = PixelBernoulliConfig
    input_kind = "images"
    evaluator = "pixel_bernoulli_exact"
    card_template = "pixel_bernoulli_test.md.j2"
    capabilities = frozenset({"sample", "score"})

    def __init__(self, config: PixelBernoulliConfig):
        super().__init__(config)
        self.logits = nn.Parameter(torch.zeros(config.num_channels, config.image_size, config.image_size))
        self.post_init()

    def log_likelihood(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per image in nats, shape (B,)."""
        check_pixel_values(pixel_values, self.config.num_channels, self.config.image_size)
        log_p = -nn.functional.binary_cross_entropy_with_logits(
            self.logits.expand_as(pixel_values), pixel_values, reduction="none")
        return log_p.flatten(1).sum(dim=1)

    def forward(self, pixel_values, labels=None, *, generator=None, return_dict=True):
        check_generator(generator)
        log_p = self.log_likelihood(pixel_values)
        return PixelBernoulliOutput(loss=-log_p.mean(), log_likelihood=log_p)

    @torch.no_grad()
    def sample(self, num_samples, *, generator=None, labels=None, temperature=1.0, guidance_scale=1.0):
        check_int("num_samples", num_samples, minimum=1)
        check_generator(generator)
        check_labels(labels, None, num_samples)
        check_number("temperature", temperature, minimum=0.0, exclusive_minimum=True)
        if guidance_scale != 1:
            raise ValueError(f"`guidance_scale` must be 1 for an unconditional model, got {guidance_scale!r}")
        probs = torch.sigmoid(self.logits / temperature).expand(num_samples, *self.logits.shape)
        return torch.bernoulli(probs, generator=generator)


@pytest.fixture
def new_family(tmp_path, monkeypatch):
    """Steps 4 to 6 (evaluator, card template, registration), undone after the test."""
    monkeypatch.setattr(families, "FAMILIES", dict(families.FAMILIES))
    monkeypatch.setattr(cards, "CARD_FAMILIES", dict(cards.CARD_FAMILIES))
    monkeypatch.setitem(EVALUATORS, "pixel_bernoulli_exact", None)

    @register_evaluator("pixel_bernoulli_exact")
    def evaluate_exact(model, loader, *, num_importance_samples, seed, progress):
        log_p = torch.cat([model.log_likelihood(batch["pixel_values"]) for batch in loader])
        dims = model.config.num_channels * model.config.image_size**2
        return {
            "nll": Metric(float(-log_p.mean()), "nats", "exact", "Negative log-likelihood"),
            "bits_per_dim": Metric(float(nats_to_bits_per_dim(-log_p.mean(), dims)), "bits/dim", "exact", "Bits per dimension"),
            "num_examples": Metric(len(log_p), "examples", "count", "Test examples"),
        }

    templates = tmp_path / "cards"
    templates.mkdir()
    (templates / "pixel_bernoulli_test.md.j2").write_text(
        '{% extends "_base.md.j2" %}\n{% block summary %}A pixel-wise Bernoulli model.{% endblock %}\n'
        "{% block usage %}\nimport hf_vae\n{% endblock %}\n")
    families.register_family(PixelBernoulliConfig, PixelBernoulliModel, tags=("test-family",),
                             index_metrics=("nll", "bits_per_dim"), template_dir=templates)
    return PixelBernoulliModel


def test_register_family_refuses_an_undeclared_protocol():
    class Undeclared(HfVaePreTrainedModel):
        config_class = PixelBernoulliConfig

    with pytest.raises(ValueError, match=r"`Undeclared.input_kind` must be declared"):
        families.register_family(PixelBernoulliConfig, Undeclared)


def test_a_new_family_trains_evaluates_generates_and_gets_a_card(new_family, tmp_path):
    from hf_vae.training import Recipe, train

    assert "pixel_bernoulli_test" in families.model_types()
    config = AutoConfig.for_model("pixel_bernoulli_test", image_size=8)
    assert isinstance(AutoModel.from_config(config), new_family)
    with pytest.raises(ValueError, match="`image_size` must be an int >= 1, got 0"):
        PixelBernoulliConfig(image_size=0)

    # The trainer: a recipe naming the family trains it (the loss falls), evaluates it with the family's
    # evaluator, writes the sample grid its capabilities promise, and saves a folder AutoModel loads.
    recipe = Recipe.from_dict({
        "model": {"family": "pixel_bernoulli_test", "config": {"image_size": 8}},
        "data": {"dataset": "digits", "train_binarize": "dynamic", "eval_binarize": "static"},
        "training": {"output_dir": str(tmp_path / "run"), "max_steps": 30, "batch_size": 32, "learning_rate": 0.1,
                     "log_every": 5, "eval_every": 30, "save_every": 30, "progress": False, "trackers": ["jsonl"]},
        "evaluation": {"num_importance_samples": 0},
    })
    run_dir = train(recipe)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["nll"]["estimator"] == "exact"
    logs = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train/loss"] for row in logs if "train/loss" in row]
    assert losses[-1] < losses[0] - 5, losses
    assert (run_dir / "samples.png").is_file() and not (run_dir / "reconstructions.png").exists()
    model = AutoModel.from_pretrained(run_dir).eval()
    assert type(model) is new_family

    # evaluate(), the generation pipeline and the model card.
    test = load_split("digits", "test", binarize="static")
    assert evaluate(model, test, progress=False)["nll"].value == pytest.approx(metrics["test"]["nll"]["value"], rel=1e-5)
    images = pipeline("unconditional-image-generation", model=model)(num_samples=3, seed=0)
    assert len(images) == 3 and images[0].size == (8, 8)
    with pytest.raises(ValueError, match="`labels`"):
        pipeline("unconditional-image-generation", model=model)(num_samples=2, labels=1, seed=0)
    card = cards.render_card(run_dir, "someone/pixel-bernoulli", dataset_id="someone/digits")  # model-index: Hub ids only
    assert "A pixel-wise Bernoulli model." in card.text
    assert "test-family" in card.data.tags
    assert [r.metric_type for r in card.data.eval_results] == ["nll", "bits_per_dim"]
