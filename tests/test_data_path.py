"""The datasets-native data path (issue #12): on-the-fly Arrow reads with workers, streaming with a
resumable position, splits carved before decoding, dataset objects, bad data. Tiny recipes on the
embedded 8x8 digits; datasets built in memory with `datasets.Dataset.from_dict`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from hf_vae import data as hd
from hf_vae.training import Recipe, load_data, train

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
FAST = ["training.max_steps=12", "training.save_every=4", "training.eval_every=4", "training.progress=false",
        "training.trackers=[jsonl]", "evaluation.num_importance_samples=0", "evaluation.num_samples=4",
        "training.keep_best=false", "training.save_total_limit=3"]


def _recipe(output_dir, *overrides) -> Recipe:
    return Recipe.from_yaml(TINY_RECIPE, [*FAST, f"training.output_dir={output_dir}", *overrides])


def _weights(run_dir: Path) -> dict:
    return load_file(run_dir / "model.safetensors")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _png(value: int, size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(size, value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _numbered(n: int, *, bad_rows=(), num_classes: int = 4) -> datasets.Dataset:
    """`n` 8x8 grey images whose pixel value is the row number (mod 256), labels row % num_classes."""
    images = [{"bytes": b"not a png" if i in bad_rows else _png(i % 256), "path": None} for i in range(n)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=num_classes)})
    return datasets.Dataset.from_dict({"image": images, "label": [i % num_classes for i in range(n)]}, features=features)


def _rows(batch) -> list[int]:
    return [round(v * 255) for v in batch["pixel_values"][:, 0, 0, 0].tolist()]


# ------------------------------------------------------------------------------------------- paths


def test_in_memory_and_on_the_fly_paths_train_the_same_model(tmp_path):
    """Same rows, same order, same initial weights: the two paths differ only in where images are decoded."""
    in_memory = train(_recipe(tmp_path / "mem", "data.in_memory=true"))
    on_the_fly = train(_recipe(tmp_path / "fly", "data.in_memory=false", "data.num_workers=2"))
    assert _same(_weights(in_memory), _weights(on_the_fly))
    recipe = _recipe(tmp_path / "x", "data.in_memory=false")
    splits = load_data(recipe)
    assert isinstance(splits["train"], hd.ImageDataset) and isinstance(splits["validation"], hd.ImageDataset)
    assert isinstance(load_data(_recipe(tmp_path / "y"))["train"], hd.TensorDictDataset)  # auto: 8x8 digits fit


def test_streaming_resume_reads_exactly_what_an_uninterrupted_run_reads(tmp_path):
    """Without a shuffle buffer the stream's saved position is exact: resuming from step 8 ends bit-identical."""
    stream = ["data.streaming=true", "data.shuffle_buffer_size=0"]
    full = train(_recipe(tmp_path / "full", *stream))
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "checkpoints" / "checkpoint-00000012")
    for name in ("model.safetensors", "metrics.json"):
        (resumed / name).unlink()
    assert json.loads((resumed / "checkpoints" / "checkpoint-00000008" / "data-0.json").read_text())
    train(_recipe(resumed, *stream), resume=True)
    assert _same(_weights(full), _weights(resumed))
    # Epochs go on past the end of the stream (300 train rows - 100 validation = 200 = 6 batches of 32).
    assert json.loads((full / "metrics.json").read_text())["steps"] == 12


@pytest.mark.parametrize("seed", [3, 7])
def test_shuffled_stream_resume_loses_and_repeats_at_most_the_buffer(seed):
    """What README promises for a shuffle buffer of B examples (datasets does not save the buffer): after a
    resume, at most B of the epoch's examples go unread in that epoch, at most B are read a second time,
    and none twice after the resume."""
    stream = _numbered(200).to_iterable_dataset(num_shards=4)
    view = hd.StreamingImageDataset(stream, shuffle_buffer_size=16, shuffle_seed=seed)
    iterator = iter(torch.utils.data.DataLoader(view, batch_size=10, collate_fn=hd.collate_examples))
    before = [row for _ in range(7) for row in _rows(next(iterator))]
    state = view.state_dict()
    resumed = hd.StreamingImageDataset(stream, shuffle_buffer_size=16, shuffle_seed=seed)
    resumed.load_state_dict(state)
    after = [row for batch in torch.utils.data.DataLoader(resumed, batch_size=10, collate_fn=hd.collate_examples)
             for row in _rows(batch)]
    assert len(set(after)) == len(after) and len(set(before) & set(after)) <= 16
    assert 200 - len(set(before) | set(after)) <= 16
    unshuffled = hd.StreamingImageDataset(stream)
    assert [r for b in torch.utils.data.DataLoader(unshuffled, batch_size=50, collate_fn=hd.collate_examples)
            for r in _rows(b)] == list(range(200))


