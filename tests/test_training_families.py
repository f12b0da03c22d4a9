"""The CVAE and VQ-VAE through the one training loop, on their tiny digits recipes: run outputs, codebook
health in the training log, the VQ-VAE metrics of `evaluate`, and conditional fidelity wired into it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from hf_vae import data as hd
from hf_vae.evaluation import evaluate
from hf_vae.training import Recipe, train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "hf_vae" / "recipes"
STEPS = 40
VQ_METRICS = ("reconstruction_loss", "reconstruction_bits_per_dim", "mse", "psnr", "code_bits_per_dim",
              "code_bits_per_token", "perplexity", "codes_used_fraction", "codes_used", "dead_codes")


def _train(name: str, output_dir: Path) -> Path:
    recipe = Recipe.from_yaml(CONFIGS / f"{name}.yaml", [f"training.output_dir={output_dir}", f"training.max_steps={STEPS}",
                                                         "training.progress=false"])
    return train(recipe)


def _logs(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def vqvae_run(tmp_path_factory):
    return _train("vqvae_digits_tiny", tmp_path_factory.mktemp("run") / "vqvae")


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    return _train("cvae_digits_tiny", tmp_path_factory.mktemp("run") / "cvae")


def test_vqvae_run_writes_outputs_and_logs_codebook_health_every_log_step(vqvae_run):
    for name in ("config.json", "model.safetensors", "modeling_vqvae.py", "quantization.py", "metrics.json",
                 "reconstructions.png", "training_curves.png", "logs/metrics.jsonl"):
        assert (vqvae_run / name).exists(), name
    train_rows = [row for row in _logs(vqvae_run) if "train/loss" in row]
    assert [row["step"] for row in train_rows] == list(range(10, STEPS + 1, 10))
    for row in train_rows:
        assert 1.0 <= row["train/perplexity"] <= 32
        assert 0.0 < row["train/codes_used_fraction"] <= 1.0
        assert 0.0 <= row["train/dead_codes"] <= 32
    validation = [row for row in _logs(vqvae_run) if "validation/perplexity" in row]
    assert [row["step"] for row in validation] == [20, 40]
    assert train_rows[-1]["train/reconstruction_loss"] < train_rows[0]["train/reconstruction_loss"]


def test_vqvae_metrics_json_and_evaluate_of_the_reloaded_model(vqvae_run):
    recorded = json.loads((vqvae_run / "metrics.json").read_text())["test"]
    assert set(VQ_METRICS) <= set(recorded)
    assert recorded["psnr"]["unit"] == "dB" and recorded["reconstruction_loss"]["unit"] == "nats"
    # 4x4 codes of log2(32) = 5 bits for 8x8 = 64 pixels.
    assert recorded["code_bits_per_dim"]["value"] == pytest.approx(16 * 5 / 64)
    assert recorded["code_bits_per_token"]["value"] == pytest.approx(5.0)

    model = AutoModel.from_pretrained(vqvae_run)
    test = hd.load_split("digits", "test", binarize="static", seed=0)
    metrics = evaluate(model, test, batch_size=64, progress=False)  # other batching: same split-level numbers
    for name in VQ_METRICS:
        assert metrics[name].value == pytest.approx(recorded[name]["value"], rel=1e-5), name

    # Codebook health is over the whole split, from the counts of every code id.
    images = torch.stack([test[i]["pixel_values"] for i in range(len(test))])
    counts = torch.bincount(model.encode_to_indices(images).flatten(), minlength=32).float()
    assert metrics["codes_used"].value == int((counts > 0).sum())
    assert metrics["dead_codes"].value == 32 - metrics["codes_used"].value
    probs = counts / counts.sum()
    perplexity = math.exp(-(probs[probs > 0] * probs[probs > 0].log()).sum())
    assert metrics["perplexity"].value == pytest.approx(perplexity, rel=1e-4)
    recon = model.reconstruct(images)
    mse = (recon - images).pow(2).flatten(1).mean(1)
    assert metrics["mse"].value == pytest.approx(float(mse.mean()), rel=1e-4)
    assert metrics["psnr"].value == pytest.approx(float((-10 * mse.log10()).mean()), rel=1e-4)


def test_cvae_run_writes_outputs_and_conditional_fidelity_is_wired_into_evaluate(cvae_run):
    for name in ("config.json", "model.safetensors", "modeling_cvae.py", "metrics.json", "samples.png",
                 "reconstructions.png", "training_curves.png", "logs/metrics.jsonl"):
        assert (cvae_run / name).exists(), name
    recorded = json.loads((cvae_run / "metrics.json").read_text())["test"]
    assert recorded["nll"]["estimator"] == "IWAE, k=20"
    assert "conditional_fidelity" not in recorded  # no classifier in a training run

    class AlwaysThree(torch.nn.Module):  # a "classifier" whose verdict is known in advance
        num_classes = 10

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Linear(1, 1)

        def forward(self, images):
            return torch.nn.functional.one_hot(torch.full((len(images),), 3), 10).float()

    model = AutoModel.from_pretrained(cvae_run)
    test = hd.load_split("digits", "test", binarize="static", seed=0)
    metrics = evaluate(model, test, num_importance_samples=0, max_examples=50, progress=False,
                       classifier=AlwaysThree(), num_per_label=4, guidance_scale=[1.0, 2.0])
    assert metrics["conditional_fidelity"].value == pytest.approx(0.1)
    assert metrics["conditional_fidelity_per_label"].value == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert metrics["conditional_fidelity_guided_2"].value == pytest.approx(0.1)
    assert "guidance scale 2" in metrics["conditional_fidelity_guided_2"].estimator
    assert "4 samples per label" in metrics["conditional_fidelity"].estimator
    assert metrics["elbo"].value == pytest.approx(
        evaluate(model, test, num_importance_samples=0, max_examples=50, progress=False)["elbo"].value)
