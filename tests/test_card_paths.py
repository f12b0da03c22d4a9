"""One card path: every way of pushing an hf_vae model (`model.push_to_hub`, a transformers pipeline's
`push_to_hub`, a diffusers pipeline's `push_to_hub`, `hf-vae push`, training with `hub.push_to_hub`) uploads
the hf_vae card, against the local Hub server (tests/hub_server.py): the same `library_name`, the hf_vae
headings, the run's measured metrics when it has a metrics.json for these weights and the plain "no
evaluation" statement when not, Hub ids only in the metadata, and usage snippets that load the repo id."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from transformers import AutoModel, pipeline

from hf_vae import VAEConfig, VAEModel, cards
from hf_vae.cli import main as cli_main
from hf_vae.pipelines import VAEGenerationPipeline

from .test_hub import new_repo
from .test_hub import trained_and_pushed  # noqa: F401 - the fixture: a short run pushed by training (path 5)

pytestmark = pytest.mark.usefixtures("hub_server")

# The headings of the hf_vae card (model_cards/_base.md.j2), in order; transformers' boilerplate has none of them.
HF_VAE_HEADINGS = ["## Usage", "## Evaluation", "## Limitations", "## Training", "### Hyper-parameters (`VAEConfig`)"]
NO_METRICS = "No evaluation was recorded with this model"
PATHS = ["model.push_to_hub", "save_pretrained(push_to_hub=True)", "transformers pipeline", "diffusers pipeline", "hf-vae push"]


def push(path: str, model, repo_id: str, tmp_path) -> None:
    """Push `model` to `repo_id` the way `path` names."""
    if path == "model.push_to_hub":
        model.push_to_hub(repo_id)
    elif path == "save_pretrained(push_to_hub=True)":
        model.save_pretrained(tmp_path / "saved", push_to_hub=True, repo_id=repo_id)
    elif path == "transformers pipeline":
        pipeline("unconditional-image-generation", model=model).push_to_hub(repo_id)
    elif path == "diffusers pipeline":
        VAEGenerationPipeline(vae=model).push_to_hub(repo_id)
    elif path == "hf-vae push":
        folder = model.name_or_path  # the run directory it was loaded from, or a fresh save_pretrained folder
        if not (folder and os.path.isdir(folder)):
            folder = tmp_path / "folder"
            model.save_pretrained(folder)
        cli_main(["push", str(folder), repo_id])
    else:
        raise AssertionError(path)


def pushed_card(hub_server, repo_id: str) -> tuple[ModelCard, dict, dict[str, bytes]]:
    files = hub_server.files(repo_id)
    text = files["README.md"].decode("utf-8")
    return ModelCard(text), yaml.safe_load(text.split("---")[1]), files


def assert_hf_vae_card(card: ModelCard, metadata: dict, repo_id: str, files: dict) -> None:
    """The hf_vae card, whichever path pushed it."""
    assert metadata["library_name"] == "hf_vae"
    assert "transformers" not in metadata.get("tags", []) and "diffusers" not in metadata.get("tags", [])
    assert "Model Card for Model ID" not in card.text and "diffusers" not in metadata["library_name"]
    headings = [line for line in card.text.splitlines() if line.startswith("## ") or line.startswith("### ")]
    picture_sections = ("## Samples", "## Latent space", "## Codebook")  # only with the run's PNGs
    assert [h for h in headings if h not in picture_sections] == HF_VAE_HEADINGS
    assert metadata.get("datasets") is None  # the runs here read the embedded `digits`: not a Hub id
    blocks = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)
    assert blocks and all(repo_id in block for block in blocks)
    assert "/tmp" not in card.text and cards.PLACEHOLDER_REPO_ID not in card.text
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.text):
        assert image in files, f"the card links {image}, which was not uploaded"


def assert_metrics(card: ModelCard, metadata: dict, files: dict, run_dir) -> None:
    """The run's measured numbers: the table, the model-index-free metadata (embedded dataset), metrics.json."""
    measured = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert NO_METRICS not in card.text
    assert "| Metric | Value | Unit | Estimator |" in card.text
    assert f"| {cards._format_number(measured['nll']['value'])} | nats | {measured['nll']['estimator']} |" in card.text
    assert json.loads(files["metrics.json"])["test"] == measured


def assert_no_metrics(card: ModelCard, metadata: dict, files: dict) -> None:
    assert NO_METRICS in card.text
    assert "| Metric |" not in card.text and "model-index" not in metadata and "metrics.json" not in files


def test_training_push_writes_the_card_with_metrics(trained_and_pushed, hub_server):
    run_dir, repo_id = trained_and_pushed
    card, metadata, files = pushed_card(hub_server, repo_id)
    assert_hf_vae_card(card, metadata, repo_id, files)
    assert_metrics(card, metadata, files, run_dir)


@pytest.mark.parametrize("path", PATHS)
def test_push_of_a_measured_run_writes_the_card_with_its_metrics(path, trained_and_pushed, hub_server, tmp_path):
    run_dir, _ = trained_and_pushed
    model = AutoModel.from_pretrained(run_dir).eval()  # name_or_path: the run, whose metrics.json fits these weights
    repo_id = new_repo("measured")
    push(path, model, repo_id, tmp_path)
    card, metadata, files = pushed_card(hub_server, repo_id)
    assert_hf_vae_card(card, metadata, repo_id, files)
    assert_metrics(card, metadata, files, run_dir)
    assert {"samples.png", "reconstructions.png"} <= files.keys()  # the run's PNGs travel with its card