def test_stream_is_split_between_processes():
    stream = _numbered(120).to_iterable_dataset(num_shards=4)
    parts = [[r for b in torch.utils.data.DataLoader(hd.StreamingImageDataset(stream, rank=rank, world_size=2),
                                                      batch_size=20, collate_fn=hd.collate_examples) for r in _rows(b)]
             for rank in (0, 1)]
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == list(range(120))
    with pytest.raises(ValueError, match="rank.*world_size=2.*got 2"):
        hd.StreamingImageDataset(stream, rank=2, world_size=2)


def test_workers_read_the_same_batches_as_the_main_process():
    view = hd.ImageDataset(_numbered(64), binarize="static", seed=1)
    main = list(hd.make_dataloader(view, 16, shuffle=True, seed=2))
    workers = list(hd.make_dataloader(view, 16, shuffle=True, seed=2, num_workers=2, prefetch_factor=3))
    assert all(torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
               for a, b in zip(main, workers))


# ------------------------------------------------------------------------------------ splits, objects


def test_train_only_dataset_object_gets_a_carved_stratified_test_split(tmp_path):
    """A Dataset object with no test split (the CIFAR-100-style case): `data.test_size` carves one."""
    digits = hd.load_image_dataset("digits")
    train_only = datasets.concatenate_datasets([digits["train"], digits["test"]])
    recipe = _recipe(tmp_path / "run", "data.test_size=0.1", "data.validation_size=0.1", "training.max_steps=2")
    splits = load_data(recipe, train_only)
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {"test": 180, "validation": 180, "train": 1437}  # 1797 rows: fractions of train
    for name in ("test", "validation"):  # stratified: every class keeps its share
        counts = np.bincount(splits[name]["labels"].numpy(), minlength=10)
        assert counts.min() >= sizes[name] // 10 - 2
    again = load_data(recipe, train_only)
    assert torch.equal(again["test"]["pixel_values"], splits["test"]["pixel_values"])
    run = train(recipe, dataset=train_only)
    assert json.loads((run / "metrics.json").read_text())["test"]["num_examples"]["value"] == 180
    with pytest.raises(ValueError, match=r"data.test_split.*\['train'\].*'test'.*data.test_size"):
        load_data(_recipe(tmp_path / "r"), train_only)
    with pytest.raises(ValueError, match="data.test_size.*must be None.*'test' split"):
        load_data(_recipe(tmp_path / "r", "data.test_size=10"))


def test_dataset_dict_and_streamed_objects_train(tmp_path):
    digits = hd.load_image_dataset("digits")
    run = train(_recipe(tmp_path / "dict", "training.max_steps=2"), dataset=digits)
    assert (run / "model.safetensors").exists()
    streamed = datasets.IterableDatasetDict({k: v.to_iterable_dataset(num_shards=2) for k, v in digits.items()})
    recipe = _recipe(tmp_path / "stream", "training.max_steps=2", "data.streaming=true", "data.validation_size=50")
    splits = load_data(recipe, streamed)
    assert isinstance(splits["train"], hd.StreamingImageDataset) and splits["validation"] is not None
    assert (train(recipe, dataset=streamed) / "model.safetensors").exists()
    with pytest.raises(ValueError, match="data.streaming.*must be True"):
        load_data(_recipe(tmp_path / "x"), streamed)


def test_class_label_names_reach_the_split():
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    two = datasets.Dataset.from_dict({"image": [{"bytes": _png(1), "path": None}] * 2, "label": [0, 1]}, features=features)
    assert hd.load_split(two, None).label_names == ["cat", "dog"]
    assert hd.get_label_names(two.features) == ["cat", "dog"]
    assert hd.StreamingImageDataset(two.to_iterable_dataset()).label_names == ["cat", "dog"]


