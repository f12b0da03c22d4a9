"""`benchmarks/pixelcnn_ablation.py --smoke`: every variant trained on the tiny digits recipe with its option
really applied, exact per-image NLLs that are the trainer's own, the paired differences, the `combined`
choice, and the markdown table (not the issue's targets, which only the full budget can judge)."""

import json
import math

import pytest

from .model_tester import import_benchmark


@pytest.fixture(scope="module")
def ablation():
    return import_benchmark("pixelcnn_ablation")


@pytest.fixture(scope="module")
def smoke(ablation, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    records = ablation.main(["--smoke", "--output_dir", str(root / "runs"), "--results", str(root / "ablation.md")])
    return root, records, (root / "ablation.md").read_text()


def test_every_variant_applies_its_option(smoke):
    root, records, _ = smoke
    assert list(records) == ["as_is", "ema", "dropout", "larger", "combined"]
    assert records["as_is"]["options"] == [] and records["as_is"]["ema"] is None
    assert records["ema"]["ema"]["weights"] == "ema"  # the trainer evaluated and saved the EMA weights
    dropout = json.loads((root / "runs" / "dropout" / "config.json").read_text())
    assert dropout["dropout"] == 0.1
    larger = json.loads((root / "runs" / "larger" / "config.json").read_text())
    assert larger["num_layers"] == 5 and larger["hidden_size"] == 24
    for record in records.values():
        assert record["steps"] == 4 and record["budget"][0] == "training.max_steps=4"


def test_nll_is_exact_per_image_with_standard_errors(smoke, ablation):
    _, records, _ = smoke
    for record in records.values():
        assert len(record["per_image"]) == 300  # the digits test split
        # Each image's exact NLL is below 64 binary pixels at chance, and the mean is what the table shows.
        assert all(0 < v < 64 * math.log(2) + 5 for v in record["per_image"])
        mean, se = ablation.mean_and_se(record["per_image"])
        assert record["nll"] == pytest.approx(mean) and record["se"] == pytest.approx(se) and se > 0
    delta, delta_se = ablation.paired(records["ema"], records["as_is"])
    assert delta == pytest.approx(records["ema"]["nll"] - records["as_is"]["nll"]) and delta_se > 0


def test_combined_takes_the_options_that_beat_as_is(smoke, ablation):
    _, records, _ = smoke
    singles = ablation.option_overrides(ablation.parse_args(["--smoke"]), {"hidden_channels": 16})
    better = [o for o in ("ema", "dropout", "larger") if records[o]["nll"] < records["as_is"]["nll"]]
    chosen = better or ["ema", "dropout", "larger"]
    assert records["combined"]["options"] == [item for o in chosen for item in singles[o]]
    assert records["combined"]["note"]


def test_markdown_has_a_row_per_variant_and_re_renders(smoke, ablation):
    root, records, markdown = smoke
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == list(records)
    for row, record in zip(rows, records.values()):
        assert f"{record['nll']:.2f} +/- {record['se']:.2f}" in row
    assert "`training.max_steps=4`" in markdown and "`combined`:" in markdown
    ablation.main(["--render", "--output_dir", str(root / "runs"), "--results", str(root / "again.md")])
    assert (root / "again.md").read_text() == markdown
    # The same table stands as a section of priors_mnist5k.md beside the results file, replaced, not repeated.
    priors = (root / "priors_mnist5k.md").read_text()
    assert priors.count("<!-- begin ablation -->") == 1 and "## Gated PixelCNN ablation (issue #17)" in priors
    assert all(row in priors for row in rows)


def test_a_budget_is_required(ablation):
    with pytest.raises(SystemExit):
        ablation.parse_args([])
