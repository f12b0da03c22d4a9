"""The real Hub image datasets the recipes name, as replicas on the local Hub (tests/dataset_replicas.py,
tests/hub_server.py): `datasets.load_dataset` sees the real features, configs, splits and files, map-style
and streaming (ranged reads); `hf_vae.data.load_split` turns them into `pixel_values`; and every
`hf_vae/recipes/vae_{mnist,fashion_mnist,cifar10,celeba64}.yaml` recipe trains a few steps on its
replica, map-style and streaming, with a tiny model. No network: the repos live on 127.0.0.1."""

from __future__ import annotations

import io
import json
import math
import urllib.error
import urllib.request

import datasets
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from hf_vae.data import ImageDataset, StreamingImageDataset, TensorDictDataset, load_split
from hf_vae.training import Recipe, train
from hf_vae.training.splits import load_data

from .dataset_replicas import CELEBA_FACES, CIFAR10, FASHION_MNIST, MNIST, REPLICAS, upload_replica
from .model_tester import REPO_ROOT

CONFIGS = REPO_ROOT / "hf_vae" / "recipes"
# recipe file -> the replica it trains on
RECIPES = {"vae_mnist.yaml": MNIST, "vae_fashion_mnist.yaml": FASHION_MNIST, "vae_cifar10.yaml": CIFAR10,
           "vae_celeba64.yaml": CELEBA_FACES}
REPLICA_IDS = list(REPLICAS)
# At full size `data.in_memory: auto` (512 MiB as float32) decodes these on the fly: CIFAR-10's 45,000
# training images are 553 MB, CelebA's 187,599 64x64 faces 9.2 GB (MNIST's 55,000 digits: 172 MB). Their
# tests take that path too, though the replicas would fit.
ON_THE_FLY_AT_FULL_SIZE = ("vae_cifar10.yaml", "vae_celeba64.yaml")


@pytest.fixture(scope="module")
def replicas(hub_server) -> dict[str, str]:
    """Every replica uploaded to the local Hub under its real repo id: {repo id: commit id}."""
    return {repo_id: upload_replica(replica) for repo_id, replica in REPLICAS.items()}


def _expected_files(replica) -> set[str]:
    files = {".gitattributes", *(path for paths in replica.shards.values() for path in paths)}
    return files | ({"README.md"} if replica.config_name else {"dataset_infos.json"})


# --- the replicas are the real layouts -------------------------------------------------------------

@pytest.mark.parametrize("repo_id", REPLICA_IDS)
def test_replica_has_the_real_repo_files_and_parquet_schema(hub_server, replicas, repo_id):
    replica = REPLICAS[repo_id]
    files = hub_server.files(repo_id, repo_type="dataset")
    assert set(files) == _expected_files(replica)
    first_shard = next(iter(replica.shards.values()))[0]
    table = pq.read_table(io.BytesIO(files[first_shard]))
    # As datasets pushes: the Image column is a {bytes, path} struct, the features ride in the metadata.
    assert table.schema.field(replica.image_column).type.names == ["bytes", "path"]
    stored = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert datasets.Features.from_dict(stored) == replica.features
    image = Image.open(io.BytesIO(table.column(replica.image_column)[0]["bytes"].as_py()))
    assert (image.format, image.mode, image.size) == (replica.image_format, replica.image_mode,
                                                       replica.image_size[::-1])


@pytest.mark.parametrize("repo_id", REPLICA_IDS)
def test_load_dataset_gives_the_real_features_and_splits(replicas, repo_id):
    replica = REPLICAS[repo_id]
    dataset = datasets.load_dataset(repo_id)
    assert set(dataset) == set(replica.rows)
    for split, rows in replica.rows.items():
        assert dataset[split].features == replica.features
        assert dataset[split].num_rows == rows
    if replica.config_name:  # the README's only config, also by name
        named = datasets.load_dataset(repo_id, replica.config_name, split="train")
        assert named.config_name == replica.config_name and named.num_rows == replica.rows["train"]
    image = dataset["train"][0][replica.image_column]
    assert (image.mode, image.size) == (replica.image_mode, replica.image_size[::-1])
    if replica.label_names:
        assert dataset["train"].features["label"].names == replica.label_names