def test_center_crop_then_resize():
    wide = np.zeros((20, 30), np.uint8)
    wide[5:15, 10:20] = 255  # a bright centred 10x10 square
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, format="PNG")
    one = datasets.Dataset.from_dict({"image": [{"bytes": buffer.getvalue(), "path": None}]},
                                     features=datasets.Features({"image": datasets.Image()}))
    pixels = hd.ImageDataset(one, center_crop=10, image_size=5)[0]["pixel_values"]
    assert pixels.shape == (1, 5, 5) and bool((pixels == 1).all())
    with pytest.raises(ValueError, match="at least 40x40 for data.center_crop=40"):
        hd.ImageDataset(one, center_crop=40)[0]


# -------------------------------------------------------------------------------------------- bad data


def test_undecodable_image_names_its_split_and_row_or_is_skipped_and_counted(tmp_path):
    bad = _numbered(96, bad_rows=(37,))
    with pytest.raises(ValueError, match=r"image\[37\] of split 'train'.*decodable.*on_bad_image: skip"):
        list(hd.make_dataloader(hd.ImageDataset(bad), 32))
    with pytest.raises(ValueError, match=r"image\[37\] of split 'train'"):
        list(torch.utils.data.DataLoader(hd.StreamingImageDataset(bad.to_iterable_dataset()), batch_size=32,
                                         collate_fn=hd.collate_examples))
    skipping = hd.ImageDataset(bad, on_bad_image="skip")
    batches = list(hd.make_dataloader(skipping, 32, num_workers=2))
    assert [len(b["pixel_values"]) for b in batches] == [32, 31, 32] and batches[1]["num_skipped"] == 1
    assert 37 not in _rows(batches[1])
    # Through the trainer: every read of the bad row is skipped and counted in metrics.json.
    dataset = datasets.DatasetDict({"train": bad, "test": _numbered(20)})
    recipe = _recipe(tmp_path / "run", "data.in_memory=false", "data.on_bad_image=skip", "data.validation_size=0",
                     "data.num_workers=0", "training.max_steps=6", "model.config.image_size=8")
    metrics = json.loads((train(recipe, dataset=dataset) / "metrics.json").read_text())
    assert metrics["skipped_images"] == 2  # 6 steps of 32 = two epochs of 96 rows: row 37 read twice
    in_memory = _recipe(tmp_path / "mem", "data.in_memory=true", "data.on_bad_image=skip", "data.validation_size=0",
                        "training.max_steps=2", "model.config.image_size=8")
    metrics = json.loads((train(in_memory, dataset=dataset) / "metrics.json").read_text())
    assert metrics["skipped_images"] == 1  # read into memory once: row 37 left out at load


def test_empty_split_and_labels_beyond_num_classes_are_named(tmp_path):
    empty = datasets.DatasetDict({"train": _numbered(40), "test": _numbered(1).select([])})
    with pytest.raises(ValueError, match=r"data.test_split. must name a split with at least one example, got .test. \(0 rows\)"):
        load_data(_recipe(tmp_path / "a", "data.validation_size=0"), empty)
    streamed = datasets.IterableDatasetDict({"train": _numbered(40).to_iterable_dataset(),
                                             "test": _numbered(4).to_iterable_dataset().take(0)})
    with pytest.raises(ValueError, match="at least one example.*'test'"):
        load_data(_recipe(tmp_path / "b", "data.validation_size=0", "data.streaming=true"), streamed)
    plain = _numbered(8).cast_column("label", datasets.Value("int64"))
    view = hd.ImageDataset(plain.map(lambda row: {"label": -1 if row["label"] == 3 else row["label"]}))
    with pytest.raises(ValueError, match=r"label\[3\] of split 'train'.*class id >= 0, got -1"):
        view[3]


def test_recipe_rejects_bad_data_settings(tmp_path):
    for override, match in (("data.test_size=1.5", "data.test_size"), ("data.validation_size=-1", "data.validation_size"),
                            ("data.in_memory=maybe", "data.in_memory"), ("data.on_bad_image=ignore", "data.on_bad_image"),
                            ("data.num_workers=-1", "data.num_workers"), ("data.center_crop=0", "data.center_crop")):
        with pytest.raises(ValueError, match=match):
            _recipe(tmp_path, override)
    with pytest.raises(ValueError, match="data.in_memory.*streaming"):
        _recipe(tmp_path, "data.streaming=true", "data.in_memory=true")
    with pytest.raises(ValueError, match="data.train_binarize.*streaming"):
        _recipe(tmp_path, "data.streaming=true", "data.train_binarize=static")


