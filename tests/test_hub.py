"""The Hub round trip against the local Hub server (tests/hub_server.py, HF_ENDPOINT set in conftest.py):
push -> AutoModel.from_pretrained(repo_id) for every registered family, remote code by repo id without
hf_vae, cards that parse back, dataset pushes, revisions, atomic commits under dropped connections,
and the loads that must be refused."""

from __future__ import annotations

import importlib
import json
import re
import uuid

import datasets
import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from transformers import AutoModel

from hf_vae import cards
from hf_vae import data as hd
from hf_vae.cli import main as cli_main
from hf_vae.evaluation import EVALUATORS, Metric, evaluate
from hf_vae.hub import HubPushError, hf_vae_families, load_model, push_embedded_dataset, push_run, run_files
from hf_vae.training import Recipe, train

from .hub_server import USER
from .model_tester import REPO_ROOT, ModelTesterMixin, run_without_hf_vae

pytestmark = pytest.mark.usefixtures("hub_server")

FAMILIES = hf_vae_families()
DIGITS_ID = f"{USER}/digits"  # where push_embedded_dataset would put `digits`
TINY_RECIPE = REPO_ROOT / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"


def new_repo(name: str) -> str:
    return f"{USER}/{name}-{uuid.uuid4().hex[:8]}"


def family_tester(model_type: str) -> ModelTesterMixin:
    """The tiny-config tester class of `tests/test_<model_type>.py` (the family's own test module)."""
    module = importlib.import_module(f"{__package__}.test_{model_type}")
    for obj in vars(module).values():
        if (isinstance(obj, type) and issubclass(obj, ModelTesterMixin) and obj.config_class is not None
                and obj.config_class.model_type == model_type):
            return obj()
    raise LookupError(f"tests/test_{model_type}.py has no ModelTesterMixin class for {model_type!r}")


