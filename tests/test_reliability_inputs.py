"""Issue #14, values and inputs that used to pass unchecked (findings 1 configs, 2, 3, 9, 10): each test
reproduces the finding and asserts the clear `ValueError` (or, for 10, the warning) it now gives."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

import hf_vae  # noqa: F401  (registers the families)
from hf_vae import CVAEConfig, CVAEModel, VAEConfig, VAEModel, VQVAEConfig, VQVAEModel
from hf_vae.likelihoods import NotALikelihoodWarning
from hf_vae.evaluation import evaluate
from hf_vae.models.pixelcnn_prior import PixelCNNPriorConfig
from hf_vae.models.transformer_prior import TransformerPriorConfig
from hf_vae.sampling import sample_from_logits, sample_tokens
from hf_vae.training import Recipe

FIXTURES = Path(__file__).parent / "fixtures" / "pre_refactor"
TINY_RECIPE = Path(__file__).parents[1] / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
TINY_AE = dict(image_size=8, hidden_channels=[4], num_res_blocks=0)
TINY = {
    VAEConfig: dict(TINY_AE, latent_dim=2),
    CVAEConfig: dict(TINY_AE, latent_dim=2, num_classes=3),
    VQVAEConfig: dict(TINY_AE, codebook_size=4, embedding_dim=2),
    PixelCNNPriorConfig: dict(vocab_size=4, grid_size=3, hidden_size=8, num_layers=2),
    TransformerPriorConfig: dict(vocab_size=4, grid_size=3, hidden_size=8, num_heads=2, num_layers=1),
}
NON_FINITE = [math.inf, -math.inf, math.nan]


# -- finding 1: configs accept non-finite values ----------------------------------------------------


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("config_class, field", [
    (VAEConfig, "beta"), (VAEConfig, "free_bits"), (VAEConfig, "likelihood_scale"), (VQVAEConfig, "commitment_cost"),
])
def test_named_config_floats_reject_non_finite_values(config_class, field, value):
    with pytest.raises(ValueError, match=f"`{field}` must be a finite number"):
        config_class(**{field: value})


def _float_fields(config_class):
    """The family's own fields whose default is a float (or an optional float: likelihood_scale)."""
    return [f.name for f in dataclasses.fields(config_class)
            if f.name in config_class.field_names() and (isinstance(f.default, float) or f.name == "likelihood_scale")]


@pytest.mark.parametrize("config_class", list(TINY))
def test_every_config_float_field_rejects_inf_and_nan(config_class):
    fields = _float_fields(config_class)
    assert fields, config_class  # every family has float fields (dropout, label_dropout, ...)
    for field in fields:
        for value in NON_FINITE:
            with pytest.raises(ValueError, match=f"`{field}` must be"):
                config_class(**{**TINY[config_class], field: value})


# -- finding 2: typos in config keys are kept silently --------------------------------------------


@pytest.mark.parametrize("config_class", list(TINY))
def test_unknown_config_key_is_named_with_the_family_fields(config_class):
    with pytest.raises(ValueError) as error:
        config_class(latnt_dim=8)
    message = str(error.value)
    assert message.startswith("`latnt_dim` must be one of the ")
    for field in config_class.field_names():
        assert repr(field) in message
    assert "num_beams" not in message  # the keys transformers knows are accepted, not advertised


def test_vae_config_typo_no_longer_trains_with_the_default():
    with pytest.raises(ValueError, match="latnt_dim"):
        VAEConfig(latnt_dim=8)
    assert VAEConfig(latent_dim=8).latent_dim == 8


def test_keys_transformers_writes_and_legacy_names_still_load():
    config = VAEConfig(architectures=["VAEModel"], auto_map={"AutoConfig": "x.VAEConfig"}, dtype="float32",
                       transformers_version="4.57.0", torch_dtype="float32", _name_or_path="x",
                       custom_pipelines={"vae": {}}, id2label={0: "a"}, use_cache=True)
    assert config.auto_map == {"AutoConfig": "x.VAEConfig"}
    assert TransformerPriorConfig(n_layer=2, n_head=2, n_embd=8).num_layers == 2
    assert PixelCNNPriorConfig(hidden_channels=16).hidden_size == 16
    # The transformers names of a prior's fields are checked like the fields themselves.
    assert TransformerPriorConfig(num_hidden_layers=3).num_layers == 3
    with pytest.raises(ValueError, match="`num_layers` must be an int >= 1"):
        TransformerPriorConfig(num_hidden_layers=0)


