"""Issue #14, loading: mistyped paths and unknown repos fail at once (finding 4), loading is strict
(finding 7), nothing unpickles and a prior's VQ-VAE is type-checked first (finding 6), CLI user errors
are one `error:` line with exit code 2 (finding 8), and an interrupted push leaves nothing partial."""

import json
import pickle
import shutil
import time
import uuid

import pytest
import torch
from huggingface_hub import HfApi
from safetensors.torch import load_file, save_file
from transformers import AutoModel, pipeline

import hf_vae.hub
from hf_vae import TransformerPriorConfig, TransformerPriorModel, VAEConfig, VAEModel, VQVAEConfig, VQVAEModel
from hf_vae.cli import main as cli_main
from hf_vae.data import load_image_dataset
from hf_vae.generation import load_vqvae
from hf_vae.hub import HubPushError, load_model, push_run

from .hub_server import USER

pytestmark = pytest.mark.usefixtures("hub_server")


def tiny_vae(seed: int = 0) -> VAEModel:
    torch.manual_seed(seed)
    return VAEModel(VAEConfig(image_size=8, num_channels=1, hidden_channels=[8], latent_dim=4)).eval()


def tiny_vqvae(seed: int = 0) -> VQVAEModel:
    torch.manual_seed(seed)
    return VQVAEModel(VQVAEConfig(image_size=8, num_channels=1, hidden_channels=[8], codebook_size=16, embedding_dim=4)).eval()


@pytest.fixture
def vae_folder(tmp_path):
    tiny_vae().save_pretrained(tmp_path / "vae")
    return tmp_path / "vae"


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- Finding 4: a mistyped path or an unknown repo id fails at once -------------------------------------


@pytest.mark.parametrize("path", ["runs/nope", "./nope", "../nope", "/no/such/folder", "~/no-such-hf-vae-folder", "a/b/c"])
def test_mistyped_local_path_fails_at_once_with_no_such_folder(path, tmp_path, monkeypatch, hub_server):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # "runs/nope" exists partly: a path, not a repo id
    before = len(hub_server.requests)
    for load in (load_model, VAEModel.from_pretrained):
        start = time.monotonic()
        with pytest.raises(ValueError, match=r"no such folder") as info:
            load(path)
        assert time.monotonic() - start < 2 and repr(path) in str(info.value)
    assert len(hub_server.requests) == before  # never asked the Hub


def test_unknown_repo_id_fails_fast_with_a_clear_error(hub_server):
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"`repo_id_or_path`.*no such repo"):
        load_model(f"{USER}/no-such-model-{uuid.uuid4().hex[:8]}")
    assert time.monotonic() - start < 5


def _unreachable(monkeypatch, *methods: str) -> None:
    """Make these `HfApi` methods fail as they do without a network."""
    def unreachable(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known")

    for method in methods:
        monkeypatch.setattr(HfApi, method, unreachable)


def test_unreachable_hub_fails_fast_instead_of_retrying(monkeypatch):
    _unreachable(monkeypatch, "model_info")
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"cannot be reached and the repo is not in the cache"):
        load_model(f"{USER}/never-downloaded-{uuid.uuid4().hex[:8]}")
    assert time.monotonic() - start < 5


def test_mistyped_dataset_fails_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"no such path"):
        load_image_dataset("./no_such_dataset")
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"`name_or_path` must be one of .*'no_such_dataset'"):
        load_image_dataset("no_such_dataset", split="train")  # a bare name: the Hub says it does not exist
    assert time.monotonic() - start < 10


def test_mistyped_dataset_with_the_hub_unreachable_fails_fast(monkeypatch):
    """Without a network, a dataset that is not in the cache fails at once (no ~20 s of retries), naming it."""
    _unreachable(monkeypatch, "dataset_info")
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"got 'no_such_dataset': the Hub cannot be reached and the dataset is not in the cache"):
        load_image_dataset("no_such_dataset", split="train")
    assert time.monotonic() - start < 5


# -- Finding 7: strict loading ----------------------------------------------------------------------