def outputs(model, inputs, seed: int = 1) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs, generator=torch.Generator().manual_seed(seed))
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def assert_same_outputs(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"output {key!r} differs"


def measured_metrics(model, tester, inputs) -> dict[str, dict]:
    """Real measurements for the card: `evaluate()` where the family has an evaluator, else the loss."""
    if type(model).evaluator in EVALUATORS:
        batch = len(next(iter(inputs.values())))
        examples = [{k: v[i] for k, v in inputs.items()} for i in range(batch)]
        metrics = evaluate(model, examples, num_importance_samples=2, progress=False)
    else:
        loss = float(outputs(model, inputs)["loss"])
        metrics = {"loss": Metric(loss, "nats", "1 sample, tester batch", "Training objective on the tester batch")}
    return {name: m.to_dict() for name, m in metrics.items()}


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Every registered family: a tiny model saved with measured metrics.json, pushed to its own repo."""
    root = tmp_path_factory.mktemp("pushed")
    out = {}
    for family in FAMILIES:
        tester = family_tester(family)
        model = tester.get_model().eval()
        inputs = tester.get_inputs()
        folder = root / family
        model.save_pretrained(folder)
        summary = {
            "recipe": {"model": {"family": family, "config": dict(tester.config_kwargs)},
                       "data": {"dataset": "digits", "test_split": "test", "eval_binarize": "static"}},
            "steps": 0,
            "test": measured_metrics(model, tester, inputs),
        }
        (folder / "metrics.json").write_text(json.dumps(summary))
        torch.save(inputs, root / f"{family}_inputs.pt")
        repo_id = new_repo(family)
        commit = push_run(folder, repo_id, dataset_id=DIGITS_ID)  # `digits` is embedded: the card names a Hub copy
        out[family] = {"repo_id": repo_id, "commit": commit, "folder": folder, "model": model, "inputs": inputs,
                       "inputs_path": root / f"{family}_inputs.pt", "expected": outputs(model, inputs),
                       "metrics": summary["test"]}
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_push_then_automodel_by_repo_id_gives_identical_outputs(pushed, family, hub_server):
    entry = pushed[family]
    files = hub_server.files(entry["repo_id"])
    assert {"config.json", "model.safetensors", "README.md", "metrics.json"} <= files.keys()
    assert any(name.startswith("modeling_") for name in files), "remote code was not uploaded"
    assert not [f for f in files if f.endswith((".bin", ".pt"))]
    reloaded = AutoModel.from_pretrained(entry["repo_id"]).eval()
    assert type(reloaded) is type(entry["model"])
    assert_same_outputs(outputs(reloaded, entry["inputs"]), entry["expected"])
    for (name, p), (_, q) in zip(entry["model"].state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(p, q), name


@pytest.fixture(scope="module")
def remote_code_losses(pushed, tmp_path_factory):
    """Load every pushed repo by id with trust_remote_code in ONE subprocess where hf_vae cannot be imported."""
    tmp = tmp_path_factory.mktemp("remote")
    jobs = {family: (e["repo_id"], str(e["inputs_path"])) for family, e in pushed.items()}
    return run_without_hf_vae(
        f"""
        import torch
        from transformers import AutoModel

        results = {{}}
        for family, (repo_id, inputs_path) in {jobs!r}.items():
            model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            inputs = torch.load(inputs_path, weights_only=True)
            with torch.no_grad():
                loss = model(**inputs, generator=torch.Generator().manual_seed(1)).loss
            results[family] = loss.item()
        print(json.dumps(results))
        """,
        tmp,
        timeout=600,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_remote_code_load_by_repo_id_without_hf_vae(pushed, remote_code_losses, family):
    assert remote_code_losses[family] == pushed[family]["expected"]["loss"].item()


@pytest.mark.parametrize("family", FAMILIES)
def test_card_parses_back_with_the_measured_model_index(pushed, family):
    entry = pushed[family]
    card = ModelCard.load(entry["repo_id"])
    assert card.data.library_name == "hf_vae"
    assert card.data.pipeline_tag
    assert "hf_vae" in card.data.tags and family in card.data.tags
    assert card.data.datasets == [DIGITS_ID]
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results, "no model-index"
    for name, result in results.items():
        metric = entry["metrics"][name]
        assert result.metric_value == metric["value"]
        assert metric["unit"] in result.metric_name and metric["estimator"] in result.metric_name
        assert result.dataset_type == DIGITS_ID and result.dataset_split == "test"


@pytest.mark.parametrize("family", FAMILIES)
def test_card_usage_snippets_run_against_the_repo(pushed, family, tmp_path, monkeypatch):
    card = ModelCard.load(pushed[family]["repo_id"])
    blocks = python_blocks(card.text)
    assert blocks and pushed[family]["repo_id"] in blocks[0]
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, f"<{family} card>", "exec"), namespace)  # noqa: S102 - the snippet is the test subject
        assert type(namespace["model"]).__name__ == type(pushed[family]["model"]).__name__


@pytest.fixture(scope="module")
def trained_and_pushed(tmp_path_factory):
    """A real (short) training run whose recipe asks the trainer to push it."""
    run_dir = tmp_path_factory.mktemp("train") / "vae-digits"
    repo_id = new_repo("vae-digits")
    recipe = Recipe.from_yaml(TINY_RECIPE, [
        f"training.output_dir={run_dir}", "training.max_steps=6", "training.eval_every=6", "training.save_every=6",
        "training.log_every=3", "training.progress=false", "evaluation.num_importance_samples=3",
        "hub.push_to_hub=true", f"hub.hub_model_id={repo_id}",
    ])
    train(recipe)
    return run_dir, repo_id


def test_trainer_pushes_exactly_the_run_files_in_one_commit(trained_and_pushed, hub_server):
    run_dir, repo_id = trained_and_pushed
    assert (run_dir / "checkpoints").is_dir() and (run_dir / "logs").is_dir() and (run_dir / "best_model").is_dir()
    files = hub_server.files(repo_id)
    expected = {p.name for p in run_files(run_dir)} | {"README.md", ".gitattributes"}
    assert set(files) == expected
    assert {"samples.png", "reconstructions.png", "training_curves.png", "metrics.json"} <= set(files)
    assert len(hub_server.commits(repo_id)) == 2  # the repo's initial commit + one push
    assert files["model.safetensors"] == (run_dir / "model.safetensors").read_bytes()
    card = ModelCard.load(repo_id)
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.text):
        assert image in files, f"the card links {image}, which was not uploaded"
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    # The recipe reads the embedded `digits`, not a Hub dataset: no `datasets` or model-index, the table only.
    assert card.data.datasets is None and card.data.eval_results is None
    nll = metrics["nll"]
    assert f"| {nll['description']} | {cards._format_number(nll['value'])} | nats | IWAE, k=3 |" in card.text
    assert "hf-vae train recipe.yaml" in card.text and f"hub_model_id: {repo_id}" in card.text


def test_trained_card_snippet_runs_and_reproduces_samples(trained_and_pushed, tmp_path, monkeypatch):
    run_dir, repo_id = trained_and_pushed
    block = python_blocks(ModelCard.load(repo_id).text)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "<card>", "exec"), namespace)  # noqa: S102
    local = AutoModel.from_pretrained(run_dir).eval()
    assert torch.equal(namespace["images"], local.sample(16, generator=torch.Generator().manual_seed(0)))


def test_push_twice_then_load_the_first_commit_by_revision(tmp_path, hub_server):
    tester = family_tester("vae")
    first, second = tester.get_model(seed=0).eval(), tester.get_model(seed=1).eval()
    first.save_pretrained(tmp_path / "first")
    second.save_pretrained(tmp_path / "second")
    repo_id = new_repo("revisions")
    one = push_run(tmp_path / "first", repo_id)
    two = push_run(tmp_path / "second", repo_id, commit_message="second weights")
    assert one.oid != two.oid and hub_server.commits(repo_id)[:2] == [two.oid, one.oid]
    inputs = tester.get_inputs()
    assert_same_outputs(outputs(load_model(repo_id, revision=one.oid), inputs), outputs(first, inputs))
    assert_same_outputs(outputs(AutoModel.from_pretrained(repo_id, revision=one.oid), inputs), outputs(first, inputs))
    assert_same_outputs(outputs(AutoModel.from_pretrained(repo_id), inputs), outputs(second, inputs))
    # A branch push leaves main alone.
    dev = push_run(tmp_path / "first", repo_id, revision="dev")
    assert hub_server.head(repo_id, "dev") == dev.oid and hub_server.head(repo_id) == two.oid
    assert_same_outputs(outputs(load_model(repo_id, revision="dev"), inputs), outputs(first, inputs))


@pytest.mark.parametrize("bad", ["", "a/b/c", "has space/model", "-user/model", "user/" + "x" * 100, "user/..", 42])
def test_malformed_repo_id_raises_before_any_request(bad, tmp_path, hub_server):
    family_tester("vae").get_model().save_pretrained(tmp_path)
    before = len(hub_server.requests)
    with pytest.raises(ValueError, match="`repo_id`"):
        push_run(tmp_path, bad)
    with pytest.raises(ValueError, match="`repo_id`"):
        push_embedded_dataset("digits", bad)
    if bad:
        with pytest.raises(ValueError, match="`repo_id_or_path`"):
            load_model(bad)
    with pytest.raises(ValueError, match="`revision` must be a branch"):
        push_run(tmp_path, "user/model", revision="a" * 40)
    assert len(hub_server.requests) == before, "a request was made for a malformed repo id"


def test_connection_dropped_mid_commit_leaves_the_head_unchanged(tmp_path, hub_server):
    tester = family_tester("vae")
    tester.get_model(seed=0).save_pretrained(tmp_path / "first")
    tester.get_model(seed=1).save_pretrained(tmp_path / "second")
    repo_id = new_repo("atomic")
    push_run(tmp_path / "first", repo_id)
    head, files = hub_server.head(repo_id), hub_server.files(repo_id)
    hub_server.fail("commit", after_bytes=200)
    try:
        with pytest.raises(HubPushError, match=repo_id) as info:
            push_run(tmp_path / "second", repo_id)
    finally:
        hub_server.clear_faults()
    assert "keeps its previous commit" in str(info.value)
    assert hub_server.dropped and hub_server.dropped[-1][1].startswith(f"/api/models/{repo_id}/commit/")
    assert hub_server.head(repo_id) == head and hub_server.files(repo_id) == files
    inputs = tester.get_inputs()
    assert_same_outputs(outputs(AutoModel.from_pretrained(repo_id), inputs), outputs(tester.get_model(seed=0).eval(), inputs))
    # The retry lands everything at once.
    retry = push_run(tmp_path / "second", repo_id)
    assert hub_server.head(repo_id) == retry.oid
    assert hub_server.files(repo_id)["model.safetensors"] == (tmp_path / "second" / "model.safetensors").read_bytes()


def test_dropped_lfs_upload_is_retried_and_the_object_is_intact(tmp_path, hub_server):
    family_tester("vae").get_model(seed=3).save_pretrained(tmp_path)
    repo_id = new_repo("lfs-drop")
    hub_server.fail("lfs-upload", after_bytes=1000, times=1)
    try:
        push_run(tmp_path, repo_id)
    finally:
        hub_server.clear_faults()
    assert any(path.startswith("/lfs-objects/") for _, path in hub_server.dropped)
    assert hub_server.files(repo_id)["model.safetensors"] == (tmp_path / "model.safetensors").read_bytes()


def test_dataset_push_then_load_dataset_gives_the_same_rows(hub_server, capsys):
    repo_id = new_repo("digits")
    cli_main(["push-dataset", "digits", repo_id])
    assert "pushed dataset digits" in capsys.readouterr().out
    assert {"README.md", "data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"} <= set(
        hub_server.files(repo_id, repo_type="dataset"))
    remote = datasets.load_dataset(repo_id)
    local = hd.load_image_dataset("digits")
    assert set(remote) == set(local) == {"train", "test"}
    for split in local:
        assert remote[split].features == local[split].features
        assert remote[split]["label"] == local[split]["label"]
        raw = datasets.Image(decode=False)
        assert remote[split].cast_column("image", raw)["image"] == local[split].cast_column("image", raw)["image"]


def test_non_hf_vae_model_type_gives_a_clear_error(tmp_path):
    from transformers import BertConfig

    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    repo_id = new_repo("bert")
    HfApi().create_repo(repo_id)
    HfApi().upload_folder(repo_id=repo_id, folder_path=tmp_path)
    for source in (repo_id, tmp_path):
        with pytest.raises(ValueError, match=r"'bert'.*not an hf_vae family"):
            load_model(source)
    with pytest.raises(ValueError, match="'bert'"):
        push_run(tmp_path, new_repo("bert"))


def test_pickle_only_repo_is_refused_without_opt_in(tmp_path):
    tester = family_tester("vae")
    model = tester.get_model(seed=4).eval()
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    repo_id = new_repo("pickle")
    HfApi().create_repo(repo_id)
    HfApi().upload_folder(repo_id=repo_id, folder_path=tmp_path)
    for source in (repo_id, tmp_path):
        with pytest.raises(ValueError, match=r"only pickle weights \['pytorch_model.bin'\].*allow_pickle=True"):
            load_model(source)
        with pytest.raises(ValueError, match="allow_pickle=True"):
            load_model(source, use_safetensors=False)
        inputs = tester.get_inputs()
        assert_same_outputs(outputs(load_model(source, allow_pickle=True), inputs), outputs(model, inputs))
    # transformers' own opt-out, for code that calls AutoModel directly.
    with pytest.raises(OSError, match="safetensors"):
        AutoModel.from_pretrained(repo_id, use_safetensors=True)
    with pytest.raises(ValueError, match="safetensors"):
        push_run(tmp_path, new_repo("pickle"))


def test_cli_push_prints_the_commit(tmp_path, capsys, hub_server):
    family_tester("vae").get_model().save_pretrained(tmp_path)
    repo_id = new_repo("cli")
    cli_main(["push", str(tmp_path), repo_id, "--commit-message", "from the CLI"])
    assert hub_server.head(repo_id) in capsys.readouterr().out
    assert HfApi().list_repo_commits(repo_id)[0].title == "from the CLI"
    with pytest.raises(SystemExit) as info:
        cli_main(["push", str(tmp_path), "not a/repo id"])
    assert info.value.code == 2 and "`repo_id`" in capsys.readouterr().err


def test_prior_repo_brings_its_vqvae_from_the_recorded_repo_and_revision(tmp_path, hub_server):
    from hf_vae import TransformerPriorConfig, TransformerPriorModel, VQVAEConfig, VQVAEModel
    from hf_vae.generation import generate_images

    vq_config = VQVAEConfig(image_size=8, num_channels=1, hidden_channels=[8], codebook_size=16, embedding_dim=4)
    torch.manual_seed(0)
    first = VQVAEModel(vq_config).eval()
    torch.manual_seed(1)
    second = VQVAEModel(vq_config).eval()
    first.save_pretrained(tmp_path / "vq1")
    second.save_pretrained(tmp_path / "vq2")
    vq_repo = new_repo("vqvae")
    one = push_run(tmp_path / "vq1", vq_repo)
    push_run(tmp_path / "vq2", vq_repo)  # the head moves on; the prior must keep the recorded revision

    torch.manual_seed(0)
    prior = TransformerPriorModel(TransformerPriorConfig(
        vocab_size=16, grid_size=4, token_source="vqvae_codes", n_layer=1, n_head=2, n_embd=16,
        vqvae_name_or_path=vq_repo, vqvae_revision=one.oid)).eval()
    prior.save_pretrained(tmp_path / "prior")
    prior_repo = new_repo("prior")
    push_run(tmp_path / "prior", prior_repo)

    loaded = AutoModel.from_pretrained(prior_repo)
    images = generate_images(loaded, 2, generator=torch.Generator().manual_seed(0), progress=False)
    tokens = prior.sample(2, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(images, first.decode_from_indices(tokens))
    assert not torch.equal(images, second.decode_from_indices(tokens))
