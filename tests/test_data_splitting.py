"""Splits carved from train (map-style and streaming), any split names, revisions recorded in metrics.json and the
card, `datasets` objects wherever a name is accepted, and the bad-data errors that need no decoded image.

Every dataset here is a tiny in-memory `datasets.Dataset.from_dict` with `Image` and `ClassLabel` features; the
only network is the in-suite Hub server (tests/hub_server.py)."""

from __future__ import annotations

import json
import uuid
import warnings
from collections import Counter
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from PIL import Image

from hf_vae import VAEConfig, VAEModel, cards
from hf_vae.data.loading import check_label_range, detect_columns, load_image_dataset, resolve_dataset_revision
from hf_vae.data.splitting import carve_splits, data_record
from hf_vae.evaluation import Metric, evaluate
from hf_vae.training.artifacts import write_metrics
from hf_vae.training.checkpoints import TrainState

from .hub_server import USER

NUM_ROWS, NUM_CLASSES = 40, 4
FEATURES = datasets.Features({
    "img": datasets.Image(),
    "fine_label": datasets.ClassLabel(names=["cat", "dog", "owl", "emu"]),
    "id": datasets.Value("int64"),  # which row an example was, whatever split it ends up in
})


def make_dataset(num_rows: int = NUM_ROWS, labels=None, features=FEATURES) -> datasets.Dataset:
    """CIFAR-100-style columns (`img`, `fine_label`): 8x8 grey images whose pixels all equal the row id."""
    rng = np.random.default_rng(0)
    images = [Image.fromarray(np.full((8, 8), i, np.uint8) | (rng.random((8, 8)) > 0.5).astype(np.uint8)) for i in range(num_rows)]
    labels = [i % NUM_CLASSES for i in range(num_rows)] if labels is None else labels
    return datasets.Dataset.from_dict({"img": images, "fine_label": labels, "id": list(range(num_rows))}, features=features)


@pytest.fixture(scope="module")
def train_only():
    return datasets.DatasetDict(train=make_dataset())


def ids(part) -> list[int]:
    return [row["id"] for row in part]


# --------------------------------------------------------------------------------------------------
# Map-style carving
# --------------------------------------------------------------------------------------------------

def test_carving_is_stratified_disjoint_complete_and_seeded(train_only):
    parts = carve_splits(train_only, test_size=8, validation_size=0.1, seed=3)
    assert list(parts) == ["train", "test", "validation"]
    assert (parts["train"].num_rows, parts["test"].num_rows, parts["validation"].num_rows) == (28, 8, 4)
    train, test, validation = (set(ids(parts[k])) for k in ("train", "test", "validation"))
    assert not (train & test or train & validation or test & validation)
    assert train | test | validation == set(range(NUM_ROWS))
    # Stratified by the ClassLabel: every class keeps its share on both sides.
    assert Counter(parts["test"]["fine_label"]) == {c: 2 for c in range(NUM_CLASSES)}
    assert Counter(parts["validation"]["fine_label"]) == {c: 1 for c in range(NUM_CLASSES)}
    again = carve_splits(train_only, test_size=8, validation_size=0.1, seed=3)
    assert all(ids(again[k]) == ids(parts[k]) for k in parts)
    other = carve_splits(train_only, test_size=8, validation_size=0.1, seed=4)
    assert set(ids(other["test"])) != test
    # The rows datasets' own train_test_split picks, in row order, with their positions in the train split.
    direct = train_only["train"].train_test_split(test_size=8, seed=3, stratify_by_column="fine_label")
    assert ids(parts["test"]) == sorted(ids(direct["test"]))
    same, rows = carve_splits(train_only, test_size=8, validation_size=0.1, seed=3, return_row_ids=True)
    assert all(ids(same[k]) == ids(parts[k]) == rows[k].tolist() for k in parts)  # ids are the rows here
    assert carve_splits(datasets.DatasetDict(train=train_only["train"], test=train_only["train"]),
                        return_row_ids=True)[1] == {"train": None, "test": None}


