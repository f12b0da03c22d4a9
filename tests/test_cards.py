"""Model cards rendered from model_cards/: metadata, measured numbers only, errors that name the template
and the field, and usage snippets that run (against a local folder here; against a Hub repo in test_hub)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from hf_vae import cards
from hf_vae import data as hd
from hf_vae.evaluation import evaluate
from hf_vae.training import Recipe, build_model, save_pngs

from .model_tester import REPO_ROOT

TINY_RECIPE = REPO_ROOT / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """What a run directory holds (model, measured metrics.json, PNGs), without the training."""
    run = tmp_path_factory.mktemp("cards") / "vae-digits"
    recipe = Recipe.from_yaml(TINY_RECIPE, [f"training.output_dir={run}", "evaluation.num_importance_samples=5"])
    torch.manual_seed(0)
    model = build_model(recipe).eval()
    test = hd.load_split("digits", "test", binarize="static")
    with pytest.warns(UserWarning, match="posterior collapse"):  # an untrained VAE uses no latent units
        metrics = evaluate(model, test, num_importance_samples=5, max_examples=60, progress=False)
    model.save_pretrained(run)
    summary = {"recipe": recipe.to_dict(), "steps": 0, "test": {k: m.to_dict() for k, m in metrics.items()}}
    (run / "metrics.json").write_text(json.dumps(summary, indent=2))
    save_pngs(model, torch.utils.data.Subset(test, range(8)), run, num_samples=16)
    return run


def copy_run(run_dir: Path, tmp_path: Path, drop_metrics=(), keep_metrics_file: bool = True) -> Path:
    target = tmp_path / run_dir.name
    shutil.copytree(run_dir, target)
    summary = json.loads((target / "metrics.json").read_text())
    for name in drop_metrics:
        summary["test"].pop(name)
    (target / "metrics.json").write_text(json.dumps(summary))
    if not keep_metrics_file:
        (target / "metrics.json").unlink()
    return target


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_card_metadata(run_dir):
    # The recipe's `digits` is embedded, not a Hub id: the metadata names the pushed copy (push_embedded_dataset).
    card = cards.render_card(run_dir, "someone/vae-digits", dataset_id="someone/digits")
    metadata = yaml.safe_load(str(card).split("---")[1])
    assert metadata["library_name"] == "hf_vae"
    assert metadata["pipeline_tag"] == "unconditional-image-generation"
    assert {"hf_vae", "vae", "safetensors"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["someone/digits"]
    results = metadata["model-index"][0]["results"][0]
    assert metadata["model-index"][0]["name"] == "vae-digits"
    assert results["dataset"] == {"name": "someone/digits", "type": "someone/digits", "split": "test"}
    names = {m["type"]: m["name"] for m in results["metrics"]}
    assert names["nll"] == "NLL (IWAE, k=5) [nats]"
    assert names["bits_per_dim"] == "NLL (IWAE, k=5) [bits/dim]"
    assert names["elbo"] == "ELBO (ELBO, 1 sample) [nats]"


def test_model_index_values_are_the_metrics_json_values(run_dir):
    card = cards.render_card(run_dir, "someone/vae-digits", dataset_id="someone/digits")
    measured = json.loads((run_dir / "metrics.json").read_text())["test"]
    results = card.data.eval_results
    assert [r.metric_type for r in results] == [n for n in cards.CARD_FAMILIES["vae"].index_metrics if n in measured]
    for result in results:
        assert result.metric_value == measured[result.metric_type]["value"]


def test_every_number_in_the_results_is_measured(run_dir):
    card = cards.render_card(run_dir, "someone/vae-digits")
    measured = json.loads((run_dir / "metrics.json").read_text())["test"]
    allowed = set(NUMBER.findall(json.dumps(measured)))  # numbers inside estimators and descriptions
    for metric in measured.values():
        values = metric["value"] if isinstance(metric["value"], list) else [metric["value"]]
        allowed |= {cards._format_number(v) for v in values}
    for title in ("Evaluation", "Limitations"):
        for number in NUMBER.findall(section(card.text, title)):
            assert number in allowed, f"{title} states {number}, which metrics.json does not hold"


def test_without_nll_the_card_mentions_no_nll(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path, drop_metrics=("nll", "bits_per_dim"))
    content = str(cards.render_card(run, "someone/vae-digits", dataset_id="someone/digits"))
    for word in ("nll", "iwae", "log-likelihood", r"\bbits_per_dim"):  # (elbo_bits_per_dim is measured)
        assert not re.search(word, content.lower()), word
    assert "elbo_bits_per_dim" in content  # what was measured is still there


def test_without_metrics_json_the_card_states_no_numbers(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path, keep_metrics_file=False)
    card = cards.render_card(run, "someone/vae-digits")
    assert card.data.eval_results is None and "model-index" not in str(card)
    assert "No evaluation was recorded" in card.text
    assert not NUMBER.findall(section(card.text, "Evaluation") + section(card.text, "Limitations"))


def test_samples_are_relative_links_and_the_command_is_the_recipe(run_dir):
    card = cards.render_card(run_dir, "someone/vae-digits")
    assert "![Samples drawn from the model](samples.png)" in card.text
    assert "![Reconstructions](reconstructions.png)" in card.text
    assert "training_curves.png" not in card.text  # not in this run dir: never linked
    training = section(card.text, "Training")
    assert "hf-vae train recipe.yaml" in training
    recipe_yaml = re.search(r"```yaml\n(.*?)```", training, flags=re.S).group(1)
    recipe = json.loads((run_dir / "metrics.json").read_text())["recipe"]
    assert recipe["training"]["output_dir"] == str(run_dir)  # the machine's path: the card shows it relative
    recipe["training"]["output_dir"] = f"runs/{run_dir.name}"
    assert yaml.safe_load(recipe_yaml) == recipe and str(run_dir) not in card.text
    assert "| `latent_dim` | `8` |" in training


def test_limitations_follow_the_measurements(run_dir):
    limitations = section(cards.render_card(run_dir, "someone/vae-digits").text, "Limitations")
    assert "blurrier" in limitations
    assert "0 of 8 latent dimensions are active" in limitations and "posterior has collapsed" in limitations


def test_usage_snippets_run_against_a_local_folder(run_dir, tmp_path, monkeypatch):
    card = cards.render_card(run_dir)  # no repo id: the snippets load a placeholder, never a local path
    blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
    assert len(blocks) == 2 and cards.PLACEHOLDER_REPO_ID in blocks[0] and "trust_remote_code=True" in blocks[1]
    assert str(run_dir.resolve()) not in card.text
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        block = block.replace(cards.PLACEHOLDER_REPO_ID, str(run_dir))  # what the card tells the reader to do
        namespace: dict = {}
        exec(compile(block, "<card>", "exec"), namespace)  # noqa: S102 - the snippet is the test subject
        assert type(namespace["model"]).__name__ == "VAEModel"


def _template_copy(tmp_path: Path, vae_template: str) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(cards.find_template_dir(), folder)
    (folder / "vae.md.j2").write_text(vae_template)
    return folder


def test_a_template_missing_a_field_names_the_template_and_the_field(run_dir, tmp_path):
    folder = _template_copy(tmp_path, '{% extends "_base.md.j2" %}\n{% block usage %}{{ config.no_such_field }}{% endblock %}\n')
    with pytest.raises(ValueError, match=r"template 'vae.md.j2' needs field `no_such_field`.*vae.md.j2, line 2"):
        cards.render_card(run_dir, template_dir=folder)
    # A number the run did not measure is a missing field, not an empty cell.
    run = copy_run(run_dir, tmp_path, drop_metrics=("nll",))
    folder = _template_copy(tmp_path / "b", '{% extends "_base.md.j2" %}\n{% block usage %}NLL {{ metrics.nll.text }}{% endblock %}\n')
    with pytest.raises(ValueError, match="'vae.md.j2' needs field `nll`"):
        cards.render_card(run, template_dir=folder)


def test_a_template_without_usage_block_is_rejected(run_dir, tmp_path):
    folder = _template_copy(tmp_path, "---\n{{ card_data }}\n---\n\n# {{ model_name }}\n")
    with pytest.raises(ValueError, match=r"'vae.md.j2' must render a ```python usage block"):
        cards.render_card(run_dir, template_dir=folder)


def test_a_family_plugs_in_with_a_template_and_one_registration(run_dir, tmp_path, monkeypatch):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "my_vae.md.j2").write_text(
        '{% extends "vae.md.j2" %}\n{% block summary %}A plug-in card for {{ model_name }}.{% endblock %}\n')
    monkeypatch.setitem(cards.CARD_FAMILIES, "vae", cards.CARD_FAMILIES["vae"])  # restored after the test
    cards.register_card_family("vae", template="my_vae.md.j2", pipeline_tag="image-to-image", tags=("plug-in",),
                               template_dir=plugin)
    card = cards.render_card(run_dir, "someone/vae-digits")
    assert "A plug-in card for vae-digits." in card.text and "```python" in card.text
    assert card.data.pipeline_tag == "image-to-image" and "plug-in" in card.data.tags


def test_every_registered_family_has_a_shipped_template():
    import tomllib

    from hf_vae.hub import hf_vae_families

    folder = REPO_ROOT / "model_cards"
    assert cards.find_template_dir() == folder
    for family in hf_vae_families():
        assert family in cards.CARD_FAMILIES, f"{family} has no card family (hf_vae.cards.register_card_family)"
        assert (folder / cards.CARD_FAMILIES[family].template).is_file()
    data_files = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data_files["share/hf_vae/model_cards"] == ["model_cards/*.j2"]


def test_a_non_hf_vae_folder_has_no_card(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert'"):
        cards.render_card(tmp_path)