@pytest.mark.parametrize("path", PATHS)
def test_push_without_metrics_writes_the_card_with_the_plain_statement(path, hub_server, tmp_path):
    torch.manual_seed(0)
    model = VAEModel(VAEConfig(image_size=8, num_channels=1, hidden_channels=[8, 16], latent_dim=4, num_res_blocks=1)).eval()
    repo_id = new_repo("unmeasured")
    push(path, model, repo_id, tmp_path)
    card, metadata, files = pushed_card(hub_server, repo_id)
    assert_hf_vae_card(card, metadata, repo_id, files)
    assert_no_metrics(card, metadata, files)


@pytest.mark.parametrize("path", ["model.push_to_hub", "diffusers pipeline"])
def test_a_model_changed_since_its_run_was_measured_gets_no_metrics(path, trained_and_pushed, hub_server, tmp_path):
    run_dir, _ = trained_and_pushed
    model = AutoModel.from_pretrained(run_dir).eval()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # fine-tuned after loading: the run's numbers no longer describe it
    repo_id = new_repo("changed")
    push(path, model, repo_id, tmp_path)
    card, metadata, files = pushed_card(hub_server, repo_id)
    assert_hf_vae_card(card, metadata, repo_id, files)
    assert_no_metrics(card, metadata, files)


def test_diffusers_card_loads_the_component_subfolder(trained_and_pushed, hub_server, tmp_path):
    run_dir, _ = trained_and_pushed
    repo_id = new_repo("diffusers")
    VAEGenerationPipeline(vae=AutoModel.from_pretrained(run_dir)).push_to_hub(repo_id)
    card, _, _ = pushed_card(hub_server, repo_id)
    block = re.findall(r"```python\n(.*?)```", card.text, flags=re.S)[0]
    assert f'AutoModel.from_pretrained("{repo_id}", subfolder="vae")' in block
    assert f'DiffusionPipeline.from_pretrained("{repo_id}")' in card.text
    namespace: dict = {}
    exec(compile(block, "<card>", "exec"), namespace)  # noqa: S102 - the snippet is the test subject
    assert type(namespace["model"]) is VAEModel
    from diffusers import DiffusionPipeline

    assert type(DiffusionPipeline.from_pretrained(repo_id)) is VAEGenerationPipeline  # what the card's text says


def test_card_without_repo_id_has_a_placeholder_not_a_local_path(trained_and_pushed, tmp_path, capsys):
    run_dir, _ = trained_and_pushed
    output = tmp_path / "README.md"
    cli_main(["card", str(run_dir), "--output", str(output)])
    text = output.read_text()
    assert str(run_dir) not in text and str(run_dir.resolve()) not in text
    assert f'AutoModel.from_pretrained("{cards.PLACEHOLDER_REPO_ID}")' in text
    assert f"replace `{cards.PLACEHOLDER_REPO_ID}`" in text
    assert cards.PLACEHOLDER_REPO_ID in capsys.readouterr().err


def test_dataset_metadata_names_hub_ids_only(trained_and_pushed):
    run_dir, _ = trained_and_pushed
    card = cards.render_card(run_dir, "someone/vae")
    assert card.data.datasets is None and card.data.eval_results is None  # the recipe's `digits` is embedded
    assert "`digits`" in card.text  # the prose still says what it was trained on
    card = cards.render_card(run_dir, "someone/vae", dataset_id="someone/digits")
    assert card.data.datasets == ["someone/digits"]
    assert {r.dataset_type for r in card.data.eval_results} == {"someone/digits"}
    with pytest.raises(ValueError, match=r"`dataset_id` must be a Hub dataset id .*got 'mnist5k'"):
        cards.render_card(run_dir, "someone/vae", dataset_id="mnist5k")


@pytest.mark.parametrize("vqvae, expected", [("someone/vqvae-mnist", "someone/vqvae-mnist"), ("local", None)])
def test_prior_base_model_is_its_vqvae_when_that_is_a_hub_id(vqvae, expected, tmp_path):
    from hf_vae import TransformerPriorConfig, TransformerPriorModel

    if vqvae == "local":
        vqvae = str(tmp_path / "my-vqvae")
        (tmp_path / "my-vqvae").mkdir()
    config = TransformerPriorConfig(vocab_size=8, grid_size=2, hidden_size=16, num_layers=1, num_heads=2,
                                    vqvae_name_or_path=vqvae)
    TransformerPriorModel(config).save_pretrained(tmp_path / "prior")
    card = cards.render_card(tmp_path / "prior", "someone/prior")
    assert card.data.base_model == expected
    # A local VQ-VAE path is never in a usage snippet (the hyper-parameter table shows config.json as it is).
    assert not any(str(tmp_path) in block for block in re.findall(r"```python\n(.*?)```", card.text, flags=re.S))
    if expected:
        assert f'AutoModel.from_pretrained("{expected}")' in card.text