def test_a_fraction_is_of_the_train_split_and_an_int_label_column_is_not_stratified():
    plain = datasets.Features({**FEATURES, "fine_label": datasets.Value("int64")})
    parts = carve_splits({"train": make_dataset(features=plain)}, test_size=0.25, label_column="fine_label")
    assert parts["test"].num_rows == 10 and "validation" not in parts
    assert carve_splits({"train": make_dataset(10, features=plain)}, test_size=0.7)["test"].num_rows == 7  # not 8: float noise
    # 3 examples of 4 classes cannot be stratified: an unstratified split takes them anyway.
    assert carve_splits({"train": make_dataset(features=plain)}, test_size=3)["test"].num_rows == 3
    with pytest.raises(ValueError, match=r"`data.test_size` must leave examples of every class of 'fine_label'"):
        carve_splits({"train": make_dataset()}, test_size=3)


def test_existing_splits_of_any_name_are_used_as_they_are():
    whole = make_dataset()
    dataset = datasets.DatasetDict(fit=whole.select(range(30)), holdout=whole.select(range(30, 36)),
                                   dev=whole.select(range(36, 40)))
    parts = carve_splits(dataset, train_split="fit", test_split="holdout", validation_split="dev")
    assert [ids(parts[k]) for k in ("train", "test", "validation")] == [
        list(range(30)), list(range(30, 36)), list(range(36, 40))]


def test_a_missing_test_split_names_the_splits_and_suggests_test_size(train_only):
    with pytest.raises(ValueError, match=r"`data.test_split` must be one of the dataset's splits \['train'\], "
                                         r"got 'test' \(or set `data.test_size`"):
        carve_splits(train_only)
    with pytest.raises(ValueError, match=r"`data.validation_split` must be one of the dataset's splits"):
        carve_splits(train_only, test_size=4, validation_split="validation")
    with pytest.raises(ValueError, match=r"`data.train_split` must be one of the dataset's splits \['train'\], got 'fit'"):
        carve_splits(train_only, train_split="fit", test_size=4)


def test_a_size_for_a_split_the_dataset_has_is_ambiguous():
    whole = make_dataset()
    dataset = datasets.DatasetDict(train=whole.select(range(30)), test=whole.select(range(30, 35)),
                                   validation=whole.select(range(35, 40)))
    with pytest.raises(ValueError, match=r"`data.test_size` must be None when the dataset has a 'test' split"):
        carve_splits(dataset, test_size=4)
    with pytest.raises(ValueError, match=r"`data.validation_size` must be 0 when the dataset has a 'validation' split"):
        carve_splits(dataset, validation_split="validation", validation_size=4)
    # The validation split the dataset has, and one carved when it is not named.
    assert ids(carve_splits(dataset, validation_split="validation")["validation"]) == list(range(35, 40))
    assert carve_splits(dataset, validation_size=4)["validation"].num_rows == 4


@pytest.mark.parametrize("sizes, message", [
    ({"test_size": 40}, r"`data.test_size` must leave at least one of the 40 examples of 'train' for training, got 40"),
    ({"test_size": 20, "validation_size": 20},
     r"`data.validation_size` must leave at least one of the 20 examples of 'train' left after the test split"),
    ({"test_size": 1.0}, r"`data.test_size` must be a number > 0 and < 1, got 1.0"),
    ({"test_size": 0}, r"`data.test_size` must be an int >= 1, got 0"),
    ({"test_size": float("nan")}, r"`data.test_size` must be a finite number"),
    ({"test_size": 4, "validation_size": -1}, r"`data.validation_size` must be an int >= 1, got -1"),
    ({"test_size": "10%"}, r"`data.test_size` must be an int, got '10%'"),
])
def test_sizes_that_leave_no_training_example_or_are_not_sizes_name_the_argument(train_only, sizes, message):
    with pytest.raises(ValueError, match=message):
        carve_splits(train_only, **sizes)


def test_an_empty_split_is_an_error_naming_it():
    whole = make_dataset()
    dataset = datasets.DatasetDict(train=whole, test=whole.select([]))
    with pytest.raises(ValueError, match=r"`data.test_split` must name a split with at least one example, got 'test' \(0 rows\)"):
        carve_splits(dataset)
    with pytest.raises(ValueError, match=r"`data.train_split` must name a split with at least one example, got 'train'"):
        carve_splits({"train": whole.select([])}, test_size=1)
    with pytest.raises(ValueError, match=r"`split` must name a split with at least one example, got 'test' \(0 rows\)"):
        load_image_dataset(dataset, "test")


# --------------------------------------------------------------------------------------------------
# Streaming carving
# --------------------------------------------------------------------------------------------------

