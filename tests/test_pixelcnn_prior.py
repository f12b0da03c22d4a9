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


def _colour_order(size: int, colours: int = 3):
    """Raster order of a colour grid: (colour, row, col) of position p = (row * size + col) * colours + colour."""
    return [(c, i, j) for i in range(size) for j in range(size) for c in range(colours)]


@pytest.mark.parametrize("kernel_size, num_layers", [(3, 4), (5, 2)])
def test_colour_causal_over_positions_and_channels(kernel_size, num_layers):
    """RGB on a 4x4 grid: the logits of subpixel p (R, G or B of one pixel) have a gradient from exactly the
    subpixels before p in the order (row, col, R -> G -> B): R sees no colour of its own pixel, G sees R, B sees
    R and G, each sees every earlier pixel (no blind spot), and nothing after p."""
    torch.manual_seed(0)
    size = 4
    # 16 channels per colour: with fewer, a colour's ReLU(skips) can be all zero at random init, which reads as "depends on nothing".
    config = PixelCNNPriorConfig(vocab_size=4, grid_size=size, token_source="pixels", num_channels=3, hidden_size=48,
                                 num_layers=num_layers, kernel_size=kernel_size, output_channels=48)
    model = PixelCNNPriorModel(config).eval()
    captured = []

    def keep_embedding(module, args, out):
        out.retain_grad()
        captured.append(out)

    hook = model.token_embedding.register_forward_hook(keep_embedding)
    tokens = torch.randint(0, 4, (1, 3, size, size), generator=torch.Generator().manual_seed(0))
    logits = model(tokens).logits  # (1, V, 3, H, W)
    hook.remove()
    assert logits.shape == (1, 4, 3, size, size)
    order = _colour_order(size)
    for p, (c, i, j) in enumerate(order):
        captured[0].grad = None
        logits[0, :, c, i, j].sum().backward(retain_graph=True)
        reach = captured[0].grad[0].abs().sum(-1)  # (3, H, W): the embedding of every subpixel
        depends_on = {q for q, (d, a, b) in enumerate(order) if reach[d, a, b] != 0}
        assert depends_on == set(range(p)), f"subpixel {(c, i, j)} depends on {sorted(depends_on)}"


def test_colour_likelihood_is_normalised_and_counts_every_subpixel():
    """Summed over all 2 ** 12 binary RGB 2x2 images, p(x) is 1; bits per dim divide by C * H * W; pixels round-trip."""
    torch.manual_seed(0)
    config = PixelCNNPriorConfig(vocab_size=2, grid_size=2, token_source="pixels", num_channels=3, hidden_size=6,
                                 num_layers=2, output_channels=6)
    model = PixelCNNPriorModel(config).eval()
    every = ((torch.arange(4096)[:, None] >> torch.arange(12)) & 1).view(4096, 3, 2, 2)
    log_p = model.log_likelihood(every)
    assert torch.logsumexp(log_p.double(), 0).abs() < 1e-5
    torch.testing.assert_close(model.bits_per_dim(every[:3]), -log_p[:3] / (12 * torch.log(torch.tensor(2.0))))
    pixels = model.indices_to_pixels(every[:5])
    assert pixels.shape == (5, 3, 2, 2) and torch.equal(model.pixels_to_indices(pixels), every[:5])
    assert model.sample(2, generator=torch.Generator().manual_seed(0), progress=False).shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match=r"`indices` must have shape \(batch, 3, 2, 2\)"):
        model.log_likelihood(every[:, 0])


