"""Gradient checkpointing in every family: `gradient_checkpointing_enable()` recomputes the repeated blocks
(residual blocks, gated PixelCNN layers, transformer blocks) in the backward pass and changes neither the
loss nor any gradient; `training.gradient_checkpointing: true` makes the trainer turn it on."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
import transformers.modeling_utils
from safetensors.torch import load_file

from hf_vae import (CVAEConfig, CVAEModel, PixelCNNPriorConfig, PixelCNNPriorModel, TransformerPriorConfig,
                    TransformerPriorModel, VAEConfig, VAEModel, VQVAEConfig, VQVAEModel)
from hf_vae.families import FAMILIES
from hf_vae.training import Recipe, train

REPO = Path(__file__).resolve().parents[1]
CONV = dict(image_size=8, num_channels=1, hidden_channels=[8, 16], num_res_blocks=2, dropout=0.3)
PRIOR = dict(vocab_size=5, grid_size=4, num_classes=3, label_dropout=0.25)

# family -> (model, the class of its repeated block, how many of them, a batch). Dropout is on wherever the
# family has it, so the test also shows that the recomputation draws the same dropout masks.
FAMILY_CASES = {
    "vae": lambda: (VAEModel(VAEConfig(**CONV, latent_dim=4)), "ResidualBlock", 8, "images"),
    "cvae": lambda: (CVAEModel(CVAEConfig(**CONV, latent_dim=4, num_classes=3, label_embedding_dim=4)), "ResidualBlock", 8, "images"),
    "vqvae": lambda: (VQVAEModel(VQVAEConfig(**CONV, codebook_size=16, embedding_dim=4)), "ResidualBlock", 8, "images"),
    "pixelcnn_prior": lambda: (PixelCNNPriorModel(PixelCNNPriorConfig(**PRIOR, hidden_size=8, num_layers=3, output_channels=16)), "GatedLayer", 3, "tokens"),
    "transformer_prior": lambda: (TransformerPriorModel(TransformerPriorConfig(**PRIOR, num_layers=3, num_heads=2, hidden_size=16, dropout=0.3)), "Block", 3, "tokens"),
}


def _case(family: str):
    torch.manual_seed(0)
    model, block_name, num_blocks, kind = FAMILY_CASES[family]()
    g = torch.Generator().manual_seed(1)
    if kind == "images":
        inputs = {"pixel_values": torch.rand(4, 1, 8, 8, generator=g).round(), "labels": torch.tensor([0, 1, 2, 0])}
    else:
        inputs = {"indices": torch.randint(0, 5, (4, 4, 4), generator=g), "labels": torch.tensor([0, 1, 2, 0])}
    if not model.is_conditional:
        inputs.pop("labels")
    return model, block_name, num_blocks, inputs


def _enable(model) -> None:
    # The name users know; transformers 5 warns that it is now an alias of `activation_checkpointing_enable`.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.gradient_checkpointing_enable()


def _loss_and_gradients(model, inputs):
    """One seeded training-mode forward and backward: the loss and {parameter name: gradient}."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)  # dropout draws from the global RNG
    loss = model(**inputs, generator=torch.Generator().manual_seed(7)).loss  # label dropout, sampling
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


def _count_block_calls(model, block_name: str, run) -> int:
    """How many times the first sub-module of every `block_name` block starts during `run()` (a recomputed
    block runs its sub-modules again in the backward pass). A pre-hook: torch stops a recomputation as
    soon as it has what the backward pass needs, so a sub-module may never finish its second run."""
    calls = []
    handles = [next(module.children()).register_forward_pre_hook(lambda *args: calls.append(1))
               for module in model.modules() if type(module).__name__ == block_name]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return len(calls)