def test_streaming_carves_the_first_examples_before_any_shuffling():
    stream = datasets.IterableDatasetDict(train=make_dataset().to_iterable_dataset())
    parts = carve_splits(stream, test_size=5, validation_size=3)
    assert isinstance(parts, datasets.IterableDatasetDict) and list(parts) == ["train", "test", "validation"]
    assert ids(parts["test"]) == [0, 1, 2, 3, 4]
    assert ids(parts["validation"]) == [5, 6, 7]
    assert ids(parts["train"]) == list(range(8, NUM_ROWS))
    # Shuffling the carved train part never brings a held-out example back.
    assert sorted(ids(parts["train"].shuffle(seed=0, buffer_size=8))) == list(range(8, NUM_ROWS))


def test_streamed_parts_never_overlap_however_many_workers_read_them():
    # 4 shards (files): each gives its first share, so a test split read in one process and a train split read by
    # 2 workers (datasets splits take/skip among the shards a stream is read in) still never share an example.
    parts = carve_splits({"train": make_dataset().to_iterable_dataset(num_shards=4)}, test_size=6, validation_size=3)

    def read(stream, workers):
        loader = torch.utils.data.DataLoader(stream.select_columns(["id"]).with_format("torch"), batch_size=None,
                                             num_workers=workers)
        return sorted(int(row["id"]) for row in loader)

    test, validation = read(parts["test"], 0), read(parts["validation"], 0)
    assert test == [0, 1, 10, 11, 20, 30] and validation == [2, 12, 21]  # ids 0-9 are shard 0, 10-19 shard 1, ...
    train = read(parts["train"], 2)
    assert len(train) == NUM_ROWS - 9 and sorted(train + test + validation) == list(range(NUM_ROWS))
    # The carved train stream resumes from its own state_dict.
    stream = parts["train"].select_columns(["id"])
    iterator = iter(stream)
    seen = [next(iterator)["id"] for _ in range(12)]
    state = stream.state_dict()
    resumed = parts["train"].select_columns(["id"])
    resumed.load_state_dict(state)
    assert seen + [row["id"] for row in resumed] == [row["id"] for row in stream]


def test_a_stream_takes_a_fraction_only_when_its_size_is_known(tmp_path):
    unknown = {"train": make_dataset().to_iterable_dataset()}
    with pytest.raises(ValueError, match=r"`data.test_size` must be a count \(int\) for a stream of unknown size"):
        carve_splits(unknown, test_size=0.1)
    # A Hub-layout folder whose card states the split sizes, streamed as the Hub's would be.
    (tmp_path / "data").mkdir()
    make_dataset().to_parquet(tmp_path / "data" / "train-00000-of-00001.parquet")
    (tmp_path / "README.md").write_text(
        f"---\ndataset_info:\n  splits:\n  - name: train\n    num_bytes: 1000\n    num_examples: {NUM_ROWS}\n---\n")
    known = load_image_dataset(tmp_path, streaming=True)
    assert isinstance(known, datasets.IterableDatasetDict)
    assert ids(carve_splits(known, test_size=0.1)["test"]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"`data.test_size` must leave at least one of the 40 examples"):
        carve_splits(known, test_size=40)


def test_a_streamed_test_split_is_used_as_it_is():
    whole = make_dataset()
    stream = datasets.IterableDatasetDict(train=whole.select(range(30)).to_iterable_dataset(),
                                          test=whole.select(range(30, 40)).to_iterable_dataset())
    parts = carve_splits(stream)
    assert ids(parts["test"]) == list(range(30, 40)) and ids(parts["train"]) == list(range(30))


# --------------------------------------------------------------------------------------------------
# Dataset objects, config names, streaming
# --------------------------------------------------------------------------------------------------

def test_load_image_dataset_takes_dataset_objects(train_only):
    dataset = train_only["train"]
    assert load_image_dataset(train_only, "train") is dataset
    assert load_image_dataset(train_only) is train_only
    assert load_image_dataset(dataset, "test") is dataset  # a single dataset is the split asked for
    streamed = load_image_dataset(train_only, "train", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset) and ids(streamed) == list(range(NUM_ROWS))
    assert isinstance(load_image_dataset(train_only, streaming=True), datasets.IterableDatasetDict)
    iterable = datasets.IterableDatasetDict(train=dataset.to_iterable_dataset())
    assert load_image_dataset(iterable, "train") is iterable["train"]
    with pytest.raises(ValueError, match=r"`split` must be one of the dataset's splits \['train'\], got 'test'"):
        load_image_dataset(train_only, "test")
    with pytest.raises(ValueError, match=r"`revision` must be None for a DatasetDict object"):
        load_image_dataset(train_only, "train", revision="main")


