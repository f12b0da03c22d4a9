"""Gated PixelCNN prior: the shared contracts (token version), causality without a blind spot, exact likelihood."""

import pytest
import torch

from hf_vae import PixelCNNPriorConfig, PixelCNNPriorModel

from .model_tester import TokenPriorTesterMixin, single_thread  # noqa: F401 (autouse fixture)


TINY = dict(vocab_size=5, grid_size=4, num_classes=3, label_dropout=0.25, hidden_size=8, num_layers=3, output_channels=16)


class TestPixelCNNPrior(TokenPriorTesterMixin):
    model_class = PixelCNNPriorModel
    config_class = PixelCNNPriorConfig
    config_kwargs = TINY
    legacy_config_fields = {"hidden_channels": "hidden_size"}
    bad_config_values = [
        ("vocab_size", 1),
        ("grid_size", 0),
        ("num_classes", 0),
        ("label_dropout", 1.0),
        ("token_source", "latents"),
        ("pixel_levels", 3),  # pixel_levels for VQ-VAE codes
        ("vqvae_name_or_path", 5),
        ("vqvae_revision", ["main"]),
        ("hidden_size", 0),
        ("num_layers", 0),
        ("kernel_size", 4),
        ("kernel_size", 1),
        ("output_channels", 2.5),
    ]

    def test_config_cross_field_rules(self):
        with pytest.raises(ValueError, match="`pixel_levels`.*vocab_size=5"):
            self.get_config(token_source="pixels", pixel_levels=3)
        assert self.get_config(token_source="pixels").pixel_levels == 5
        with pytest.raises(ValueError, match="`label_dropout`.*unconditional"):
            self.get_config(num_classes=None, label_dropout=0.1)
        config = self.get_config(vqvae_name_or_path="user/vqvae-mnist", vqvae_revision="v1")
        assert config.vqvae_name_or_path == "user/vqvae-mnist"


def _dependency_sets(model, size: int):
    """For each raster position i, the set of positions j whose token the logits at i have a gradient from."""
    captured = []

    def keep_embedding(module, args, out):
        out.retain_grad()
        captured.append(out)

    hook = model.token_embedding.register_forward_hook(keep_embedding)
    tokens = torch.randint(0, model.config.vocab_size, (1, size, size), generator=torch.Generator().manual_seed(0))
    logits = model(tokens).logits  # (1, V, H, W)
    hook.remove()
    projection = torch.randn(model.config.vocab_size, generator=torch.Generator().manual_seed(1))
    sets = []
    for i in range(size * size):
        captured[0].grad = None
        (logits[0, :, i // size, i % size] * projection).sum().backward(retain_graph=True)
        reach = captured[0].grad[0].abs().sum(-1).flatten()  # (H * W,)
        sets.append({j for j in range(size * size) if reach[j] != 0})
    return sets


@pytest.mark.parametrize("kernel_size, num_layers", [(3, 5), (5, 3)])
def test_causal_without_blind_spot(kernel_size, num_layers):
    """On a 5x5 grid the logits at i depend on exactly the positions j < i in raster order: nothing at or
    after i (causal), everything before it (no blind spot: the receptive field covers the grid)."""
    torch.manual_seed(0)
    config = PixelCNNPriorConfig(vocab_size=4, grid_size=5, hidden_size=8, num_layers=num_layers,
                                 kernel_size=kernel_size, output_channels=8)
    model = PixelCNNPriorModel(config).eval()
    for i, depends_on in enumerate(_dependency_sets(model, 5)):
        assert depends_on == set(range(i)), f"position {i} depends on {sorted(depends_on)}"

    # The same by perturbation: re-drawing every token at positions >= i leaves the logits at i bit-identical.
    g = torch.Generator().manual_seed(2)
    base = torch.randint(0, 4, (1, 25), generator=g)
    for i in range(25):
        perturbed = base.repeat(8, 1)
        perturbed[:, i:] = torch.randint(0, 4, (8, 25 - i), generator=g)
        logits = model(perturbed.view(8, 5, 5)).logits.flatten(2)[:, :, i]
        assert torch.equal(logits, logits[:1].expand_as(logits)), f"position {i} sees the future"


def test_class_label_changes_the_distribution():
    torch.manual_seed(0)
    model = PixelCNNPriorModel(PixelCNNPriorConfig(**TINY)).eval()
    x = torch.randint(0, 5, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    a = model.log_likelihood(x, torch.tensor([0, 0]))
    b = model.log_likelihood(x, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
