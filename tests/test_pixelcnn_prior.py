"""Gated PixelCNN prior: the shared contracts (token version), causality without a blind spot, exact likelihood."""

import itertools
import math

import pytest
import torch

from hf_vae import PixelCNNPriorConfig, PixelCNNPriorModel

from .model_tester import ModelTesterMixin


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models run fastest on one thread, and a shared CPU makes multi-threaded ones crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(vocab_size=5, grid_size=4, num_classes=3, label_dropout=0.25, hidden_channels=8, num_layers=3, output_channels=16)


def all_binary_grids(size: int = 2) -> torch.Tensor:
    """Every grid of 0/1 tokens of a (size x size) grid, shape (2 ** size**2, size, size)."""
    return torch.tensor(list(itertools.product([0, 1], repeat=size * size))).view(-1, size, size)


class TokenPriorTesterMixin(ModelTesterMixin):
    """The shared contracts for models whose input is a token grid `input_ids` instead of `pixel_values`."""

    def get_inputs(self, batch_size: int = 4, seed: int = 0) -> dict:
        config = self.get_config()
        g = torch.Generator().manual_seed(seed)
        inputs = {"input_ids": torch.randint(0, config.vocab_size, (batch_size, config.grid_size, config.grid_size), generator=g)}
        if config.num_classes is not None:
            inputs["labels"] = torch.randint(0, config.num_classes, (batch_size,), generator=g)
        return inputs

    def sample_outputs(self, model, generator):
        return model.sample(2, labels=torch.tensor([0, 1]) if model.config.num_classes else None,
                            generator=generator, progress=False)

    @pytest.mark.parametrize(
        "corrupt, expected",
        [
            (lambda x: x[0], "shape"),  # wrong rank
            (lambda x: x[:, :-1, :-1], "shape"),  # wrong grid size
            (lambda x: x[:, None], "shape"),  # an image-like (B, 1, H, W) tensor
            (lambda x: x.float(), "dtype"),  # float tokens
            (lambda x: x.bool(), "dtype"),  # boolean tokens
            (lambda x: x + 5, r"\[0, 5\)"),  # ids >= vocab_size, never clamped
            (lambda x: x - 1 - x.max(), r"\[0, 5\)"),  # negative ids
            (lambda x: x[:0], "batch"),  # empty batch
        ],
        ids=["rank", "size", "image", "float", "bool", "too-large", "negative", "empty"],
    )
    def test_bad_pixel_values_raise(self, corrupt, expected):
        """The token version of the bad-input contract: bad `input_ids` raise a ValueError naming them."""
        model = self.get_model()
        inputs = self.get_inputs()
        inputs["input_ids"] = corrupt(inputs["input_ids"])
        if inputs["input_ids"].shape[:1] != (4,):
            inputs.pop("labels", None)
        with pytest.raises(ValueError, match="input_ids") as info:
            model(**inputs)
        assert info.match(expected)
        with pytest.raises(ValueError, match="input_ids"):
            model.log_likelihood(inputs["input_ids"])

    @pytest.mark.parametrize(
        "labels, expected",
        [
            (torch.tensor([0, 1, 2, 3]), r"\[0, 3\)"),  # out of range (3 is the internal null class)
            (torch.tensor([0, 1, 2, -1]), r"\[0, 3\)"),
            (torch.tensor([0.0, 1.0, 2.0, 0.0]), "integer"),
            (torch.tensor([0, 1]), "shape"),
        ],
        ids=["too-large", "negative", "float", "batch"],
    )
    def test_bad_labels_raise(self, labels, expected):
        model = self.get_model()
        with pytest.raises(ValueError, match="labels") as info:
            model(self.get_inputs()["input_ids"], labels=labels)
        assert info.match(expected)
        unconditional = self.get_model(num_classes=None, label_dropout=0.0)
        with pytest.raises(ValueError, match="labels.*unconditional"):
            unconditional(self.get_inputs()["input_ids"], labels=torch.tensor([0, 1, 2, 0]))
        no_dropout = self.get_model(label_dropout=0.0)
        with pytest.raises(ValueError, match="labels.*required"):
            no_dropout(self.get_inputs()["input_ids"])

    def test_determinism_with_generator(self):
        """An exact likelihood has no noise in eval mode; in training the generator drives label dropout."""
        model = self.get_model().eval()
        inputs = self.get_inputs(batch_size=16)
        a = model(**inputs, generator=torch.Generator().manual_seed(5)).loss
        c = model(**inputs, generator=torch.Generator().manual_seed(6)).loss
        assert torch.equal(a, c)
        model.train()
        a = model(**inputs, generator=torch.Generator().manual_seed(5)).loss
        b = model(**inputs, generator=torch.Generator().manual_seed(5)).loss
        c = model(**inputs, generator=torch.Generator().manual_seed(6)).loss
        assert torch.equal(a, b) and not torch.equal(a, c)
        model.eval()
        s1 = self.sample_outputs(model, torch.Generator().manual_seed(7))
        s2 = self.sample_outputs(model, torch.Generator().manual_seed(7))
        s3 = self.sample_outputs(model, torch.Generator().manual_seed(8))
        assert torch.equal(s1, s2) and not torch.equal(s1, s3)

    def test_exact_likelihood_sums_to_one(self):
        """Over all 16 binary 2x2 grids, sum exp(log p) = 1: for every class, the null class, and unconditionally."""
        grids = all_binary_grids(2)
        conditional = self.get_model(vocab_size=2, grid_size=2, token_source="pixels").eval()
        for label in range(conditional.config.num_classes):
            total = conditional.log_likelihood(grids, torch.full((16,), label)).exp().sum()
            torch.testing.assert_close(total, torch.tensor(1.0))
        torch.testing.assert_close(conditional.log_likelihood(grids).exp().sum(), torch.tensor(1.0))  # null class
        unconditional = self.get_model(vocab_size=2, grid_size=2, num_classes=None, label_dropout=0.0).eval()
        torch.testing.assert_close(unconditional.log_likelihood(grids).exp().sum(), torch.tensor(1.0))
        out = unconditional(grids)
        torch.testing.assert_close(out.log_likelihood, unconditional.log_likelihood(grids))
        torch.testing.assert_close(out.loss, -out.log_likelihood.mean() / 4)

    def test_bf16_autocast_keeps_logits_in_float32(self):
        """Training runs under bf16 autocast: the logits (and so the log-softmax and the loss) stay fp32,
        and the exact likelihood moves only by bf16 rounding of the hidden layers."""
        model = self.get_model().eval()
        inputs = self.get_inputs(batch_size=8)
        reference = model(**inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(**inputs)
        assert out.logits.dtype == torch.float32 and out.loss.dtype == torch.float32
        torch.testing.assert_close(out.log_likelihood, reference.log_likelihood, rtol=0.02, atol=0.05)

    def test_bits(self):
        model = self.get_model(vocab_size=2, token_source="pixels").eval()
        x = self.get_inputs()["input_ids"].clamp(max=1)
        y = torch.tensor([0, 1, 2, 0])
        expected = -model.log_likelihood(x, y) / (16 * math.log(2))
        torch.testing.assert_close(model.bits_per_token(x, y), expected)
        torch.testing.assert_close(model.bits_per_dim(x, y), expected)
        with pytest.raises(ValueError, match="token_source"):
            self.get_model().bits_per_dim(self.get_inputs()["input_ids"], y)

    def test_pixels_tokens_round_trip(self):
        model = self.get_model(vocab_size=4, token_source="pixels")
        tokens = self.get_inputs()["input_ids"].clamp(max=3)
        pixels = model.tokens_to_pixels(tokens)
        assert pixels.shape == (4, 1, 4, 4) and pixels.max() <= 1
        assert torch.equal(model.pixels_to_tokens(pixels), tokens)
        with pytest.raises(ValueError, match="pixel_values"):
            model.pixels_to_tokens(pixels + 0.1)  # off the 4-level grid: never rounded
        with pytest.raises(ValueError, match="token_source"):
            self.get_model().tokens_to_pixels(tokens)

    def test_sample_arguments_and_guidance(self):
        model = self.get_model().eval()
        g = torch.Generator().manual_seed(0)
        samples = model.sample(3, labels=1, guidance_scale=2.0, top_k=2, top_p=0.9, temperature=0.7, generator=g, progress=False)
        assert samples.shape == (3, 4, 4) and samples.dtype == torch.long
        assert samples.min() >= 0 and samples.max() < 5
        assert model.sample(2, generator=g, progress=False).shape == (2, 4, 4)  # null class: unconditional
        with pytest.raises(ValueError, match="guidance_scale"):
            model.sample(2, guidance_scale=3.0, progress=False)  # guidance needs labels
        with pytest.raises(ValueError, match="guidance_scale"):
            self.get_model(label_dropout=0.0).sample(2, labels=1, guidance_scale=3.0, progress=False)
        for kwargs, name in [({"temperature": 0.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
                             ({"num_samples": 0}, "num_samples"), ({"labels": 7}, "labels"), ({"generator": 3}, "generator")]:
            with pytest.raises(ValueError, match=name):
                model.sample(**{"num_samples": 2, "labels": 0, "progress": False, **kwargs})

    def test_fits_a_two_mode_toy_distribution(self):
        """Every grid is all-0 or all-1 with probability 1/2: the NLL must fall to ~log 2 nats per grid."""
        torch.manual_seed(0)
        model = self.get_model(vocab_size=2, grid_size=3, num_classes=None, label_dropout=0.0).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        batch = torch.arange(2).repeat_interleave(8).view(16, 1, 1).expand(16, 3, 3)  # 8 of each grid
        for _ in range(100):
            loss = model(batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        nll = -model.log_likelihood(torch.stack([torch.zeros(3, 3, dtype=torch.long), torch.ones(3, 3, dtype=torch.long)]))
        # The mean over the data is a cross-entropy, >= the data entropy log 2, and must get close to it.
        assert nll.mean() - math.log(2) < 0.03, nll
        samples = model.sample(16, generator=torch.Generator().manual_seed(0), progress=False).flatten(1)
        assert (samples == samples[:, :1]).all(dim=1).float().mean() >= 0.9


class TestPixelCNNPrior(TokenPriorTesterMixin):
    model_class = PixelCNNPriorModel
    config_class = PixelCNNPriorConfig
    config_kwargs = TINY
    bad_config_values = [
        ("vocab_size", 1),
        ("grid_size", 0),
        ("num_classes", 0),
        ("label_dropout", 1.0),
        ("token_source", "latents"),
        ("pixel_levels", 3),  # pixel_levels for VQ-VAE codes
        ("vqvae_name_or_path", 5),
        ("vqvae_revision", ["main"]),
        ("hidden_channels", 0),
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
    config = PixelCNNPriorConfig(vocab_size=4, grid_size=5, hidden_channels=8, num_layers=num_layers,
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