def test_config_name_and_streaming_reach_load_dataset(tmp_path):
    for config, rows in (("small", range(0, 10)), ("large", range(10, 40))):
        (tmp_path / config).mkdir()
        make_dataset().select(rows).to_parquet(tmp_path / config / "train-00000-of-00001.parquet")
    (tmp_path / "README.md").write_text(
        "---\nconfigs:\n- config_name: small\n  data_files:\n  - split: train\n    path: small/*.parquet\n"
        "- config_name: large\n  data_files:\n  - split: train\n    path: large/*.parquet\n---\n")
    large = load_image_dataset(tmp_path, "train", config_name="large", cache_dir=tmp_path / "cache")
    assert isinstance(large, datasets.Dataset) and ids(large) == list(range(10, 40))
    small = load_image_dataset(tmp_path, "train", config_name="small", streaming=True)
    assert isinstance(small, datasets.IterableDataset) and ids(small) == list(range(10))


# --------------------------------------------------------------------------------------------------
# Bad data
# --------------------------------------------------------------------------------------------------

def test_a_wrongly_typed_or_missing_image_column_names_it_its_type_and_the_columns():
    paths = datasets.Dataset.from_dict({"image": ["a.png", "b.png"], "label": [0, 1]})
    with pytest.raises(ValueError, match=r"`image_column` must name a column of images .* got 'image' of type "
                                         r"Value\('string'\) \(columns: \{'image': Value\('string'\), 'label': Value\('int64'\)\}\)"):
        detect_columns(paths.features)
    with pytest.raises(ValueError, match=r"got 'fine_label' of type ClassLabel"):
        detect_columns(FEATURES, image_column="fine_label")
    with pytest.raises(ValueError, match=r"`image_column` must be one of the dataset's columns \['img', 'fine_label', 'id'\], got 'image'"):
        detect_columns(FEATURES, image_column="image")
    with pytest.raises(ValueError, match=r"`image_column` must be given: .*columns: \['label'\]"):
        detect_columns(datasets.Features({"label": datasets.ClassLabel(names=["a"])}))
    # Integer pixel arrays are images.
    arrays = datasets.Features({"pixel_values": datasets.Array2D((8, 8), "uint8"), "label": datasets.Value("int64")})
    assert detect_columns(arrays) == ("pixel_values", "label")


def test_check_label_range_reads_the_arrow_column_only(monkeypatch):
    dataset = make_dataset(labels=[i % NUM_CLASSES for i in range(NUM_ROWS)])
    assert check_label_range(dataset, "fine_label") == NUM_CLASSES - 1  # the ClassLabel's count
    with pytest.raises(ValueError, match=r"`num_classes` must exceed every label of column 'fine_label' of split "
                                         r"'train' \(it holds 3 at row 3\), got 3"):
        check_label_range(dataset, "fine_label", 3, "train")
    plain = datasets.Features({**FEATURES, "fine_label": datasets.Value("int64")})
    labels = [0] * NUM_ROWS
    labels[7], labels[9] = 12, -1
    bad = make_dataset(labels=labels, features=plain)
    # No image is decoded: the check reads the label column alone.
    monkeypatch.setattr(datasets.Image, "decode_example", lambda *a, **k: pytest.fail("an image was decoded"))
    with pytest.raises(ValueError, match=r"`fine_label` labels must be >= 0, got -1 at row 9 of column 'fine_label' of split 'test'"):
        check_label_range(bad, "fine_label", 20, "test")
    with pytest.raises(ValueError, match=r"`num_classes` must exceed .* \(it holds 12 at row 7\), got 10"):
        check_label_range(bad.select(range(9)), "fine_label", 10, "train")
    # Through an indices mapping (select, carving), only the rows selected count.
    assert check_label_range(bad.select(range(7)), "fine_label", 1) == 0
    with pytest.raises(ValueError, match=r"`dataset` must be a map-style datasets.Dataset"):
        check_label_range(bad.to_iterable_dataset(), "fine_label", 10)


# --------------------------------------------------------------------------------------------------
# Revisions: resolved on the Hub, recorded in metrics.json and the card
# --------------------------------------------------------------------------------------------------