def test_cli_evaluate_streams_the_same_numbers_as_map_style(tmp_path):
    from hf_vae.cli import main

    run = train(_recipe(tmp_path / "run", "training.max_steps=2"))
    outputs = {}
    for mode, extra in (("map", []), ("stream", ["--streaming"])):
        outputs[mode] = tmp_path / f"{mode}.json"
        main(["evaluate", str(run), "--dataset", "digits", "--max-examples", "40", "--num-importance-samples", "0",
              "--output", str(outputs[mode]), *extra])
    read = {mode: json.loads(path.read_text()) for mode, path in outputs.items()}
    assert read["map"]["num_examples"]["value"] == 40 and read["map"]["elbo"] == read["stream"]["elbo"]
    main(["evaluate", str(run), "--dataset", "digits", "--max-examples", "10", "--num-importance-samples", "4",
          "--decoder-precision", "bf16", "--output", str(tmp_path / "bf16.json")])
    assert json.loads((tmp_path / "bf16.json").read_text())["nll"]["estimator"] == "IWAE, k=4, bf16 decoder"


def test_a_conditional_run_takes_the_class_names_and_records_its_data(tmp_path):
    from transformers import AutoModel

    names = [f"digit {i}" for i in range(10)]
    digits = hd.load_image_dataset("digits").cast_column("label", datasets.ClassLabel(names=names))
    recipe = Recipe.from_yaml(REPO / "hf_vae" / "recipes" / "cvae_digits_tiny.yaml",
                              [*FAST, "training.max_steps=2", f"training.output_dir={tmp_path / 'run'}"])
    run = train(recipe, dataset=digits)
    model = AutoModel.from_pretrained(run)
    assert model.config.id2label[3] == "digit 3" and model.config.label2id["digit 9"] == 9
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.sample(2, labels=["digit 3", "digit 4"], generator=generator()),
                       model.sample(2, labels=[3, 4], generator=generator()))
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(run)  # written beside the model: images as the test data were
    assert (processor.image_size, processor.num_channels, processor.binarize) == ([8, 8], 1, "static")
    data = json.loads((run / "metrics.json").read_text())["data"]
    assert data["dataset"] == "<DatasetDict object>" and data["splits"] == {"train": 1397, "validation": 100, "test": 300}


def test_image_transform_plugs_into_datasets_transform_api():
    """The one transform also runs through `datasets`' own API (`with_transform`, `IterableDataset.map`)."""
    digits = hd.load_image_dataset("digits")["test"].select(range(12))
    transform = hd.ImageTransform(image_column="image", label_column="label", num_channels=3, image_size=16)
    through_datasets = digits.with_transform(transform)[:12]
    view = hd.ImageDataset(digits, num_channels=3, image_size=16)
    assert all(torch.equal(a, view[i]["pixel_values"]) for i, a in enumerate(through_datasets["pixel_values"]))
    streamed = digits.to_iterable_dataset().map(transform, batched=True, batch_size=5, remove_columns=["image"])
    assert [int(row["labels"]) for row in streamed] == digits["label"]


def test_two_processes_stream_their_parts_and_end_each_epoch_together(tmp_path):
    """A 1-shard stream split by example between 2 processes: 699 and 698 training rows, so 233 and 232
    batches of 3; both processes end every epoch at the shorter part, or the longer one would wait forever."""
    import subprocess
    import sys

    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / "training" / "train.py"), str(TINY_RECIPE), "--output_dir", str(run_dir),
               *[arg for override in (*FAST, "training.max_steps=240", "training.batch_size=6", "training.eval_every=240",
                                      "training.save_every=240", "data.streaming=true", "data.shuffle_buffer_size=0")
                 for arg in ("--set", override)]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["num_processes"] == 2 and summary["steps"] == 240
    checkpoint = run_dir / "checkpoints" / "checkpoint-00000240"
    positions = [json.loads((checkpoint / f"data-{rank}.json").read_text()) for rank in (0, 1)]
    # Both ended epoch 0 at the shorter part and read the same number of batches since: the same position.
    assert positions[0]["epoch"] == 1 and positions[0] == positions[1]