@pytest.mark.parametrize("family", sorted(p.name for p in FIXTURES.iterdir()))
def test_autoconfig_loads_pre_refactor_folders(family):
    config = AutoConfig.from_pretrained(FIXTURES / family)
    assert config.model_type == family


@pytest.mark.parametrize("config_class", list(TINY))
def test_autoconfig_loads_every_saved_family_with_a_pipeline_entry(config_class, tmp_path):
    model_class = {VAEConfig: VAEModel, CVAEConfig: CVAEModel, VQVAEConfig: VQVAEModel}.get(config_class)
    if model_class is None:
        from transformers import AutoModel
        model = AutoModel.from_config(config_class(**TINY[config_class]))
    else:
        model = model_class(config_class(**TINY[config_class]))
    model.save_pretrained(tmp_path)  # writes auto_map, architectures, dtype, transformers_version
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["custom_pipelines"] = {"some-task": {"impl": "pipeline.SomePipeline"}}  # what a saved pipeline adds
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is config_class
    assert config.to_diff_dict().keys() >= {"auto_map", "architectures", "custom_pipelines"}
    saved["latnt_dim"] = 3
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="latnt_dim"):
        AutoConfig.from_pretrained(tmp_path)


def test_from_pretrained_overrides_are_checked_too():
    with pytest.raises(ValueError, match="`beta` must be a finite number, got inf"):
        AutoConfig.from_pretrained(FIXTURES / "vae", beta=math.inf)
    assert AutoConfig.from_pretrained(FIXTURES / "vae", beta=2.0).beta == 2.0


def test_recipe_model_config_typo_fails_in_recipe_check():
    with pytest.raises(ValueError, match=r"`latnt_dim` must be one of the VAEConfig fields .*model.config"):
        Recipe.from_yaml(TINY_RECIPE, ["model.config.latnt_dim=3"])


# -- finding 3: recipe values that failed only after training --------------------------------------


@pytest.mark.parametrize("override, field", [
    ("evaluation.num_importance_samples=-3", "evaluation.num_importance_samples"),
    ("evaluation.validation_importance_samples=-1", "evaluation.validation_importance_samples"),
    ("evaluation.max_examples=0", "evaluation.max_examples"),
    ("evaluation.num_samples=1.5", "evaluation.num_samples"),
    ("training.learning_rate=.inf", "training.learning_rate"),
    ("training.learning_rate=.nan", "training.learning_rate"),
    ("training.weight_decay=-1", "training.weight_decay"),
    ("training.adam_beta2=1.0", "training.adam_beta2"),
    ("training.max_grad_norm=.inf", "training.max_grad_norm"),
    ("training.max_time_minutes=.inf", "training.max_time_minutes"),
    ("training.warmup_steps=-5", "training.warmup_steps"),
    ("training.seed=-1", "training.seed"),
    ("training.early_stopping_patience=0", "training.early_stopping_patience"),
    ("training.lr_scheduler=cosine_typo", "training.lr_scheduler"),
    ("training.keep_best=maybe", "training.keep_best"),
    ("data.binarize_seed=-1", "data.binarize_seed"),
    ("data.image_size=0", "data.image_size"),
    ("hub.hub_model_id=a/b/c", "hub.hub_model_id"),
    ("hub.private=1", "hub.private"),
])
def test_recipe_check_rejects_before_any_work(override, field):
    with pytest.raises(ValueError, match=f"`{field}` must be"):
        Recipe.from_yaml(TINY_RECIPE, [override])