def test_resolve_dataset_revision_gives_the_hub_commit(hub_server, tmp_path):
    repo_id = f"{USER}/splitting-{uuid.uuid4().hex[:8]}"
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset")
    make_dataset().to_parquet(tmp_path / "train-00000-of-00001.parquet")
    first = api.upload_file(path_or_fileobj=tmp_path / "train-00000-of-00001.parquet", path_in_repo="data/train-00000-of-00001.parquet",
                            repo_id=repo_id, repo_type="dataset")
    api.create_branch(repo_id, branch="v1", repo_type="dataset")
    second = api.upload_file(path_or_fileobj=b"# tiny\n", path_in_repo="README.md", repo_id=repo_id, repo_type="dataset")
    assert resolve_dataset_revision(repo_id, "v1") == first.oid
    assert resolve_dataset_revision(repo_id) == second.oid == api.dataset_info(repo_id).sha
    loaded = load_image_dataset(repo_id, "train", revision="v1")
    assert ids(loaded) == list(range(NUM_ROWS))
    assert data_record(repo_id, {"train": loaded}, revision="v1") == {
        "dataset": repo_id, "config_name": None, "revision": "v1", "commit": first.oid, "splits": {"train": NUM_ROWS}}
    # Local folders, embedded datasets and objects have no commits.
    assert resolve_dataset_revision(tmp_path) is None and resolve_dataset_revision("digits") is None
    assert resolve_dataset_revision(loaded) is None


def test_write_metrics_records_the_data_and_the_card_prints_the_commit(tmp_path):
    torch.manual_seed(0)
    VAEModel(VAEConfig(image_size=8, hidden_channels=[8, 16], latent_dim=4)).save_pretrained(tmp_path)
    recipe = SimpleNamespace(to_dict=lambda: {"data": {"dataset": "someone/faces", "revision": "v1", "test_split": "test"}})
    state = TrainState(step=3, best_step=3, elapsed_seconds=1.0, images_seen=30, step_seconds=1.0)
    metrics = {"elbo": Metric(-40.0, "nats", "ELBO, 1 sample", "Mean evidence lower bound per example")}
    stream = make_dataset().to_iterable_dataset()
    recorded = data_record(str(tmp_path), {"train": make_dataset(), "test": stream}, revision="v1")  # local: no commit
    assert recorded["commit"] is None
    data = {**recorded, "dataset": "someone/faces", "commit": "ab" * 20}  # as a Hub dataset would be recorded
    write_metrics(tmp_path, recipe, state, metrics, 1, data=data)
    written = json.loads((tmp_path / "metrics.json").read_text())["data"]
    assert written == {"dataset": "someone/faces", "config_name": None, "revision": "v1", "commit": "ab" * 20,
                       "splits": {"train": NUM_ROWS, "test": None}}
    card = str(cards.render_card(tmp_path, "someone/vae-faces"))
    assert "Dataset revision: `v1` (commit `" + "ab" * 20 + "`)." in card
    with pytest.raises(ValueError, match=r"`data` must be a dict"):
        write_metrics(tmp_path, recipe, state, metrics, 1, data=["someone/faces"])


# --------------------------------------------------------------------------------------------------
# evaluate() on dataset objects
# --------------------------------------------------------------------------------------------------

def _evaluate(model, dataset, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained VAE collapses; grey pixels are no Bernoulli likelihood
        metrics = evaluate(model, dataset, batch_size=4, num_importance_samples=2, progress=False, **kwargs)
    return {name: metric.value for name, metric in metrics.items()}


def test_evaluate_takes_datasets_objects_and_max_examples_cuts_a_stream():
    torch.manual_seed(0)
    model = VAEModel(VAEConfig(image_size=8, hidden_channels=[8, 16], latent_dim=4))
    whole = make_dataset()
    reference = _evaluate(model, whole, max_examples=10)
    assert reference["num_examples"] == 10
    assert _evaluate(model, datasets.DatasetDict(train=whole.select([0]), test=whole), max_examples=10) == reference
    streamed = _evaluate(model, whole.to_iterable_dataset(), max_examples=10)
    assert streamed["num_examples"] == 10 and streamed["elbo"] == pytest.approx(reference["elbo"])
    with pytest.raises(ValueError, match=r"`dataset` must have a 'test' split .* got splits \['train'\]"):
        evaluate(model, datasets.DatasetDict(train=whole), progress=False)