def test_colour_model_round_trips_through_from_pretrained(tmp_path):
    """The masks are no weights: a saved RGB prior loads (built on the meta device) with the same likelihood and draws."""
    model = _fast_model("rgb_pixels")
    model.save_pretrained(tmp_path)
    loaded = PixelCNNPriorModel.from_pretrained(tmp_path).eval()
    tokens = model.sample(2, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(loaded.sample(2, generator=torch.Generator().manual_seed(0), progress=False), tokens)
    torch.testing.assert_close(loaded.log_likelihood(tokens), model.log_likelihood(tokens))


def test_colour_config_rules():
    with pytest.raises(ValueError, match="`num_channels` must be 1 for VQ-VAE codes"):
        PixelCNNPriorConfig(num_channels=3)
    with pytest.raises(ValueError, match="`hidden_size` must be a multiple of num_channels=3, got 8"):
        PixelCNNPriorConfig(token_source="pixels", vocab_size=256, num_channels=3, hidden_size=8, output_channels=6)
    with pytest.raises(ValueError, match="`output_channels` must be a multiple of num_channels=3, got 8"):
        PixelCNNPriorConfig(token_source="pixels", vocab_size=256, num_channels=3, hidden_size=6, output_channels=8)
    from hf_vae import TransformerPriorConfig

    with pytest.raises(ValueError, match="`num_channels` must be 1 for the transformer prior"):
        TransformerPriorConfig(token_source="pixels", vocab_size=256, num_channels=3)


def test_class_label_changes_the_distribution():
    torch.manual_seed(0)
    model = PixelCNNPriorModel(PixelCNNPriorConfig(**TINY)).eval()
    x = torch.randint(0, 5, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    a = model.log_likelihood(x, torch.tensor([0, 0]))
    b = model.log_likelihood(x, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)


# Fast generation (PixelCNNCache) against the naive loop, for the configurations the suite builds:
# codes (TINY), binary pixels, both kernel sizes, deep and shallow, conditional with and without guidance.
FAST_CONFIGS = {
    "codes_conditional": dict(TINY),
    "pixels_kernel3": dict(vocab_size=2, grid_size=4, token_source="pixels", hidden_size=4, num_layers=2, output_channels=8),
    "pixels_kernel5_deep": dict(vocab_size=2, grid_size=6, token_source="pixels", hidden_size=8, num_layers=4,
                                kernel_size=5, output_channels=8, num_classes=2, label_dropout=0.1),
    "codes_kernel7_wider_than_grid": dict(vocab_size=4, grid_size=3, hidden_size=8, num_layers=2, kernel_size=7, output_channels=8),
    "codes_kernel5_one_layer": dict(vocab_size=6, grid_size=5, hidden_size=8, num_layers=1, kernel_size=5, output_channels=8),
    # Colour: three tokens per pixel, R -> G -> B (the cache recomputes the pixel's column per colour).
    "rgb_pixels": dict(vocab_size=6, grid_size=4, token_source="pixels", num_channels=3, hidden_size=9, num_layers=3,
                       output_channels=12),
    "rgb_pixels_kernel5_conditional": dict(vocab_size=5, grid_size=5, token_source="pixels", num_channels=3, hidden_size=12,
                                           num_layers=2, kernel_size=5, output_channels=6, num_classes=2, label_dropout=0.1),
}
FAST_OPTIONS = {
    "plain": {},
    "temperature_top_k": dict(temperature=0.7, top_k=2),
    "top_p": dict(top_p=0.8, temperature=1.3),
}


def _fast_model(name):
    torch.manual_seed(0)
    return PixelCNNPriorModel(PixelCNNPriorConfig(**FAST_CONFIGS[name])).eval()


def _both_ways(model, **kwargs):
    """The same seeded draw with the cache (default) and with the naive loop (`use_cache=False`)."""
    draws = [model.sample(5, generator=torch.Generator().manual_seed(3), progress=False, **kwargs)]
    draws.append(model.sample(5, generator=torch.Generator().manual_seed(3), progress=False, use_cache=False, **kwargs))
    return draws


@pytest.mark.parametrize("options", FAST_OPTIONS)
@pytest.mark.parametrize("name", FAST_CONFIGS)
def test_fast_sampling_draws_what_the_naive_loop_draws(name, options):
    model = _fast_model(name)
    fast, naive = _both_ways(model, **FAST_OPTIONS[options])
    assert torch.equal(fast, naive)
    assert len(fast.unique()) > 1  # a constant grid would hide a wrong cache


@pytest.mark.parametrize("name", ["codes_conditional", "pixels_kernel5_deep", "rgb_pixels_kernel5_conditional"])
def test_fast_sampling_with_labels_and_guidance(name):
    model = _fast_model(name)
    num_classes = model.config.num_classes
    labels = torch.arange(5) % num_classes
    for kwargs in (dict(labels=labels), dict(labels=labels, guidance_scale=2.5, top_k=3), dict(labels=1, guidance_scale=0.0)):
        fast, naive = _both_ways(model, **kwargs)
        assert torch.equal(fast, naive), kwargs
    assert not torch.equal(_both_ways(model, labels=0)[0], _both_ways(model, labels=1)[0])  # the labels reach the cache


def test_fast_logits_equal_the_full_forward():
    """Step by step, the cache's logits are the forward pass's logits at that position (to float rounding) for a
    fixed canvas, with a different class per row."""
    model = _fast_model("pixels_kernel5_deep")
    size = model.config.grid_size
    tokens = torch.randint(0, 2, (3, size * size), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])  # 2 is the null label
    expected = model._logits(tokens.view(3, size, size), labels).flatten(2)  # (3, V, H * W)
    logits_fn, cache = model._next_token_logits(labels, use_cache=True), None
    for position in range(size * size):
        logits, cache = logits_fn(tokens, position, cache)
        torch.testing.assert_close(logits, expected[:, :, position], rtol=1e-5, atol=1e-5)


def test_fast_cache_rejects_out_of_order_positions_and_bad_flag():
    model = _fast_model("codes_conditional")
    logits_fn = model._next_token_logits(torch.zeros(2, dtype=torch.long), use_cache=True)
    tokens = torch.zeros(2, 16, dtype=torch.long)
    _, cache = logits_fn(tokens, 0, None)
    with pytest.raises(ValueError, match="`position` must be 1"):
        logits_fn(tokens, 2, cache)
    with pytest.raises(ValueError, match="`use_cache` must be"):
        model.sample(2, labels=0, use_cache="yes")