def test_recipe_accepts_valid_hub_id_and_every_shipped_recipe():
    assert Recipe.from_yaml(TINY_RECIPE, ["hub.hub_model_id=user/my-vae"]).hub.hub_model_id == "user/my-vae"
    for path in sorted((Path(__file__).parents[1] / "hf_vae" / "recipes").glob("*.yaml")):
        Recipe.from_yaml(path)


# -- finding 9: non-finite values, tiny temperatures, other dtypes ---------------------------------


def _vae(config_class=VAEConfig):
    torch.manual_seed(0)
    model_class = CVAEModel if config_class is CVAEConfig else VAEModel
    return model_class(config_class(**TINY[config_class])).eval()


@pytest.mark.parametrize("config_class", [VAEConfig, CVAEConfig])
@pytest.mark.parametrize("value", NON_FINITE)
def test_sample_rejects_non_finite_temperature_and_guidance(config_class, value):
    model = _vae(config_class)
    with pytest.raises(ValueError, match="`temperature` must be a finite number"):
        model.sample(2, temperature=value)
    with pytest.raises(ValueError, match="`guidance_scale` must be a finite number"):
        model.sample(2, labels=1 if model.is_conditional else None, guidance_scale=value)
    with pytest.raises(ValueError, match="`guidance_scale` must be a finite number"):
        model.decode(torch.zeros(2, 2), guidance_scale=value)


@pytest.mark.parametrize("config_class", [PixelCNNPriorConfig, TransformerPriorConfig])
@pytest.mark.parametrize("value", NON_FINITE)
def test_prior_sample_rejects_non_finite_temperature_and_guidance(config_class, value):
    from transformers import AutoModel

    model = AutoModel.from_config(config_class(**TINY[config_class], num_classes=2)).eval()
    with pytest.raises(ValueError, match="`temperature` must be a finite number"):
        model.sample(2, temperature=value)
    with pytest.raises(ValueError, match="`guidance_scale` must be a finite number"):
        model.sample(2, labels=1, guidance_scale=value)


@pytest.mark.parametrize("value", [-1, 0.5, True])
def test_evaluate_rejects_bad_counts_before_any_work(value):
    dataset = [{"pixel_values": torch.zeros(1, 8, 8)}]
    for name in ("num_importance_samples", "batch_size", "max_examples"):
        with pytest.raises(ValueError, match=f"`{name}` must be an int"):
            evaluate(_vae(), dataset, progress=False, **{name: value})


@pytest.mark.parametrize("config_class", [VAEConfig, CVAEConfig])
@pytest.mark.parametrize("value", NON_FINITE)
def test_decode_rejects_non_finite_latents(config_class, value):
    model = _vae(config_class)
    latents = torch.zeros(2, 2)
    latents[1, 0] = value
    with pytest.raises(ValueError, match="`latents` must be finite, got 1 NaN or infinite values"):
        model.decode(latents)
    with pytest.raises(ValueError, match="`latents` must be a floating-point tensor"):
        model.decode(torch.zeros(2, 2, dtype=torch.long))


def test_vqvae_decode_rejects_non_finite_latents():
    model = VQVAEModel(VQVAEConfig(**TINY[VQVAEConfig])).eval()
    latents = torch.zeros(1, 2, 4, 4)
    latents[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="`latents` must be finite"):
        model.decode(latents)


@pytest.mark.parametrize("temperature", [1e-45, 1e-38, 1e-30])
def test_tiny_temperature_is_exactly_greedy(temperature):
    generator = torch.Generator().manual_seed(0)
    logits = 5 * torch.randn(64, 10, generator=generator)
    for kwargs in ({}, {"top_k": 3}, {"top_p": 0.5}):
        tokens = sample_from_logits(logits, temperature=temperature, generator=generator, **kwargs)
        assert torch.equal(tokens, logits.argmax(dim=-1)), kwargs
    # Whole sequences through the loop: each position takes the argmax of its logits.
    table = torch.randn(6, 10, generator=generator)
    sequences = sample_tokens(lambda tokens, position, state: (table[position].expand(3, -1), None), 3, 6,
                              temperature=1e-45, generator=generator, progress=False)
    assert torch.equal(sequences, table.argmax(dim=-1).expand(3, -1))


