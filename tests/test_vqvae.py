"""VQ-VAE: the shared contracts plus code grids, round trips and a reload of the trained codebook state."""

import pytest
import torch
from transformers import AutoModel

from hf_vae import VQVAEConfig, VQVAEModel
from hf_vae.modeling_outputs import DecoderOutput, VQEncoderOutput

from .model_tester import ModelTesterMixin

TINY = dict(image_size=8, num_channels=1, hidden_channels=[8, 16], num_res_blocks=1, codebook_size=16,
            embedding_dim=4, dead_code_window=2)


class TestVQVAE(ModelTesterMixin):
    model_class = VQVAEModel
    config_class = VQVAEConfig
    config_kwargs = TINY
    bad_config_values = [
        ("codebook_size", 1),
        ("embedding_dim", 0),
        ("commitment_cost", -0.25),
        ("use_ema", "yes"),
        ("kmeans_init", 1),
        ("ema_decay", 1.0),
        ("ema_epsilon", 0.0),
        ("dead_code_threshold", -1.0),
        ("dead_code_window", 0),
        ("likelihood", "l2"),
        ("image_size", 10),
        ("activation", "tanh"),
    ]

    def named_term_identities(self, model, out):
        return {"loss = reconstruction_loss + codebook_loss + commitment_loss":
                (out.loss, out.reconstruction_loss + out.codebook_loss + out.commitment_loss)}

    def per_example_outputs(self, model, inputs):
        encoded = model.encode(inputs["pixel_values"])
        out = model(**inputs)
        assert torch.equal(out.indices, encoded.indices)
        return {"latents": encoded.latents, "indices": encoded.indices, "reconstruction": out.reconstruction}

    def sample_outputs(self, model, generator):
        # No prior of its own: decode random code grids drawn with the generator.
        grid = model.code_grid_size
        indices = torch.randint(0, model.config.codebook_size, (2, grid, grid), generator=generator)
        return model.decode_from_indices(indices)

    def test_determinism_with_generator(self):
        # The VQ-VAE's equivalent: eval outputs ignore the generator (nothing is random); in training
        # the generator drives k-means initialisation, so the codebook after a step follows the seed.
        inputs = self.get_inputs(batch_size=8)
        model = self.get_model().eval()
        a = model(**inputs, generator=torch.Generator().manual_seed(5))
        b = model(**inputs, generator=torch.Generator().manual_seed(6))
        assert torch.equal(a.loss, b.loss) and torch.equal(a.indices, b.indices)

        def codebook_after_step(seed):
            trained = self.get_model().train()
            trained(**inputs, generator=torch.Generator().manual_seed(seed))
            return trained.quantizer.embedding.clone()

        assert torch.equal(codebook_after_step(5), codebook_after_step(5))
        assert not torch.equal(codebook_after_step(5), codebook_after_step(6))
        s1 = self.sample_outputs(model, torch.Generator().manual_seed(7))
        s2 = self.sample_outputs(model, torch.Generator().manual_seed(7))
        s3 = self.sample_outputs(model, torch.Generator().manual_seed(8))
        assert torch.equal(s1, s2) and not torch.equal(s1, s3)


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return VQVAEModel(VQVAEConfig(**{**TINY, **overrides}))


def _images(n=8, seed=0, channels=1, size=8):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)).round()


