"""Dropout in the gated PixelCNN (`PixelCNNPriorConfig.dropout`): off by default (no module, no random draw, the
same weights' keys), on the gated output before the residual and skip convolutions in training only, and
invisible in eval mode, where sampling with and without the fast cache still draws the same grids."""

import pytest
import torch
from torch import nn

from hf_vae import PixelCNNPriorConfig, PixelCNNPriorModel

from .model_tester import single_thread  # noqa: F401 (autouse fixture)

BINARY = dict(vocab_size=2, grid_size=5, token_source="pixels", hidden_size=8, num_layers=3, kernel_size=5, output_channels=8)
RGB = dict(vocab_size=4, grid_size=4, token_source="pixels", num_channels=3, hidden_size=9, num_layers=2, output_channels=6,
           num_classes=2, label_dropout=0.1)


def _pair(config: dict, dropout: float):
    """A model without dropout and one with `dropout`, holding the same weights."""
    torch.manual_seed(0)
    plain = PixelCNNPriorModel(PixelCNNPriorConfig(**config))
    dropped = PixelCNNPriorModel(PixelCNNPriorConfig(**config, dropout=dropout))
    dropped.load_state_dict(plain.state_dict())  # the same keys: dropout adds no weights
    return plain, dropped


def _grid(config: dict, batch: int = 4) -> torch.Tensor:
    shape = (batch, config.get("num_channels", 1), config["grid_size"], config["grid_size"])
    grid = torch.randint(0, config["vocab_size"], shape, generator=torch.Generator().manual_seed(1))
    return grid[:, 0] if shape[1] == 1 else grid


def test_default_is_off_and_draws_no_random_numbers():
    assert PixelCNNPriorConfig().dropout == 0.0
    plain, _ = _pair(BINARY, 0.3)
    assert all(isinstance(layer.dropout, nn.Identity) for layer in plain.layers)
    plain.train()
    state = torch.get_rng_state()
    plain(_grid(BINARY))
    assert torch.equal(torch.get_rng_state(), state)  # a default run's random stream is unchanged


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan"), "0.1"])
def test_bad_dropout_is_named(value):
    with pytest.raises(ValueError, match="`dropout` must be"):
        PixelCNNPriorConfig(**BINARY, dropout=value)


@pytest.mark.parametrize("config", [BINARY, RGB], ids=["binary", "rgb"])
def test_dropout_acts_in_training_only(config):
    plain, dropped = _pair(config, 0.5)
    grid = _grid(config)
    labels = torch.tensor([0, 1, 0, 1]) if "num_classes" in config else None
    dropped.eval()
    plain.eval()
    assert torch.equal(dropped.log_likelihood(grid, labels), plain.log_likelihood(grid, labels))
    dropped.train()
    torch.manual_seed(1)
    first = dropped(grid, labels, generator=torch.Generator().manual_seed(0)).loss
    torch.manual_seed(2)
    second = dropped(grid, labels, generator=torch.Generator().manual_seed(0)).loss
    torch.manual_seed(1)
    again = dropped(grid, labels, generator=torch.Generator().manual_seed(0)).loss
    assert first != second and torch.equal(first, again)  # a fresh mask per draw of the global RNG, reproducible


def test_the_gated_output_is_dropped_before_the_residual_and_skip_convolutions():
    _, dropped = _pair(BINARY, 0.5)
    seen = {}
    layer = dropped.layers[1]
    layer.residual.register_forward_hook(lambda module, args, out: seen.__setitem__("residual", args[0]))
    layer.skip.register_forward_hook(lambda module, args, out: seen.__setitem__("skip", args[0]))
    dropped.train()
    dropped(_grid(BINARY, batch=16))
    assert seen["residual"] is seen["skip"]  # one mask for both
    zeros = (seen["residual"] == 0).float().mean()
    assert 0.4 < zeros < 0.6  # about half the gated features dropped (tanh * sigmoid is never exactly 0 otherwise)
    dropped.eval()
    dropped(_grid(BINARY, batch=16))
    assert (seen["residual"] == 0).float().mean() < 0.01


@pytest.mark.parametrize("config", [BINARY, RGB], ids=["binary", "rgb"])
def test_sampling_with_and_without_the_cache_match_with_dropout_in_eval(config):
    plain, dropped = _pair(config, 0.3)
    dropped.eval()
    plain.eval()
    kwargs = dict(labels=torch.tensor([0, 1, 0])) if "num_classes" in config else {}
    fast = dropped.sample(3, generator=torch.Generator().manual_seed(3), progress=False, **kwargs)
    naive = dropped.sample(3, generator=torch.Generator().manual_seed(3), progress=False, use_cache=False, **kwargs)
    assert torch.equal(fast, naive) and len(fast.unique()) > 1
    assert torch.equal(fast, plain.sample(3, generator=torch.Generator().manual_seed(3), progress=False, **kwargs))


def test_dropout_is_saved_and_reloaded(tmp_path):
    _, dropped = _pair(BINARY, 0.2)
    dropped.save_pretrained(tmp_path)
    reloaded = PixelCNNPriorModel.from_pretrained(tmp_path)
    assert reloaded.config.dropout == 0.2 and all(layer.dropout.p == 0.2 for layer in reloaded.layers)