@pytest.mark.parametrize("repo_id", REPLICA_IDS)
def test_streaming_reads_every_shard_by_ranges(hub_server, replicas, repo_id):
    replica = REPLICAS[repo_id]
    before = len(hub_server.ranged)
    stream = datasets.load_dataset(repo_id, split="train", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    assert stream.features == replica.features
    rows = list(stream)
    assert len(rows) == replica.rows["train"]
    assert rows[0][replica.image_column].size == replica.image_size[::-1]
    # HfFileSystem read each train shard with Range requests (footer, then row groups), never whole.
    read = {path.rsplit(f"/{replicas[repo_id]}/", 1)[-1] for path, _ in hub_server.ranged[before:]}
    assert read == set(replica.shards["train"])


def test_ranged_downloads(hub_server, replicas):
    data = hub_server.files(MNIST.repo_id, repo_type="dataset")["README.md"]
    url = f"{hub_server.url}/datasets/{MNIST.repo_id}/resolve/main/README.md"

    def get(spec):
        request = urllib.request.Request(url, headers={"Range": spec})
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, answer.headers.get("Content-Range"), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Range"), b""

    size = len(data)
    assert get("bytes=4-9") == (206, f"bytes 4-9/{size}", data[4:10])
    assert get("bytes=10-") == (206, f"bytes 10-{size - 1}/{size}", data[10:])
    assert get("bytes=-5") == (206, f"bytes {size - 5}-{size - 1}/{size}", data[-5:])
    assert get(f"bytes=0-{size + 100}") == (206, f"bytes 0-{size - 1}/{size}", data)  # clipped to the end
    assert get(f"bytes={size}-") == (416, f"bytes */{size}", b"")


# --- hf_vae.data.load_split -----------------------------------------------------------------------

@pytest.mark.parametrize("streaming", [False, True], ids=["map", "streaming"])
@pytest.mark.parametrize("repo_id", REPLICA_IDS)
def test_load_split_gives_pixel_values(replicas, repo_id, streaming):
    replica = REPLICAS[repo_id]
    size = 64 if replica is CELEBA_FACES else None  # the faces are 178x218: resize to a square
    channels = 1 if replica.image_mode == "L" else 3
    view = load_split(repo_id, "train", streaming=streaming, image_size=size)
    assert isinstance(view, torch.utils.data.IterableDataset) == streaming
    assert view.num_channels == channels
    assert view.label_names == replica.label_names
    assert view.num_classes == (len(replica.label_names) if replica.label_names else None)
    example = next(iter(view))
    height, width = (size, size) if size else replica.image_size
    assert example["pixel_values"].shape == (channels, height, width)
    assert example["pixel_values"].dtype == torch.float32
    assert 0 <= example["pixel_values"].min() <= example["pixel_values"].max() <= 1
    assert ("labels" in example) == bool(replica.label_names)


def test_streamed_split_resumes_mid_shard_from_its_state(replicas):
    """A state taken 50 faces in (10 into the second of three shards, read by ranges) resumes at face 51:
    unshuffled, the resumed stream is exactly the rest of an uninterrupted one."""
    def stream():
        return load_split(CELEBA_FACES.repo_id, "train", streaming=True, image_size=16, shuffle_buffer_size=0)

    whole = [example["pixel_values"] for example in stream()]
    view = stream()
    iterator = iter(view)
    for _ in range(50):
        next(iterator)
    state = view.state_dict()

    resumed = stream()
    resumed.load_state_dict(state)
    rest = [example["pixel_values"] for example in resumed]
    assert len(whole) == CELEBA_FACES.rows["train"] and len(rest) == len(whole) - 50
    assert all(torch.equal(a, b) for a, b in zip(rest, whole[50:]))


# --- the recipes, end to end ----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_as_shipped_fits_its_dataset(name):
    replica = RECIPES[name]
    recipe = Recipe.from_yaml(CONFIGS / name)  # every key known, every value checked, the config built
    model, data = recipe.model.config, recipe.data
    assert (data.dataset, data.config_name) == (replica.repo_id, replica.config_name)
    assert model["num_channels"] == (1 if replica.image_mode == "L" else 3)
    assert model["image_size"] == (data.image_size or replica.image_size[0])
    assert data.validation_size > 0 and data.streaming is False
    if replica is CELEBA_FACES:  # train-only, 178x218: carve a test split, crop the face, 64x64
        assert "test" not in replica.rows and data.test_size
        assert (data.center_crop, data.image_size) == (148, 64)


def _tiny_recipe(name: str, output_dir, revision: str | None, streaming: bool) -> Recipe:
    """The recipe file as shipped (dataset, config, splits, columns, image size and crop, likelihood), with a
    tiny model, a few steps, `revision` pinned (None: as written), and held-out splits that fit the replica."""
    overrides = [
        "model.config.hidden_channels=[8, 16]", "model.config.num_res_blocks=0", "model.config.latent_dim=4",
        "model.config.kl_warmup_steps=0", f"data.streaming={str(streaming).lower()}",
        "data.num_workers=0", "data.shuffle_buffer_size=16", "data.validation_size=16",
        "training.max_steps=3", "training.batch_size=8", "training.eval_every=3", "training.save_every=3",
        "training.log_every=1", "training.warmup_steps=0", "training.mixed_precision='no'", "training.progress=false",
        "training.early_stopping_patience=null", f"training.output_dir={output_dir}", "training.trackers=[jsonl]",
        "evaluation.num_importance_samples=0", "evaluation.max_examples=16", "evaluation.batch_size=8",
        "evaluation.num_samples=4",
    ]
    if revision is not None:
        overrides.append(f"data.revision='{revision}'")  # quoted: a commit id can read as a YAML number
    if RECIPES[name] is CELEBA_FACES:  # 120 faces: a test split of 16, not the recipe's 10,000
        overrides.append("data.test_size=16")
    if name in ON_THE_FLY_AT_FULL_SIZE:
        overrides.append("data.in_memory=false")
    return Recipe.from_yaml(CONFIGS / name, overrides)


@pytest.mark.filterwarnings("ignore:posterior collapse")  # 3 steps of a 4-latent model
@pytest.mark.parametrize("streaming", [False, True], ids=["map", "streaming"])
@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_trains_on_its_replica(replicas, tmp_path, name, streaming):
    replica = RECIPES[name]
    revision = replicas[replica.repo_id]
    recipe = _tiny_recipe(name, tmp_path / "run", revision, streaming)
    assert recipe.data.dataset == replica.repo_id  # the recipe names the real repo ...
    assert recipe.data.config_name == replica.config_name  # ... and its config

    # The data the trainer gets: every split (CelebA's test and validation carved from its only split)
    # of the right kind, and the ClassLabel names carried through.
    splits = load_data(recipe)
    assert set(splits) == {"train", "validation", "test"}
    kind = ImageDataset if name in ON_THE_FLY_AT_FULL_SIZE else TensorDictDataset
    for view in splits.values():
        assert isinstance(view, StreamingImageDataset if streaming else kind)
        assert view.label_names == replica.label_names
    if not streaming:
        assert len(splits["validation"]) == 16
        assert len(splits["test"]) == (16 if replica is CELEBA_FACES else replica.rows["test"])
        assert len(splits["train"]) == replica.rows["train"] - 16 - (16 if replica is CELEBA_FACES else 0)

    train(recipe)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 3
    numbers = [m["value"] for m in metrics["test"].values() if isinstance(m["value"], float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    record = metrics["data"]  # what the run read: dataset, config, the revision asked and its commit
    assert (record["dataset"], record["config_name"]) == (replica.repo_id, replica.config_name)
    assert record["revision"] == record["commit"] == revision
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["num_channels"] == (1 if replica.image_mode == "L" else 3)


@pytest.mark.filterwarnings("ignore:posterior collapse")
def test_unpinned_run_records_the_commit_it_trained_on(replicas, tmp_path):
    recipe = _tiny_recipe("vae_mnist.yaml", tmp_path / "run", None, streaming=False)
    train(recipe)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]
    assert (record["dataset"], record["config_name"], record["revision"]) == (MNIST.repo_id, "mnist", None)
    assert record["commit"] == replicas[MNIST.repo_id]  # "main" as it was when the run read it


# --- the VQ-VAE + transformer prior pairs on colour, VQ-VAE first, then the prior on its codes ----------

# VQ-VAE recipe -> (its prior's recipe, the replica both train on)
VQ_PAIRS = {"vqvae_cifar10.yaml": ("transformer_prior_vqvae_cifar10.yaml", CIFAR10),
            "vqvae_celeba64.yaml": ("transformer_prior_vqvae_celeba64.yaml", CELEBA_FACES)}


def _tiny_pair_recipe(name: str, output_dir, revision: str, model_overrides: list[str]) -> Recipe:
    """A shipped VQ-VAE or prior recipe with a tiny model, 3 steps and held-out splits that fit the replica."""
    overrides = model_overrides + [
        "data.num_workers=0", "data.validation_size=16", f"data.revision='{revision}'", "data.in_memory=false",
        "training.max_steps=3", "training.batch_size=8", "training.eval_every=3", "training.save_every=3",
        "training.log_every=1", "training.warmup_steps=0", "training.mixed_precision='no'", "training.progress=false",
        "training.early_stopping_patience=null", f"training.output_dir={output_dir}", "training.trackers=[jsonl]",
        "evaluation.max_examples=16", "evaluation.batch_size=8", "evaluation.num_samples=4",
    ]
    if name.endswith("celeba64.yaml"):
        overrides.append("data.test_size=16")
    return Recipe.from_yaml(CONFIGS / name, overrides)


@pytest.mark.parametrize("vq_name", list(VQ_PAIRS))
def test_vqvae_and_prior_recipes_train_on_their_replica(replicas, tmp_path, vq_name):
    import torch
    from transformers import AutoModel

    from hf_vae.generation import generate_images

    prior_name, replica = VQ_PAIRS[vq_name]
    revision = replicas[replica.repo_id]
    shipped_vq, shipped_prior = Recipe.from_yaml(CONFIGS / vq_name), Recipe.from_yaml(CONFIGS / prior_name)
    # the prior reads the data exactly as its VQ-VAE did (same codes), and its vocabulary and grid are the VQ-VAE's
    assert shipped_prior.data == shipped_vq.data and shipped_vq.data.dataset == replica.repo_id
    vq_config, prior_config = shipped_vq.model.config, shipped_prior.model.config
    assert vq_config["likelihood"] == "discretized_logistic_mixture" and vq_config["num_channels"] == 3
    size = shipped_vq.data.image_size or replica.image_size[0]
    assert prior_config["vocab_size"] == vq_config["codebook_size"]
    assert prior_config["grid_size"] == size // 2 ** len(vq_config["hidden_channels"])
    assert prior_config["vqvae_name_or_path"] == shipped_vq.training.output_dir
    assert prior_config.get("num_classes") == (len(replica.label_names) if replica.label_names else None)

    vq_dir, prior_dir = tmp_path / "vqvae", tmp_path / "prior"
    train(_tiny_pair_recipe(vq_name, vq_dir, revision, [
        "model.config.hidden_channels=[8, 16]", "model.config.num_res_blocks=0", "model.config.codebook_size=16",
        "model.config.embedding_dim=4", "model.config.num_mixtures=2"]))
    vq_metrics = json.loads((vq_dir / "metrics.json").read_text())
    assert vq_metrics["steps"] == 3 and math.isfinite(vq_metrics["test"]["psnr"]["value"])
    train(_tiny_pair_recipe(prior_name, prior_dir, revision, [
        f"model.config.vqvae_name_or_path={vq_dir}", "model.config.vocab_size=16", "model.config.num_layers=1",
        "model.config.num_heads=2", "model.config.hidden_size=16"]))
    prior_metrics = json.loads((prior_dir / "metrics.json").read_text())
    assert prior_metrics["steps"] == 3 and math.isfinite(prior_metrics["test"]["bits_per_token"]["value"])
    assert prior_metrics["data"]["commit"] == revision

    prior = AutoModel.from_pretrained(prior_dir).eval()
    labels = torch.tensor([0, 1]) if prior.is_conditional else None
    samples = generate_images(prior, 2, labels=labels, generator=torch.Generator().manual_seed(0), progress=False)
    assert samples.shape == (2, 3, size, size)