def _train(model, steps, seed=0, lr=1e-2):
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        out = model(_images(seed=step), generator=torch.Generator().manual_seed(seed + step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    return model.eval()


def test_code_grid_size_follows_the_stages():
    assert VQVAEConfig(image_size=28, hidden_channels=[8, 16]).code_grid_size == 7
    assert VQVAEConfig(image_size=28, hidden_channels=[8]).code_grid_size == 14
    model = _model(hidden_channels=[8]).eval()
    assert model.code_grid_size == 4
    indices = model.encode_to_indices(_images(3))
    assert indices.shape == (3, 4, 4) and indices.dtype == torch.long


def test_round_trip_equals_forward_reconstruction():
    model = _train(_model(), steps=3)
    x = _images(5, seed=9)
    out = model(x)
    indices = model.encode_to_indices(x)
    assert torch.equal(indices, out.indices)
    assert torch.equal(model.decode_from_indices(indices), out.reconstruction)
    assert torch.equal(model.reconstruct(x), out.reconstruction)
    drawn = model.decode_from_indices(indices, generator=torch.Generator().manual_seed(0), output="sample")
    assert set(drawn.unique().tolist()) <= {0.0, 1.0}


def test_encode_decode_are_the_vector_view_of_the_code_ids():
    model = _train(_model(), steps=3)
    x = _images(5, seed=9)
    encoded = model.encode(x)
    assert isinstance(encoded, VQEncoderOutput)
    assert encoded.latents.shape == (5, 4, 2, 2) and encoded.indices.shape == (5, 2, 2)
    assert torch.equal(encoded.indices, model.encode_to_indices(x))
    latents, indices = model.encode(x, return_dict=False)
    assert torch.equal(latents, encoded.latents) and torch.equal(indices, encoded.indices)
    # decode quantizes its input: the encoder outputs decode to the reconstruction, code vectors to their ids.
    decoded = model.decode(encoded.latents)
    assert isinstance(decoded, DecoderOutput) and torch.equal(decoded.sample, model.reconstruct(x))
    codes = model.quantizer.embed(encoded.indices)
    assert torch.equal(model.decode(codes).sample, model.decode_from_indices(encoded.indices))
    assert torch.equal(model.decode(codes, return_dict=False)[0], decoded.sample)
    with pytest.raises(ValueError, match="latents"):
        model.decode(torch.zeros(5, 3, 2, 2))
    with pytest.raises(ValueError, match="output"):
        model.decode(codes, output="median")


def test_public_methods_never_change_the_codebook_state():
    model = _model().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode_to_indices(_images())
    model.decode(model.encode(_images()).latents)
    model.reconstruct(_images())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    model(_images(), generator=torch.Generator().manual_seed(0))  # a training forward does
    assert bool(model.quantizer.initialized)
    assert not torch.equal(state["quantizer.embedding"], model.quantizer.embedding)


@pytest.mark.parametrize(
    "indices, expected",
    [
        (torch.full((2, 2, 2), 16), r"\[0, 16\)"),
        (torch.full((2, 2, 2), -1), r"\[0, 16\)"),
        (torch.zeros(2, 2, 2), "integer"),
        (torch.zeros(2, 2, 2, dtype=torch.bool), "integer"),
        (torch.zeros(2, 4, dtype=torch.long), "shape"),
        (torch.zeros(2, 3, 3, dtype=torch.long), "shape"),
        (torch.zeros(0, 2, 2, dtype=torch.long), "batch"),
        ([[0, 1], [2, 3]], "Tensor"),
    ],
    ids=["too-large", "negative", "float", "bool", "rank", "grid", "empty", "list"],
)
def test_bad_indices_raise(indices, expected):
    model = _model().eval()
    with pytest.raises(ValueError, match="indices") as info:
        model.decode_from_indices(indices)
    assert info.match(expected)


def test_loss_terms_with_ema_and_with_a_learned_codebook():
    x = _images()
    ema = _model().train()
    out = ema(x, generator=torch.Generator().manual_seed(0))
    assert out.codebook_loss.item() == 0.0
    assert out.loss.item() == pytest.approx(out.reconstruction_loss.item() + out.commitment_loss.item(), rel=1e-6)
    assert "quantizer.embedding" not in dict(ema.named_parameters())

    learned = _model(use_ema=False, kmeans_init=False, restart_dead_codes=False, commitment_cost=0.5,
                     likelihood="gaussian", likelihood_scale=0.1).train()
    out = learned(x)
    assert out.codebook_loss.item() > 0
    # Same squared distance, commitment weighted by beta = 0.5.
    assert out.commitment_loss.item() == pytest.approx(0.5 * out.codebook_loss.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(
        (out.reconstruction_loss + out.codebook_loss + out.commitment_loss).item(), rel=1e-6
    )
    out.loss.backward()
    assert learned.quantizer.embedding.grad.abs().sum() > 0
    assert 1.0 <= out.perplexity.item() <= 16 and 0 < out.codes_used_fraction.item() <= 1
    assert out.dead_codes.item() == round(16 * (1 - out.codes_used_fraction.item()))
    usage = learned.codebook_usage(out.indices)
    assert usage["perplexity"].item() == pytest.approx(out.perplexity.item())


def test_bf16_autocast_keeps_the_quantizer_in_float32():
    model = _model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_images(), generator=torch.Generator().manual_seed(0))
    assert out.commitment_loss.dtype == torch.float32 and torch.isfinite(out.loss)
    assert model.quantizer.embedding.dtype == torch.float32 and model.quantizer.cluster_size.dtype == torch.float32


@pytest.mark.parametrize("use_ema", [True, False])
def test_reload_after_training_restores_codebook_state(tmp_path, use_ema):
    model = _model(use_ema=use_ema, codebook_size=64)  # more codes than vectors per window: some die
    restarted = []
    # The model's own output reports the restarts (the trainer logs every scalar term it returns).
    hook = model.register_forward_hook(lambda module, args, out: restarted.append(int(out.restarted_codes)))
    _train(model, steps=3)  # window of 2: the third step restarts dead codes
    hook.remove()
    assert bool(model.quantizer.initialized) and sum(restarted) > 0  # k-means ran, then dead codes were restarted
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is VQVAEModel
    state, reloaded_state = model.state_dict(), reloaded.state_dict()
    assert state.keys() == reloaded_state.keys()
    for key in state:
        assert torch.equal(state[key], reloaded_state[key]), key
    x = _images(4, seed=11)
    assert torch.equal(model.encode_to_indices(x), reloaded.encode_to_indices(x))
    assert torch.equal(model.reconstruct(x), reloaded.reconstruct(x))
    # Training goes on identically from the reloaded state (EMA statistics, usage window, flags).
    _train(model, steps=2, seed=100)
    _train(reloaded, steps=2, seed=100)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key
