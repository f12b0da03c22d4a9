"""`benchmarks/data_scale.py --smoke`: the generated Hub-layout datasets and every row of the markdown, with sane
numbers (not the issue's targets, which only the full-size run on an idle machine can judge)."""

import re

import datasets
import pyarrow.parquet as pq
import pytest

from .model_tester import import_benchmark

MODES = ("map-style, first open", "map-style, cached", "streaming")


@pytest.fixture(scope="module")
def data_scale():
    return import_benchmark("data_scale")


@pytest.fixture(scope="module")
def smoke(data_scale, tmp_path_factory):
    root = tmp_path_factory.mktemp("data_scale")
    results = data_scale.main(["--smoke", "--data-dir", str(root / "data"), "--output_dir", str(root / "runs"),
                               "--results", str(root / "data_scale_smoke.md")])
    return root, results, (root / "data_scale_smoke.md").read_text()


def _table(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the first table after `heading`, as lists of cells."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_generated_datasets_have_hub_layout_and_shifted_digits(smoke, data_scale):
    root, results, _ = smoke
    folder = root / "data" / "mnist5k-shift3-seed0-train2000-test200-shard1000"
    assert sorted(p.name for p in (folder / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert "configs:" in (folder / "README.md").read_text()
    assert pq.read_metadata(folder / "data" / "train-00001-of-00002.parquet").num_rows == 1000
    train = datasets.load_dataset(str(folder), split="train", cache_dir=str(root / "check_cache"))
    assert len(train) == 2000 and train.features["label"].names == [str(i) for i in range(10)]
    images = [train[i]["image"] for i in range(20)]
    assert {image.size for image in images} == {(28, 28)} and {image.mode for image in images} == {"L"}
    assert len({image.tobytes() for image in images}) == 20  # shifted copies, not the same digit over and over
    generated = results["generated"]
    assert [g["train_images"] for g in generated] == [2000, 4000] and all(g["bytes_on_disk"] > 0 for g in generated)
    # A second call reuses the folder instead of writing it again.
    again, record = data_scale.generate_dataset(2000, root / "data", test_size=200, shard_size=1000, seed=0, jobs=1)
    assert again == folder and record["reused"]


def test_markdown_has_every_row_with_sane_numbers(smoke):
    _, results, markdown = smoke
    memory = _table(markdown, "## Peak memory of a training run")
    assert [(row[0], row[1].split(" (")[0]) for row in memory] == [(size, mode) for size in ("2,000", "4,000") for mode in MODES]
    for row in results["memory"]:
        assert 100e6 < row["peak_rss"] < 16e9, row
        # ru_maxrss is exact, the sums are sampled (a spike between two samples is missed): no order between them.
        assert 100e6 < row["max_single_rss"] < 16e9 and row["peak_pss"] > 0, row
        assert 0 < row["peak_anon"] < row["peak_rss"], row  # file-backed pages (the libraries at least) left out
        assert 0 < row["seconds_to_setup"] <= row["seconds_to_first_step"] <= row["wall_seconds"], row
        assert 0 < row["trainer_seconds_to_first_step"] < row["seconds_to_first_step"], row  # no imports in it
        assert row["steps"] == 5 and row["images_per_second"] > 0, row
    first_step = _table(markdown, "## Time from process start to the first training step")
    assert [row[0] for row in first_step] == list(MODES) and all(float(row[2]) > float(row[3]) > 0 for row in first_step)
    speed = _table(markdown, "## Training throughput on mnist5k")
    assert len(speed) == 1 and float(speed[0][2]) > 0 and float(speed[0][3]) > 0
    verdicts = re.findall(r"\*\*(PASS|FAIL)\*\*", markdown)
    assert len(verdicts) == 2 * (6 + 3) + 1  # < 2,000 MB per run and growth per data path (RSS, non-file), throughput


def test_map_style_runs_read_through_dataloader_workers(smoke):
    """`data.in_memory=false` reached the new path: the map-style runs had the trainer and its DataLoader workers."""
    _, results, _ = smoke
    for row in results["memory"]:
        if row["mode"].startswith("map-style"):
            assert row["processes"] >= 2, row