def test_config_edited_to_add_a_layer_is_an_error_listing_the_weights(vae_folder, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(vae_folder, edited)
    config = json.loads((edited / "config.json").read_text())
    config["hidden_channels"] = [8, 8]
    (edited / "config.json").write_text(json.dumps(config))
    for load in (load_model, AutoModel.from_pretrained, VAEModel.from_pretrained):
        with pytest.raises(ValueError, match=r"missing keys \['decoder\..*strict=False"):
            load(edited)
    assert type(load_model(edited, strict=False, ignore_mismatched_sizes=True)) is VAEModel  # the documented opt-out


def test_mismatched_shapes_are_an_error_listing_them(vae_folder):
    config = json.loads((vae_folder / "config.json").read_text())
    config["latent_dim"] = 6
    (vae_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"mismatched keys \["):
        load_model(vae_folder)


def test_vae_folder_given_to_the_vqvae_class_fails_before_instantiating(vae_folder, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("instantiated a VQ-VAE from a VAE folder")

    monkeypatch.setattr(VQVAEModel, "__init__", never)
    with pytest.raises(ValueError, match=r"must hold a 'vqvae' model for VQVAEModel, got .* model_type 'vae'"):
        VQVAEModel.from_pretrained(vae_folder)


def test_missing_config_json_says_so(vae_folder):
    (vae_folder / "config.json").unlink()
    for load in (load_model, VAEModel.from_pretrained):
        with pytest.raises(ValueError, match=r"config\.json"):
            load(vae_folder)


def test_non_finite_weights_are_an_error_naming_the_tensors(vae_folder):
    weights = load_file(vae_folder / "model.safetensors")
    name = sorted(weights)[0]
    weights[name][...] = float("nan")
    save_file(weights, vae_folder / "model.safetensors", metadata={"format": "pt"})
    for load in (load_model, AutoModel.from_pretrained):
        with pytest.raises(ValueError, match=rf"non-finite values in \['{name}'\]"):
            load(vae_folder)


def test_strict_loading_keeps_good_folders_and_remote_code_loading(vae_folder):
    expected = tiny_vae()
    assert same_weights(load_model(vae_folder), expected)
    assert same_weights(AutoModel.from_pretrained(vae_folder, trust_remote_code=True), expected)
    model, info = VAEModel.from_pretrained(vae_folder, output_loading_info=True)
    assert same_weights(model, expected) and not info["missing_keys"] and not info["unexpected_keys"]


# -- Finding 6: no pickle on any load path; a prior's VQ-VAE is type-checked first -----------------------


class _Planted:
    """Unpickling this creates the marker file (`open(marker, "w")`): proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("with_safetensors", [True, False])
def test_planted_pickle_never_runs_on_any_load_path(with_safetensors, vae_folder, tmp_path, capsys):
    marker = tmp_path / "pwned"
    if not with_safetensors:
        (vae_folder / "model.safetensors").unlink()
    with open(vae_folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"state": _Planted(marker)}, f)
    attempts = {
        "hub.load_model": lambda: load_model(vae_folder),
        "AutoModel": lambda: AutoModel.from_pretrained(vae_folder),
        "VAEModel": lambda: VAEModel.from_pretrained(vae_folder),
        "pipeline": lambda: pipeline("unconditional-image-generation", model=str(vae_folder)),
        "cli": lambda: cli_main(["sample", str(vae_folder), "--num-samples", "1", "--output", str(tmp_path / "s.png")]),
    }
    for name, attempt in attempts.items():
        try:
            attempt()
        except (ValueError, OSError, SystemExit):
            pass  # refusing is fine; executing is not
        assert not marker.exists(), f"{name} unpickled the planted pytorch_model.bin"


def test_prior_referencing_a_non_vqvae_fails_before_instantiating_it(vae_folder, monkeypatch):
    prior = TransformerPriorModel(TransformerPriorConfig(
        vocab_size=16, grid_size=4, token_source="vqvae_codes", n_layer=1, n_head=2, n_embd=16,
        vqvae_name_or_path=str(vae_folder)))

    def never(*args, **kwargs):
        raise AssertionError("instantiated the referenced model")

    monkeypatch.setattr(VAEModel, "__init__", never)
    with pytest.raises(ValueError, match=r"`prior.config.vqvae_name_or_path` must name a VQ-VAE .*model_type 'vae'"):
        load_vqvae(prior)


def test_prior_loads_its_vqvae_strictly(tmp_path):
    tiny_vqvae().save_pretrained(tmp_path / "vq")
    prior = TransformerPriorModel(TransformerPriorConfig(
        vocab_size=16, grid_size=4, token_source="vqvae_codes", n_layer=1, n_head=2, n_embd=16,
        vqvae_name_or_path=str(tmp_path / "vq")))
    assert same_weights(load_vqvae(prior), tiny_vqvae())
    weights = load_file(tmp_path / "vq" / "model.safetensors")
    weights.pop(sorted(weights)[0])
    save_file(weights, tmp_path / "vq" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"1 missing keys"):
        load_vqvae(prior)


# -- Finding 8: CLI user errors are one `error:` line and exit code 2 ------------------------------------


def cli_error(argv, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"hf-vae {argv[0]}: error: "), err
    return last


def test_cli_bad_recipes_end_in_one_error_line(tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("hf_vae.training.train", never)
    (tmp_path / "bad.yaml").write_text("model: {family: vae\n  config: [\n")
    assert "`recipe` must be valid YAML" in cli_error(["train", str(tmp_path / "bad.yaml")], capsys)
    (tmp_path / "list.yaml").write_text("- model\n- data\n")
    assert "`recipe` must be a YAML mapping" in cli_error(["train", str(tmp_path / "list.yaml")], capsys)
    recipe = str(hf_vae.hub.Path(__file__).parents[1] / "hf_vae" / "recipes" / "vae_digits_tiny.yaml")
    assert "`hub_model_id`" in cli_error(["train", recipe, "--hub_model_id", "a/b/c"], capsys)
    assert "`hub.hub_model_id`" in cli_error(["train", recipe, "--set", "hub.hub_model_id=a/b/c"], capsys)


def test_cli_sample_and_evaluate_user_errors_end_in_one_error_line(vae_folder, tmp_path, capsys, monkeypatch):
    tiny_vqvae().save_pretrained(tmp_path / "vq")
    out = str(tmp_path / "s.png")
    assert "`--labels` must be omitted" in cli_error(["sample", str(vae_folder), "--labels", "1,2", "--output", out], capsys)
    assert "'sample' capability" in cli_error(["sample", str(tmp_path / "vq"), "--output", out], capsys)
    assert "no such folder" in cli_error(["sample", str(tmp_path / "nope"), "--output", out], capsys)
    assert "no such folder" in cli_error(["evaluate", str(tmp_path / "nope")], capsys)
    assert "`--decoder-precision` must be fp32 for the 'vqvae' family" in cli_error(
        ["evaluate", str(tmp_path / "vq"), "--decoder-precision", "bf16"], capsys)
    assert "`--labels`" in cli_error(["sample", str(vae_folder), "--labels", "one", "--output", out], capsys)

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before --output was checked")

    monkeypatch.setattr(hf_vae.hub, "load_model", never)
    missing = str(tmp_path / "no_dir" / "s.png")
    assert "`--output`" in cli_error(["sample", str(vae_folder), "--output", missing], capsys)
    assert "`--output`" in cli_error(["evaluate", str(vae_folder), "--output", missing], capsys)


# -- An interrupted push leaves nothing partial on the Hub --------------------------------------------------


def test_push_dropped_mid_commit_leaves_no_partial_files_and_a_retry_succeeds(vae_folder, hub_server):
    repo_id = f"{USER}/interrupted-{uuid.uuid4().hex[:8]}"
    hub_server.fail("commit", after_bytes=200)
    try:
        with pytest.raises(HubPushError):
            push_run(vae_folder, repo_id)
    finally:
        hub_server.clear_faults()
    assert hub_server.dropped[-1][1].startswith(f"/api/models/{repo_id}/commit/")
    assert set(hub_server.files(repo_id)) <= {".gitattributes"}  # the repo exists, empty: no partial upload
    commit = push_run(vae_folder, repo_id)
    assert hub_server.head(repo_id) == commit.oid
    assert {"config.json", "model.safetensors", "README.md"} <= set(hub_server.files(repo_id))
    assert same_weights(load_model(repo_id), tiny_vae())


def test_unreachable_hub_loads_a_cached_repo_without_retrying(vae_folder, monkeypatch):
    repo_id = f"{USER}/cached-{uuid.uuid4().hex[:8]}"
    push_run(vae_folder, repo_id)
    load_model(repo_id)  # fills the cache

    _unreachable(monkeypatch, "model_info", "list_repo_files")
    start = time.monotonic()
    assert same_weights(load_model(repo_id), tiny_vae())
    assert time.monotonic() - start < 5


def test_pipelines_given_a_folder_load_strictly(vae_folder, tmp_path):
    config = json.loads((vae_folder / "config.json").read_text())
    config["hidden_channels"] = [8, 8]
    (vae_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"missing keys"):
        pipeline("unconditional-image-generation", model=str(vae_folder))
    # A prior's `vqvae` given as a string is checked the same way: a VAE folder is no VQ-VAE.
    tiny_vae().save_pretrained(tmp_path / "a_vae")
    prior = TransformerPriorModel(TransformerPriorConfig(
        vocab_size=16, grid_size=4, token_source="vqvae_codes", n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match=r"`vqvae` must name a VQ-VAE .*model_type 'vae'"):
        pipeline("unconditional-image-generation", model=prior, vqvae=str(tmp_path / "a_vae"))
