"""Transformer prior: the shared token-prior contracts, causality, the key/value cache, HF `generate`."""

import pytest
import torch
from transformers import DynamicCache

from hf_vae import TransformerPriorConfig, TransformerPriorModel
from hf_vae.models.transformer_prior.modeling_transformer_prior import sincos_2d_table

from .model_tester import TokenPriorTesterMixin, all_binary_grids, single_thread  # noqa: F401 (autouse fixture)

TINY = dict(vocab_size=5, grid_size=4, num_classes=3, label_dropout=0.25, num_layers=2, num_heads=2, hidden_size=16)


class TestTransformerPrior(TokenPriorTesterMixin):
    """Conditional, with the fixed 2-D sin/cos table (a buffer that must survive meta-device loading)."""

    model_class = TransformerPriorModel
    config_class = TransformerPriorConfig
    config_kwargs = {**TINY, "position_embedding": "2d_sincos"}
    legacy_config_fields = {"n_layer": "num_layers", "n_head": "num_heads", "n_embd": "hidden_size"}
    bad_config_values = [
        ("vocab_size", 0),
        ("grid_size", -1),
        ("num_classes", 1.5),
        ("label_dropout", -0.1),
        ("token_source", "codes"),
        ("vqvae_revision", 3),
        ("num_layers", 0),
        ("num_heads", 3),  # does not divide hidden_size
        ("hidden_size", 18),  # not divisible by 4 for 2d_sincos
        ("dropout", 1.0),
        ("bias", "yes"),
        ("position_embedding", "rope"),
    ]

    def test_position_table_is_the_formula_after_reload(self, tmp_path):
        model = self.get_model()
        expected = sincos_2d_table(4, 16)
        assert torch.equal(model.position_embedding.table, expected)
        model.save_pretrained(tmp_path)
        reloaded = TransformerPriorModel.from_pretrained(tmp_path)
        assert torch.equal(reloaded.position_embedding.table, expected)
        # Row and column halves: positions in one row share the row half, in one column the column half.
        assert torch.equal(expected[1, :8], expected[2, :8]) and torch.equal(expected[1, 8:], expected[5, 8:])

    def test_flat_and_grid_inputs_agree(self):
        model = self.get_model().eval()
        inputs = self.get_inputs()
        grid = model(**inputs)
        flat = model(inputs["indices"].flatten(1), labels=inputs["labels"])
        assert grid.logits.shape == (4, 16, 5)
        torch.testing.assert_close(grid.log_likelihood, flat.log_likelihood)
        with pytest.raises(ValueError, match="indices"):
            model(inputs["indices"].flatten(1)[:, :7], labels=inputs["labels"])  # a prefix only when decoding


def _model(**overrides):
    torch.manual_seed(0)
    return TransformerPriorModel(TransformerPriorConfig(**{**TINY, **overrides})).eval()


@pytest.mark.parametrize("position_embedding", ["learned", "2d_sincos"])
def test_causal_and_sees_every_earlier_token(position_embedding):
    """Logits at i have a gradient from exactly the tokens before i, and ignore every token at or after i."""
    model = _model(grid_size=3, position_embedding=position_embedding, num_classes=None, label_dropout=0.0)
    captured = []

    def keep_embedding(module, args, out):
        out.retain_grad()
        captured.append(out)

    hook = model.token_embedding.register_forward_hook(keep_embedding)
    tokens = torch.randint(0, 5, (1, 3, 3), generator=torch.Generator().manual_seed(0))
    logits = model(tokens).logits  # (1, 9, V)
    hook.remove()
    for i in range(9):
        captured[0].grad = None
        (logits[0, i] * torch.arange(5.0)).sum().backward(retain_graph=True)
        reach = captured[0].grad[0].abs().sum(-1)
        assert {j for j in range(9) if reach[j] != 0} == set(range(i)), f"position {i}"
    g = torch.Generator().manual_seed(1)
    base = tokens.flatten(1)
    for i in range(9):
        perturbed = base.repeat(6, 1)
        perturbed[:, i:] = torch.randint(0, 5, (6, 9 - i), generator=g)
        at_i = model(perturbed).logits[:, i]
        torch.testing.assert_close(at_i, at_i[:1].expand_as(at_i), rtol=0, atol=1e-6)


@pytest.mark.parametrize("position_embedding", ["learned", "2d_sincos"])
def test_exact_likelihood_sums_to_one_for_each_position_table(position_embedding):
    grids = all_binary_grids(2)
    model = _model(vocab_size=2, grid_size=2, position_embedding=position_embedding)
    for label in (0, 2):
        torch.testing.assert_close(model.log_likelihood(grids, torch.full((16,), label)).exp().sum(), torch.tensor(1.0))


def test_incremental_decoding_matches_the_full_pass():
    model = _model()
    x = torch.randint(0, 5, (3, 16), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    full = model(x, labels=labels)
    # A prefix from an empty cache, then the rest in chunks of 1 and 4 tokens.
    out = model(x[:, :5], labels=labels, use_cache=True)
    assert isinstance(out.past_key_values, DynamicCache) and out.logits.shape == (3, 6, 5)
    torch.testing.assert_close(out.log_likelihood, full.logits[:, :5].log_softmax(-1).gather(-1, x[:, :5, None]).sum((1, 2)))
    pieces, cache = [out.logits], out.past_key_values
    for start, stop in [(5, 6), (6, 10), (10, 15)]:
        step = model(x[:, start:stop], labels=labels, past_key_values=cache, use_cache=True)
        assert step.loss is None and step.log_likelihood is None
        pieces.append(step.logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full.logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="indices"):
        model(x[:, 15:], labels=labels, past_key_values=cache)  # the grid is full


@pytest.mark.parametrize("conditional", [False, True])
def test_sampling_with_cache_equals_without(conditional):
    model = _model(grid_size=3, **({} if conditional else {"num_classes": None, "label_dropout": 0.0}))
    kwargs = dict(labels=torch.tensor([0, 1, 2, 0]), guidance_scale=2.5) if conditional else {}
    samples = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(3)
        samples.append(model.sample(4, generator=g, use_cache=use_cache, progress=False, top_p=0.95, **kwargs))
    assert samples[0].shape == (4, 3, 3)
    assert torch.equal(samples[0], samples[1])


def test_hf_generate_completes_grids():
    """`GenerationMixin.generate` works from an empty prefix or a partial grid, conditioned through `labels`."""
    model = _model(grid_size=3)
    labels = torch.tensor([0, 2])
    generated = model.generate(indices=torch.zeros(2, 0, dtype=torch.long), labels=labels, max_new_tokens=9, do_sample=False)
    assert generated.shape == (2, 9)
    # Greedy decoding through the cache picks the argmax of the one-pass logits at every position.
    assert torch.equal(model(generated, labels=labels).logits.argmax(-1), generated)
    completed = model.generate(indices=generated[:, :4], labels=labels, max_new_tokens=5, do_sample=False)
    assert torch.equal(completed, generated)
    assert torch.equal(model.generate(generated[:, :4], labels=labels, max_new_tokens=5, do_sample=False), generated)
    torch.manual_seed(0)
    drawn = model.generate(indices=torch.zeros(2, 0, dtype=torch.long), labels=labels, max_new_tokens=9, do_sample=True)
    assert drawn.shape == (2, 9) and drawn.max() < 5
    with pytest.raises(ValueError, match="use_cache"):
        model.generate(indices=generated[:, :4], labels=labels, max_new_tokens=5, use_cache=False)
    with pytest.raises(ValueError, match="indices"):
        model.generate(indices=generated[:, :4], labels=labels, max_new_tokens=6)  # past the end of the grid
