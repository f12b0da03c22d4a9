"""Regularisation options of the trainer: weight EMA for evaluation (`training.ema_decay`) and small-shift
augmentation (`data.augment_shift`): the arithmetic, the recipe checks, what is evaluated and saved, every
family, and exact resume with both on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from hf_vae.data import binarize_pixels, seeded_generator
from hf_vae.training import Recipe, train
from hf_vae.training import loop as training_loop
from hf_vae.training.augmentation import random_shift
from hf_vae.training.ema import WeightEMA
from hf_vae.training.splits import model_inputs

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "hf_vae" / "recipes"
STEPS = 40
REGULARISED = ["training.ema_decay=0.9", "training.ema_start_step=5", "data.augment_shift=1"]


def _recipe(name: str, output_dir, *overrides: str) -> Recipe:
    return Recipe.from_yaml(CONFIGS / f"{name}.yaml", [f"training.output_dir={output_dir}", f"training.max_steps={STEPS}",
                                                       "training.progress=false", "evaluation.num_importance_samples=5",
                                                       *overrides])


# ------------------------------------------------------------------------------------------- shifts


def test_random_shift_translates_each_image_with_zero_fill():
    images = torch.rand(16, 2, 6, 7) + 1  # no zeros of their own: every 0 below is fill
    shifted = random_shift(images, 2, generator=torch.Generator().manual_seed(3))
    offsets = torch.randint(-2, 3, (2, 16), generator=torch.Generator().manual_seed(3))  # what it drew
    assert shifted.shape == images.shape and shifted.dtype == images.dtype
    assert offsets.abs().max() == 2 and len(set(offsets.flatten().tolist())) == 5
    for b, (dy, dx) in enumerate(offsets.T.tolist()):
        expected = torch.zeros_like(images[b])
        ys, xs = slice(max(dy, 0), 6 + min(dy, 0)), slice(max(dx, 0), 7 + min(dx, 0))
        expected[:, ys, xs] = images[b, :, max(-dy, 0):6 - max(dy, 0), max(-dx, 0):7 - max(dx, 0)]
        assert torch.equal(shifted[b], expected), (b, dy, dx)
    again = random_shift(images, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(shifted, again)  # seeded


def test_random_shift_off_draws_nothing_and_rejects_bad_arguments():
    images = torch.rand(2, 1, 5, 5)
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    assert random_shift(images, 0, generator=generator) is images
    assert torch.equal(generator.get_state(), state)
    with pytest.raises(ValueError, match="`max_shift` must be below the image side 5, got 5"):
        random_shift(images, 5, generator=generator)
    with pytest.raises(ValueError, match="`max_shift` must be"):
        random_shift(images, -1, generator=generator)
    with pytest.raises(ValueError, match=r"`pixel_values` must be a \(B, C, H, W\) tensor"):
        random_shift(images[0], 1, generator=generator)


def test_grey_images_are_shifted_then_dynamically_binarized_from_the_step_seed():
    model = AutoModel.from_config(_config("vae_digits_tiny"))
    grey = torch.rand(8, 1, 8, 8)
    inputs = model_inputs(model, {"pixel_values": grey}, generator=seeded_generator(0, 7, 0, 0), global_step=7,
                          dynamic_binarization=True, augment_shift=2)
    generator = seeded_generator(0, 7, 0, 0)
    expected = binarize_pixels(random_shift(grey, 2, generator=generator), generator=generator)
    assert torch.equal(inputs["pixel_values"], expected)
    plain = model_inputs(model, {"pixel_values": grey}, generator=seeded_generator(0, 7, 0, 0), global_step=7,
                         dynamic_binarization=True)
    assert not torch.equal(plain["pixel_values"], expected)  # the shift changed the images


def _config(name: str):
    from hf_vae.training.recipe import build_config

    return build_config(_recipe(name, "unused"))


# ------------------------------------------------------------------------------------------- EMA


def test_weight_ema_starts_at_its_step_then_follows_the_formula():
    model = torch.nn.Linear(3, 2)
    ema = WeightEMA(model, decay=0.5, start_step=2)
    ema.step(model, 1)  # before start_step: nothing averaged
    assert not ema.started
    with torch.no_grad():
        model.weight.fill_(4.0)
    ema.step(model, 2)  # the first update copies
    assert ema.num_updates == 1 and torch.equal(ema.module.weight, torch.full((2, 3), 4.0))
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema.step(model, 3)
    assert torch.equal(ema.module.weight, torch.full((2, 3), 2.0))  # 0.5 * 4 + 0.5 * 0
    assert not ema.module.weight.requires_grad
    restored = WeightEMA(torch.nn.Linear(3, 2), decay=0.5, start_step=2)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 2 and torch.equal(restored.module.weight, ema.module.weight)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.ema_decay=1.0"], "`training.ema_decay` must be a number >= 0 and < 1, got 1.0"),
        (["training.ema_decay=.nan"], "`training.ema_decay` must be a finite number"),
        (["training.ema_decay=fast"], "`training.ema_decay` must be a finite number, got 'fast'"),
        (["training.ema_decay=0.9", "training.ema_start_step=-1"], "`training.ema_start_step` must be"),
        (["training.ema_start_step=10"], "`training.ema_start_step` must be 0 without `training.ema_decay` (no EMA), got 10"),
        (["data.augment_shift=-1"], "`data.augment_shift` must be"),
        (["data.augment_shift=0.5"], "`data.augment_shift` must be"),
    ],
)
def test_bad_regularisation_fields_fail_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _recipe("vae_digits_tiny", "unused", *overrides)


def test_a_shift_as_large_as_the_image_fails_before_training(tmp_path):
    with pytest.raises(ValueError, match="`data.augment_shift` must be below the 8-pixel image side, got 8"):
        train(_recipe("vae_digits_tiny", tmp_path / "run", "data.augment_shift=8"))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture(scope="module")
def regularised_run(tmp_path_factory):
    """The tiny VAE with EMA and shifts, uninterrupted, keeping the final (not the best) weights."""
    run_dir = tmp_path_factory.mktemp("run") / "regularised"
    train(_recipe("vae_digits_tiny", run_dir, *REGULARISED, "training.keep_best=false"))
    return run_dir


def test_the_saved_model_and_metrics_are_the_ema_weights(regularised_run):
    metrics = json.loads((regularised_run / "metrics.json").read_text())
    # Steps 5..40 averaged: 36 updates.
    assert metrics["ema"] == {"decay": 0.9, "start_step": 5, "updates": STEPS - 4, "weights": "ema"}
    last = regularised_run / "checkpoints" / f"checkpoint-{STEPS:08d}"
    ema = load_file(last / "ema.safetensors")
    trained = load_file(last / "model.safetensors")
    saved = load_file(regularised_run / "model.safetensors")
    assert int(ema.pop("n_averaged")) == STEPS - 4
    assert set(saved) == {k.removeprefix("module.") for k in ema}
    assert all(torch.equal(saved[k.removeprefix("module.")], v) for k, v in ema.items())
    assert not all(torch.equal(saved[k], trained[k]) for k in trained)  # not the trained weights
    # The test metrics are the saved (EMA) model's.
    from hf_vae.data import load_split
    from hf_vae.evaluation import evaluate

    view = load_split("digits", "test", binarize="static", seed=0)
    again = evaluate(AutoModel.from_pretrained(regularised_run), view, num_importance_samples=5, seed=0, progress=False)
    assert again["nll"].value == pytest.approx(metrics["test"]["nll"]["value"], abs=1e-4)
    from hf_vae.cards import render_card

    card = str(render_card(regularised_run))
    assert f"exponential moving average of the trained weights (decay 0.9, {STEPS - 4} updates from optimizer step 5)" in card


def test_interrupted_run_with_ema_and_shifts_resumes_bit_identically(regularised_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "interrupted"
    recipe = _recipe("vae_digits_tiny", run_dir, *REGULARISED, "training.keep_best=false")
    save = training_loop.save_checkpoint

    def save_then_die(accelerator, checkpoints_dir, state, *args, **kwargs):
        save(accelerator, checkpoints_dir, state, *args, **kwargs)
        if state.step == 20:
            raise KeyboardInterrupt("killed after checkpoint-20")

    monkeypatch.setattr(training_loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(recipe)
    assert not (run_dir / "model.safetensors").exists()
    monkeypatch.setattr(training_loop, "save_checkpoint", save)
    train(recipe, resume=True)
    for name in ("model.safetensors", f"checkpoints/checkpoint-{STEPS:08d}/ema.safetensors",
                 f"checkpoints/checkpoint-{STEPS:08d}/model.safetensors"):
        a, b = load_file(regularised_run / name), load_file(run_dir / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("name", ["vae_digits_tiny", "cvae_digits_tiny", "vqvae_digits_tiny", "pixelcnn_digits_tiny"])
def test_every_family_trains_with_ema_and_keeps_the_best_ema_weights(name, tmp_path):
    run_dir = tmp_path / name
    train(_recipe(name, run_dir, "training.ema_decay=0.8", "training.max_steps=20", "training.eval_every=10",
                  "training.save_every=10"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["ema"]["weights"] == "ema" and metrics["ema"]["updates"] == 20
    # The best checkpoint is an evaluated EMA, and it is what was saved.
    best, saved = load_file(run_dir / "best_model" / "model.safetensors"), load_file(run_dir / "model.safetensors")
    assert all(torch.equal(best[k], saved[k]) for k in saved)
    ema = load_file(run_dir / "checkpoints" / f"checkpoint-{metrics['best_step']:08d}" / "ema.safetensors")
    assert all(torch.equal(saved[k], ema[f"module.{k}"]) for k in saved)
    AutoModel.from_pretrained(run_dir)  # a complete model of its family