@pytest.mark.parametrize("family", sorted(FAMILY_CASES))
def test_checkpointing_gives_the_same_loss_and_gradients(family):
    model, _, _, inputs = _case(family)
    assert type(model).supports_gradient_checkpointing
    checkpointed = copy.deepcopy(model)  # the same weights and buffers (the VQ-VAE's codebook state too)
    _enable(checkpointed)
    assert checkpointed.is_activation_checkpointing and not model.is_activation_checkpointing
    loss, gradients = _loss_and_gradients(model, inputs)
    loss_ckpt, gradients_ckpt = _loss_and_gradients(checkpointed, inputs)
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-6, atol=1e-6)
    assert gradients.keys() == gradients_ckpt.keys()
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in gradients.values()) > len(gradients) // 2
    for name, gradient in gradients.items():
        if gradient is None:  # e.g. an EMA codebook: no gradient either way
            assert gradients_ckpt[name] is None, name
            continue
        torch.testing.assert_close(gradients_ckpt[name], gradient, rtol=1e-5, atol=1e-7, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("family", sorted(FAMILY_CASES))
def test_checkpointing_recomputes_every_block_in_training_only(family):
    model, block_name, num_blocks, inputs = _case(family)

    def train_step():
        _loss_and_gradients(model, inputs)

    def evaluation():
        model.eval()
        with torch.no_grad():
            model(**inputs)

    plain = _count_block_calls(model, block_name, train_step)
    assert plain == num_blocks  # every block once (2 stages x 2 blocks in the encoder, as many in the decoder)
    plain_eval = _count_block_calls(model, block_name, evaluation)
    _enable(model)
    # Forward, then the recomputation in the backward pass: twice per block.
    assert _count_block_calls(model, block_name, train_step) == 2 * plain
    assert _count_block_calls(model, block_name, evaluation) == plain_eval  # eval mode never checkpoints
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.gradient_checkpointing_disable()
    assert _count_block_calls(model, block_name, train_step) == plain


def test_transformer_prior_decodes_with_its_cache_while_checkpointing():
    # A cache is never recomputed (it would be appended to twice): sampling in training mode matches eval mode.
    model, _, _, _ = _case("transformer_prior")
    model.config.dropout = 0.0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    expected = model.eval().sample(3, labels=[0, 1, 2], generator=torch.Generator().manual_seed(0))
    _enable(model)
    drawn = model.train().sample(3, labels=[0, 1, 2], generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn, expected)


def test_checkpointed_model_reloads_and_saves_the_same_weights(tmp_path):
    # Checkpointing changes no parameter name: a checkpointed model saves what the plain one loads.
    model, _, _, _ = _case("vae")
    _enable(model)
    model.save_pretrained(tmp_path)
    reloaded = VAEModel.from_pretrained(tmp_path)
    assert not reloaded.is_activation_checkpointing
    for name, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


# -- the recipe key ----------------------------------------------------------------------------------

def _tiny_recipe(output_dir, *overrides) -> Recipe:
    items = [f"training.output_dir={output_dir}", "training.max_steps=6", "training.log_every=2",
             "training.eval_every=6", "training.save_every=6", "training.progress=false", "training.trackers=[jsonl]",
             "model.config.dropout=0.2", "evaluation.num_importance_samples=0", "evaluation.num_samples=4",
             "data.num_workers=0", *overrides]
    return Recipe.from_yaml(REPO / "hf_vae" / "recipes" / "vae_digits_tiny.yaml", items)


def test_recipe_gradient_checkpointing_trains_the_same_weights(tmp_path, monkeypatch):
    plain = train(_tiny_recipe(tmp_path / "plain"))
    calls = []
    checkpoint = transformers.modeling_utils.checkpoint  # what transformers binds at enable time

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(1)
        return checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting_checkpoint)
    checkpointed = train(_tiny_recipe(tmp_path / "checkpointed", "training.gradient_checkpointing=true"))
    # 6 steps x 4 residual blocks (2 stages x num_res_blocks=1 in the encoder, as many in the decoder).
    assert len(calls) == 6 * 4
    weights, weights_ckpt = load_file(plain / "model.safetensors"), load_file(checkpointed / "model.safetensors")
    assert weights.keys() == weights_ckpt.keys()
    for name, tensor in weights.items():
        torch.testing.assert_close(weights_ckpt[name], tensor, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_recipe_gradient_checkpointing_is_checked(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="`training.gradient_checkpointing` must be a bool, got 'yes'"):
        _tiny_recipe(tmp_path, "training.gradient_checkpointing='yes'")
    monkeypatch.setattr(FAMILIES["vae"], "supports_gradient_checkpointing", False)
    with pytest.raises(ValueError, match="`training.gradient_checkpointing` must be false for the 'vae' family"):
        _tiny_recipe(tmp_path, "training.gradient_checkpointing=true")
    _tiny_recipe(tmp_path)  # off by default: no check
