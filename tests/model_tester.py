"""The contracts every hf_vae model keeps, as a mixin: a family's test class sets a tiny config and
how to build a batch, and inherits these tests (see docs/design.md, "Contracts every model keeps")."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel

import hf_vae  # noqa: F401  (registers the families)

REPO_ROOT = Path(__file__).resolve().parents[1]


# The prologue of a subprocess where hf_vae cannot be imported: the repo is scrubbed from sys.path and
# a meta-path finder blocks the editable install, so only code saved beside the weights can run.
WITHOUT_HF_VAE = """
import importlib.abc, json, sys

class BlockHfVae(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_vae" or name.startswith("hf_vae."):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.path = [p for p in sys.path if p not in ("", ".", REPO_ROOT)]
sys.meta_path.insert(0, BlockHfVae())
try:
    import hf_vae
    raise SystemExit("hf_vae is importable: the test would prove nothing")
except ModuleNotFoundError:
    pass
"""


def import_benchmark(name: str):
    """The module `benchmarks/<name>.py`: the benchmarks are scripts, not a package, so their folder is on
    `sys.path` while it (and the benchmarks it imports) loads."""
    import importlib

    folder = str(REPO_ROOT / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(folder)


def run_python(body: str, tmp_path, timeout: int = 300, *, without_hf_vae: bool = False) -> dict:
    """Run `body` in a fresh Python (one thread) that imports this checkout's hf_vae, or, with
    `without_hf_vae`, after `WITHOUT_HF_VAE`; returns the JSON its last stdout line prints."""
    script = textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    if without_hf_vae:
        script = f"REPO_ROOT = {str(REPO_ROOT)!r}\n" + WITHOUT_HF_VAE + script
        env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH="")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_without_hf_vae(body: str, tmp_path, timeout: int = 300):
    """Run `body` after `WITHOUT_HF_VAE` in a fresh Python; returns the JSON its last stdout line prints."""
    return run_python(body, tmp_path, timeout, without_hf_vae=True)


def gaussian_latent_identities(model, out) -> dict:
    """The identities the VAE / CVAE named terms satisfy (free bits off): the loss is the negative ELBO
    with the KL weighted by `kl_weight()`, and the per-example ELBO averages to -(reconstruction + KL)."""
    return {
        "loss = reconstruction_loss + kl_weight * kl_loss": (out.loss, out.reconstruction_loss + model.kl_weight() * out.kl_loss),
        "mean(elbo) = -(reconstruction_loss + kl_loss)": (out.elbo.mean(), -(out.reconstruction_loss + out.kl_loss)),
    }


def gaussian_latent_per_example(model, inputs: dict) -> dict:
    """The VAE / CVAE outputs that do not depend on noise: q(z|x[, y]) and the reconstruction at its mean."""
    labels = {"labels": inputs["labels"]} if model.is_conditional else {}
    posterior = model.encode(inputs["pixel_values"], **labels).latent_dist
    return {
        "posterior_mean": posterior.mean,
        "posterior_logvar": posterior.logvar,
        "reconstruction": model.reconstruct(inputs["pixel_values"], **labels),
    }


class ModelTesterMixin:
    model_class = None
    config_class = None
    config_kwargs: dict = {}
    # (field, bad value) pairs the config must reject with a ValueError naming the field
    bad_config_values: list = []

    # -- hooks a family may override ------------------------------------------------------------

    def get_config(self, **overrides):
        return self.config_class(**{**self.config_kwargs, **overrides})

    def get_model(self, seed: int = 0, **overrides):
        torch.manual_seed(seed)
        return self.model_class(self.get_config(**overrides))

    def get_inputs(self, batch_size: int = 4, seed: int = 0) -> dict:
        config = self.get_config()
        g = torch.Generator().manual_seed(seed)
        shape = (batch_size, config.num_channels, config.image_size, config.image_size)
        return {"pixel_values": torch.rand(shape, generator=g).round()}

    def sample_outputs(self, model, generator):
        """A random public method of the family (for the determinism test)."""
        return model.sample(2, generator=generator)

    def sample_outputs_for(self, model, num_samples, **options):
        """`model.sample(num_samples, **options)` (a family may add quiet-mode options here)."""
        return model.sample(num_samples, **options)

    def named_term_identities(self, model, out) -> dict | None:
        """{identity: (left, right)} that the named terms of `forward`'s output must satisfy; every family
        states them."""
        raise NotImplementedError(f"{type(self).__name__} must state the named-term identities of its family")

    def per_example_outputs(self, model, inputs: dict) -> dict | None:
        """Eval-mode outputs with one row per example, for the batching contract; every family declares them."""
        raise NotImplementedError(f"{type(self).__name__} must declare the per-example outputs of its family")

    # -- the contracts ------------------------------------------------------------------------------

    def test_forward_returns_loss_and_named_terms(self):
        model = self.get_model().eval()
        out = model(**self.get_inputs(), generator=torch.Generator().manual_seed(0))
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        as_tuple = model(**self.get_inputs(), generator=torch.Generator().manual_seed(0), return_dict=False)
        assert torch.equal(as_tuple[0], out.loss)
        identities = self.named_term_identities(model, out)
        assert identities
        for name, (left, right) in identities.items():
            torch.testing.assert_close(left, right, rtol=1e-6, atol=1e-5, msg=lambda m: f"{name}: {m}")

    def test_batch_equals_single_examples(self):
        # The batching contract: a batch of N gives each example what it gets alone.
        model = self.get_model().eval()
        inputs = self.get_inputs(batch_size=4)
        batched = self.per_example_outputs(model, inputs)
        singles = [self.per_example_outputs(model, {k: v[i : i + 1] for k, v in inputs.items()}) for i in range(4)]
        assert batched
        # Examples that differ give different outputs (the contract is not met by a constant).
        assert any(not torch.allclose(value[0], value[1]) for value in batched.values())
        for name, value in batched.items():
            assert value.shape[0] == 4, name
            torch.testing.assert_close(value, torch.cat([s[name] for s in singles]), rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"{name}: {m}")

    def test_protocol_and_sample_vocabulary(self):
        model = self.get_model().eval()
        assert model.input_kind in ("images", "tokens") and model.main_input_name in self.get_inputs()
        assert model.capabilities <= {"sample", "encode", "reconstruct", "score", "interpolate"}
        assert isinstance(model.schedule_values(0), dict)
        if "sample" not in model.capabilities:
            assert not hasattr(model, "sample"), "a family without the sample capability has no `sample`"
            return
        params = list(inspect.signature(model.sample).parameters.values())
        assert params[0].name == "num_samples"
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params[1:]), "everything after num_samples is keyword-only"
        shared = {"generator", "labels", "temperature", "guidance_scale"}
        assert {p.name for p in params if p.kind is p.KEYWORD_ONLY} == shared
        # The family's own draw takes the shared arguments and exactly the options it declares.
        own = {p.name for p in inspect.signature(type(model)._draw).parameters.values() if p.kind is p.KEYWORD_ONLY}
        var = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(type(model)._draw).parameters.values())
        assert shared <= own and (own - shared == model.sample_options or (var and own - shared <= model.sample_options))
        with pytest.raises(ValueError, match="`no_such_option` must be a sample option"):
            model.sample(2, no_such_option=True)
        labels = torch.tensor([0, 1, 0]) if model.is_conditional else None
        assert self.sample_outputs_for(model, 3, labels=labels, generator=torch.Generator().manual_seed(0)).shape[0] == 3
        if not model.is_conditional:
            with pytest.raises(ValueError, match="`labels`"):
                self.sample_outputs_for(model, 2, labels=torch.tensor([0, 1]))
            with pytest.raises(ValueError, match="`guidance_scale`"):
                self.sample_outputs_for(model, 2, guidance_scale=2.0)

    def test_save_load_identity(self, tmp_path):
        model = self.get_model().eval()
        model.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").exists()
        assert not list(tmp_path.glob("*.bin")), "only safetensors may be written"
        reloaded = AutoModel.from_pretrained(tmp_path).eval()
        assert type(reloaded) is type(model)
        assert AutoConfig.from_pretrained(tmp_path).to_dict() == reloaded.config.to_dict()
        inputs = self.get_inputs()
        a = model(**inputs, generator=torch.Generator().manual_seed(1))
        b = reloaded(**inputs, generator=torch.Generator().manual_seed(1))
        for key, value in a.items():
            assert torch.equal(value, b[key]), f"output {key!r} changed after save/load"
        for (name, p), (_, q) in zip(model.state_dict().items(), reloaded.state_dict().items()):
            assert torch.equal(p, q), f"{name} changed after save/load"

    def test_determinism_with_generator(self):
        model = self.get_model().eval()
        inputs = self.get_inputs()
        a = model(**inputs, generator=torch.Generator().manual_seed(5)).loss
        b = model(**inputs, generator=torch.Generator().manual_seed(5)).loss
        c = model(**inputs, generator=torch.Generator().manual_seed(6)).loss
        assert torch.equal(a, b) and not torch.equal(a, c)
        s1 = self.sample_outputs(model, torch.Generator().manual_seed(7))
        s2 = self.sample_outputs(model, torch.Generator().manual_seed(7))
        s3 = self.sample_outputs(model, torch.Generator().manual_seed(8))
        assert torch.equal(s1, s2) and not torch.equal(s1, s3)

    @pytest.mark.parametrize(
        "corrupt, expected",
        [
            (lambda x: x[0], "shape"),  # wrong rank
            (lambda x: torch.cat([x, x], dim=1), "shape"),  # wrong channels
            (lambda x: x[..., :-1, :-1], "shape"),  # wrong size
            (lambda x: (x * 255).to(torch.uint8), "dtype"),  # integer images
            (lambda x: x * 2.0 + 0.5, r"\[0, 1\]"),  # out of range, never clamped
            (lambda x: x.masked_fill(torch.zeros_like(x, dtype=torch.bool).index_fill_(0, torch.tensor([0]), True), float("nan")), "NaN"),
        ],
        ids=["rank", "channels", "size", "dtype", "range", "nan"],
    )
    def test_bad_pixel_values_raise(self, corrupt, expected):
        model = self.get_model()
        inputs = self.get_inputs()
        inputs["pixel_values"] = corrupt(inputs["pixel_values"])
        with pytest.raises(ValueError, match="pixel_values") as info:
            model(**inputs)
        assert info.match(expected)

    def test_config_rejects_bad_values(self):
        assert self.bad_config_values, "each family lists values its config must reject"
        for field, value in self.bad_config_values:
            with pytest.raises(ValueError, match=f"`{field}`") as info:
                self.get_config(**{field: value})
            assert repr(value) in str(info.value) or str(value) in str(info.value)

    def test_optimizer_step_lowers_loss(self):
        model = self.get_model().train()
        inputs = self.get_inputs(batch_size=8)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def loss():
            return model(**inputs, generator=torch.Generator().manual_seed(0)).loss

        before = loss()
        before.backward()
        optimizer.step()
        with torch.no_grad():
            after = loss()
        assert after.item() < before.item()

    def test_loads_as_remote_code_without_hf_vae(self, tmp_path):
        model = self.get_model().eval()
        model.save_pretrained(tmp_path / "model")
        inputs = self.get_inputs()
        torch.save(inputs, tmp_path / "inputs.pt")
        expected = model(**inputs, generator=torch.Generator().manual_seed(3)).loss
        loss = run_without_hf_vae(
            f"""
            import torch
            from transformers import AutoModel
            model = AutoModel.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            inputs = torch.load({str(tmp_path / 'inputs.pt')!r}, weights_only=True)
            print(repr(model(**inputs, generator=torch.Generator().manual_seed(3)).loss.item()))
            """,
            tmp_path,
        )
        assert loss == expected.item()


# ---------------------------------------------------------------------------------------------
# Token priors: the same contracts for models whose input is a token grid `indices`
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models run fastest on one thread, and a shared CPU makes multi-threaded ones crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LN2 = torch.tensor(2.0, dtype=torch.float64).log().item()


def all_binary_grids(size: int = 2) -> torch.Tensor:
    """Every grid of 0/1 tokens of a (size x size) grid, shape (2 ** size**2, size, size), in counting order."""
    n = size * size
    bits = (torch.arange(2**n)[:, None] >> torch.arange(n - 1, -1, -1)) & 1  # row r: r in binary, n digits
    return bits.view(-1, size, size)


class TokenPriorTesterMixin(ModelTesterMixin):
    """The shared contracts for models whose input is a token grid `indices` instead of `pixel_values`."""

    #: {field name of configs saved before the refactor: today's name}; such a config.json must still load.
    legacy_config_fields: dict = {}

    def get_inputs(self, batch_size: int = 4, seed: int = 0) -> dict:
        config = self.get_config()
        g = torch.Generator().manual_seed(seed)
        inputs = {"indices": torch.randint(0, config.vocab_size, (batch_size, config.grid_size, config.grid_size), generator=g)}
        if config.num_classes is not None:
            inputs["labels"] = torch.randint(0, config.num_classes, (batch_size,), generator=g)
        return inputs

    def sample_outputs(self, model, generator):
        return model.sample(2, labels=torch.tensor([0, 1]) if model.config.num_classes else None,
                            generator=generator, progress=False)

    def sample_outputs_for(self, model, num_samples, **options):
        return model.sample(num_samples, progress=False, **options)

    def named_term_identities(self, model, out) -> dict:
        # The loss is the mean NLL per token of the exact log-likelihood forward reports per grid.
        config = model.config
        inputs = self.get_inputs()
        return {
            "loss = -mean log p / tokens": (out.loss, -out.log_likelihood.mean() / config.grid_size**2),
            "forward log p = log_likelihood": (out.log_likelihood, model.log_likelihood(inputs["indices"], inputs.get("labels"))),
        }

    def per_example_outputs(self, model, inputs: dict) -> dict:
        # No example may see another's tokens or label: exact log-likelihoods per grid.
        return {"log_likelihood": model.log_likelihood(inputs["indices"], inputs.get("labels"))}

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
        """The token version of the bad-input contract: bad `indices` raise a ValueError naming them."""
        model = self.get_model()
        inputs = self.get_inputs()
        inputs["indices"] = corrupt(inputs["indices"])
        if inputs["indices"].shape[:1] != (4,):
            inputs.pop("labels", None)
        with pytest.raises(ValueError, match="indices") as info:
            model(**inputs)
        assert info.match(expected)
        with pytest.raises(ValueError, match="indices"):
            model.log_likelihood(inputs["indices"])

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
            model(self.get_inputs()["indices"], labels=labels)
        assert info.match(expected)
        unconditional = self.get_model(num_classes=None, label_dropout=0.0)
        with pytest.raises(ValueError, match="labels.*unconditional"):
            unconditional(self.get_inputs()["indices"], labels=torch.tensor([0, 1, 2, 0]))
        no_dropout = self.get_model(label_dropout=0.0)
        with pytest.raises(ValueError, match="labels.*required"):
            no_dropout(self.get_inputs()["indices"])

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
        x = self.get_inputs()["indices"].clamp(max=1)
        y = torch.tensor([0, 1, 2, 0])
        expected = -model.log_likelihood(x, y) / (16 * LN2)
        torch.testing.assert_close(model.bits_per_token(x, y), expected)
        torch.testing.assert_close(model.bits_per_dim(x, y), expected)
        with pytest.raises(ValueError, match="token_source"):
            self.get_model().bits_per_dim(self.get_inputs()["indices"], y)

    def test_pixels_tokens_round_trip(self):
        model = self.get_model(vocab_size=4, token_source="pixels")
        tokens = self.get_inputs()["indices"].clamp(max=3)
        pixels = model.indices_to_pixels(tokens)
        assert pixels.shape == (4, 1, 4, 4) and pixels.max() <= 1
        assert torch.equal(model.pixels_to_indices(pixels), tokens)
        with pytest.raises(ValueError, match="pixel_values"):
            model.pixels_to_indices(pixels + 0.1)  # off the 4-level grid: never rounded
        with pytest.raises(ValueError, match="token_source"):
            self.get_model().indices_to_pixels(tokens)

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
        with pytest.raises(TypeError):
            model.sample(2, torch.tensor([0, 1]))  # everything after num_samples is keyword-only
        with pytest.raises(ValueError, match="shape"):
            model.sample(2, labels=torch.tensor([0, 1, 2]), progress=False)  # one label per sample
        with pytest.raises(ValueError, match="`no_such_option`"):
            model.sample(2, no_such_option=True, progress=False)
        unconditional = self.get_model(num_classes=None, label_dropout=0.0).eval()
        assert not unconditional.is_conditional and unconditional.null_label is None and model.null_label == 3
        with pytest.raises(ValueError, match="`labels`.*unconditional"):
            unconditional.sample(2, labels=1, progress=False)
        with pytest.raises(ValueError, match="`guidance_scale`"):
            unconditional.sample(2, guidance_scale=2.0, progress=False)

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
        assert nll.mean() - LN2 < 0.03, nll
        samples = model.sample(16, generator=torch.Generator().manual_seed(0), progress=False).flatten(1)
        assert (samples == samples[:, :1]).all(dim=1).float().mean() >= 0.9

    def test_config_loads_legacy_field_names(self, tmp_path):
        """A config.json written before the refactor (old field names) loads into today's fields, and is
        saved again with today's names only."""
        assert self.legacy_config_fields, "each prior family lists the field names it renamed"
        config = self.get_config(num_layers=2)
        old = config.to_dict()
        for old_name, new_name in self.legacy_config_fields.items():
            old[old_name] = old.pop(new_name)
        (tmp_path / "config.json").write_text(json.dumps(old))
        loaded = AutoConfig.from_pretrained(tmp_path)
        assert type(loaded) is self.config_class and loaded.num_layers == 2
        fields = {key: value for key, value in loaded.to_dict().items() if key != "_name_or_path"}
        assert fields == {key: value for key, value in config.to_dict().items() if key != "_name_or_path"}
        assert not set(self.legacy_config_fields) & set(fields)