def test_ordinary_temperatures_still_sample():
    logits = torch.zeros(2000, 4)  # uniform: greedy would always give 0
    tokens = sample_from_logits(logits, temperature=1e-3, generator=torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("config_class", [VAEConfig, VQVAEConfig])
def test_pixel_values_of_another_dtype_raise_naming_it(config_class, dtype):
    model = _vae() if config_class is VAEConfig else VQVAEModel(VQVAEConfig(**TINY[VQVAEConfig])).eval()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=rf"`pixel_values` must have the model's dtype torch.float32 .*got dtype {dtype}"):
        model(x.to(dtype))
    with pytest.raises(ValueError, match="`pixel_values` must be a floating-point tensor"):
        model((x > 0.5).long())
    assert model(x.to(model.dtype)).loss.isfinite()  # the documented fix


def test_pixel_prior_scores_any_float_dtype_and_rejects_integer_images():
    from transformers import AutoModel

    config = PixelCNNPriorConfig(**{**TINY[PixelCNNPriorConfig], "vocab_size": 2}, token_source="pixels")
    model = AutoModel.from_config(config).eval()
    x = (torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    expected = model.score(x).score
    for dtype in (torch.float16, torch.float64):  # exact on the token grid: the same tokens, the same score
        assert torch.equal(model.score(x.to(dtype)).score, expected)
    with pytest.raises(ValueError, match="`pixel_values` must be a floating-point tensor .*got torch.int64"):
        model.score(x.long())


# -- finding 10: a Bernoulli model scores grey images without a word --------------------------------


def _grey_and_binary(seed=0):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return x, (x > 0.5).float()


@pytest.mark.parametrize("config_class", [VAEConfig, CVAEConfig, VQVAEConfig])
def test_bernoulli_evaluate_on_grey_images_warns_once_and_records_it(config_class):
    model = VQVAEModel(VQVAEConfig(**TINY[VQVAEConfig])) if config_class is VQVAEConfig else _vae(config_class)
    grey, binary = _grey_and_binary()
    labels = torch.tensor([0, 1, 2, 0])
    for pixel_values, expect_warning in ((grey, True), (binary, False)):
        dataset = [{"pixel_values": x, "labels": y} for x, y in zip(pixel_values, labels)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metrics = evaluate(model, dataset, batch_size=2, num_importance_samples=2, progress=False)
        ours = [w for w in caught if issubclass(w.category, NotALikelihoodWarning)]
        assert len(ours) == (1 if expect_warning else 0)  # once, though two batches were scored
        assert ("warnings" in metrics) == expect_warning
        if expect_warning:
            assert issubclass(ours[0].category, UserWarning)
            assert "not a log-likelihood" in metrics["warnings"].value[0]
            assert metrics["warnings"].to_dict()["value"] == [str(ours[0].message)]


def test_gaussian_likelihood_on_grey_images_does_not_warn():
    model = VAEModel(VAEConfig(**TINY[VAEConfig], likelihood="gaussian")).eval()
    grey, _ = _grey_and_binary()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotALikelihoodWarning)
        model.score(grey, num_importance_samples=2)
        metrics = evaluate(model, [{"pixel_values": x} for x in grey], num_importance_samples=2, progress=False)
    assert "warnings" not in metrics


@pytest.mark.parametrize("config_class", [VAEConfig, VQVAEConfig])
def test_bernoulli_log_likelihood_and_score_warn_once_on_grey_images(config_class):
    model = VQVAEModel(VQVAEConfig(**TINY[VQVAEConfig])) if config_class is VQVAEConfig else _vae()
    grey, binary = _grey_and_binary()
    calls = [lambda x: model.score(x)] if config_class is VQVAEConfig else [
        lambda x: model.score(x, num_importance_samples=3), lambda x: model.log_likelihood(x, num_samples=300, chunk_size=8)]
    for call in calls:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call(grey)
            call(binary)
        assert [issubclass(w.category, NotALikelihoodWarning) for w in caught] == [True]
