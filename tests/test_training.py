"""The training loop end to end on the tiny digits recipe: outputs, exact resume after SIGKILL,
two-process data parallelism, and recipes that must fail before training starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from hf_vae import data as hd
from hf_vae.evaluation import evaluate
from hf_vae.training import Recipe, train

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
STEPS = 80


def _recipe(output_dir, **overrides) -> Recipe:
    items = [f"training.output_dir={output_dir}", f"training.max_steps={STEPS}", "training.progress=false"]
    items += [f"{k}={v}" for k, v in overrides.items()]
    return Recipe.from_yaml(TINY_RECIPE, items)


def _cli(*args, output_dir, extra=()):
    return [sys.executable, "-m", "hf_vae.cli", "train", str(TINY_RECIPE), "--output_dir", str(output_dir),
            "--set", f"training.max_steps={STEPS}", "--set", "training.progress=false", *extra, *args]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "vae"
    train(_recipe(run_dir))
    return run_dir


def test_run_writes_model_metrics_pngs_and_logs(finished_run):
    for name in ("config.json", "model.safetensors", "modeling_vae.py", "metrics.json", "samples.png",
                 "reconstructions.png", "training_curves.png", "logs/metrics.jsonl"):
        assert (finished_run / name).exists(), name
    assert list((finished_run / "logs").rglob("events.out.tfevents*")), "no TensorBoard event file"
    assert not list(finished_run.glob("checkpoints/*.tmp"))
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["steps"] == STEPS
    assert metrics["test"]["nll"]["estimator"] == "IWAE, k=50" and metrics["test"]["nll"]["unit"] == "nats"
    logs = [json.loads(line) for line in (finished_run / "logs" / "metrics.jsonl").read_text().splitlines()]
    train_losses = [row["train/loss"] for row in logs if "train/loss" in row]
    assert train_losses[-1] < train_losses[0] - 5, train_losses
    assert any("validation/elbo" in row for row in logs)


def test_saved_model_reloads_and_reproduces_its_metrics(finished_run):
    model = AutoModel.from_pretrained(finished_run)
    view = hd.load_split("digits", "test", binarize="static", seed=0)
    metrics = evaluate(model, view, num_importance_samples=50, seed=0, progress=False)
    recorded = json.loads((finished_run / "metrics.json").read_text())["test"]
    assert metrics["nll"].value == pytest.approx(recorded["nll"]["value"], abs=1e-4)
    assert metrics["elbo"].value == pytest.approx(recorded["elbo"]["value"], abs=1e-4)
    samples = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 1, 8, 8)


def test_sigkill_mid_run_resumes_exactly(finished_run, tmp_path):
    run_dir = tmp_path / "killed"
    # Slow the loop down enough to kill it between two checkpoints (save_every = 20 in the recipe).
    process = subprocess.Popen(_cli(output_dir=run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "checkpoint-00000040").exists():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (run_dir / "metrics.json").exists(), "the run finished before SIGKILL: the test proves nothing"
    resumed = subprocess.run(_cli("--resume", output_dir=run_dir), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint-" in resumed.stdout + resumed.stderr
    # Same weights as the uninterrupted run: step, optimizer, scheduler, RNG, data order and the KL
    # warm-up position were all restored.
    a, b = load_file(finished_run / "model.safetensors"), load_file(run_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps), "the log repeats steps after resuming"


def test_two_processes_match_one_process(finished_run, tmp_path):
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "training" / "train.py"),
               str(TINY_RECIPE), "--output_dir", str(run_dir), "--set", f"training.max_steps={STEPS}",
               "--set", "training.progress=false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((finished_run / "metrics.json").read_text())["test"]["nll"]["value"]
    summary = json.loads((run_dir / "metrics.json").read_text())
    # A real process group: each process saw half of every batch (a launcher that starts processes that
    # each train alone would give the same NLL too).
    assert summary["num_processes"] == 2
    two = summary["test"]["nll"]["value"]
    assert abs(one - two) < 1.0, (one, two)


def test_bf16_mixed_precision_and_accumulation_train(tmp_path, capfd):
    from transformers.utils import logging as transformers_logging

    run_dir = tmp_path / "bf16"
    train(_recipe(run_dir, **{"training.mixed_precision": "bf16", "training.gradient_accumulation_steps": 2,
                              "training.max_steps": 20, "training.eval_every": 10, "evaluation.num_importance_samples": 0}))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 20 and "nll" not in metrics["test"]
    # Best-model and final saves stay quiet (no per-save bar through the training bar), and the
    # global transformers setting is given back afterwards.
    assert "Writing model shards" not in capfd.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()


def test_time_budget_validates_the_last_step_before_stopping(tmp_path):
    # A budget spent by the first step, validation every 1,000 steps: the run stops at step 1 and that step is
    # validated and kept as the best weights (before, a time-capped run dropped the steps since its last validation).
    run_dir = tmp_path / "capped"
    train(_recipe(run_dir, **{"training.max_time_minutes": 1e-9, "training.eval_every": 1000,
                              "evaluation.num_importance_samples": 0}))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 1 and metrics["best_step"] == 1
    logs = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logs if "validation/elbo" in row] == [1]
    assert (run_dir / "best_model" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.lerning_rate=0.1"], "training.lerning_rate"),
        (["optimizer.lr=0.1"], "optimizer"),
        (["training.batch_size=0"], "training.batch_size"),
        (["data.train_binarize=sometimes"], "data.train_binarize"),
        (["hub.push_to_hub=true"], "hub.hub_model_id"),
    ],
)
def test_bad_recipes_fail_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        Recipe.from_yaml(TINY_RECIPE, overrides)


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads `2e-3` as a string; in a recipe file and in `--set` it is the float 0.002."""
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(TINY_RECIPE.read_text().replace("training:", "training:\n  weight_decay: 5e-4", 1))
    recipe = Recipe.from_yaml(recipe_file, ["training.learning_rate=2e-3", "model.config.beta=4E0"])
    assert recipe.training.weight_decay == 5e-4 and recipe.training.learning_rate == 2e-3
    assert recipe.model.config["beta"] == 4.0 and isinstance(recipe.model.config["beta"], float)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data.dataset": "no-such-dataset-folder/./x"}, "name_or_path"),
        ({"model.config.image_size": 16}, r"model\.config\.image_size"),
        ({"model.config.num_channels": 3}, r"model\.config\.num_channels"),
        ({"model.config.latent_dim": 0}, "latent_dim"),
        ({"model.family": "gan"}, r"model\.family"),
    ],
)
def test_mismatches_fail_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(_recipe(tmp_path / "bad", **overrides))
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_cli_reports_bad_recipe_without_traceback(tmp_path):
    result = subprocess.run(_cli(output_dir=tmp_path / "x", extra=["--set", "training.nope=1"]),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "training.nope" in result.stderr and "Traceback" not in result.stderr


def test_cli_card_writes_beside_the_run(finished_run, monkeypatch, tmp_path):
    from hf_vae.cli import main

    monkeypatch.chdir(tmp_path)  # the card must not land in the current folder
    main(["card", str(finished_run)])
    card = (finished_run / "README.md").read_text()
    assert "library_name: hf_vae" in card and "IWAE, k=50" in card
    assert not (tmp_path / "README.md").exists()


def test_step_seed_and_dynamic_binarization_draw_the_recorded_stream():
    """The trainer's per-step generator and binarization are the data layer's; their stream is pinned,
    since a change would change every run (and the benchmark numbers)."""
    from hf_vae.data import binarize_pixels, derived_seed, seeded_generator
    from hf_vae.training import build_model, model_inputs

    # Values of the pre-refactor trainer's `_step_seed(seed, step, micro, rank)`.
    assert derived_seed(0, 1, 2, 3) == 6463705122041852897 and derived_seed(7, 0, 0, 0) == 8460147692890830636
    model = build_model(_recipe("unused"))
    grey = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    inputs = model_inputs(model, {"pixel_values": grey, "labels": torch.zeros(4, dtype=torch.long)},
                          generator=seeded_generator(0, 1, 2, 3), global_step=5, dynamic_binarization=True)
    expected = torch.bernoulli(grey, generator=torch.Generator().manual_seed(6463705122041852897))
    assert torch.equal(inputs["pixel_values"], expected)
    assert torch.equal(binarize_pixels(grey, seeded_generator(0, 1, 2, 3)), expected)
    # The family protocol decides the rest: the VAE takes the step, an unconditional model no labels.
    assert inputs["global_step"] == 5 and "labels" not in inputs
    static = model_inputs(model, {"pixel_values": grey}, generator=seeded_generator(0), global_step=0, dynamic_binarization=False)
    assert static["pixel_values"] is grey


def test_model_inputs_and_pngs_follow_the_family_protocol(tmp_path):
    from hf_vae.data import TensorDictDataset
    from hf_vae.training import build_model, model_inputs, save_pngs

    configs = REPO / "hf_vae" / "recipes"
    vqvae = build_model(Recipe.from_yaml(configs / "vqvae_digits_tiny.yaml"))
    cvae = build_model(Recipe.from_yaml(configs / "cvae_digits_tiny.yaml"))
    batch = {"pixel_values": torch.rand(2, 1, 8, 8), "labels": torch.tensor([3, 4])}
    vq_inputs = model_inputs(vqvae, batch, generator=torch.Generator(), global_step=3, dynamic_binarization=False)
    assert set(vq_inputs) == {"generator", "pixel_values"}  # takes_global_step is False, unconditional
    cvae_inputs = model_inputs(cvae, batch, generator=torch.Generator(), global_step=3, dynamic_binarization=False)
    assert torch.equal(cvae_inputs["labels"], batch["labels"]) and cvae_inputs["global_step"] == 3
    # capabilities: the VQ-VAE reconstructs but does not sample; the CVAE does both.
    test = TensorDictDataset({"pixel_values": torch.rand(3, 1, 8, 8), "labels": torch.tensor([0, 1, 2])})
    for name, model, written in (("vq", vqvae, ["reconstructions.png"]), ("cvae", cvae, ["reconstructions.png", "samples.png"])):
        (tmp_path / name).mkdir()
        save_pngs(model.eval(), test, tmp_path / name, num_samples=4)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == written
