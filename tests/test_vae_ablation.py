"""`benchmarks/vae_ablation.py --smoke`: every row trains a few steps of the tiny digits recipe with its
option, and the markdown holds one row per run with its standard error."""

import importlib.util
import json

from transformers import AutoConfig

from .model_tester import import_benchmark


def test_ablation_smoke_run_writes_a_row_per_option(tmp_path):
    vae_ablation = import_benchmark("vae_ablation")
    has_pythae = importlib.util.find_spec("pythae") is not None
    argv = ["--smoke", "--output_dir", str(tmp_path / "runs"), "--results", str(tmp_path / "ablation.md")]
    rows = vae_ablation.main(argv + ([] if has_pythae else ["--skip-pythae"]))
    names = [row["name"] for row in rows]
    options = [name for name in vae_ablation.OPTIONS if vae_ablation.available(name, vae_ablation.Recipe.from_yaml(vae_ablation.SMOKE_RECIPE))]
    assert names == ["default", *options, "combination"] + (["pythae_iwae", "pythae_vamp", "pythae_vamp100"] if has_pythae else [])
    by_name = {row["name"]: row for row in rows}
    # Each row trained its own option, and the run's saved model says so.
    assert AutoConfig.from_pretrained(tmp_path / "runs" / "vamp").prior == "vamp"
    assert AutoConfig.from_pretrained(tmp_path / "runs" / "iwae5").train_importance_samples == 5
    assert AutoConfig.from_pretrained(tmp_path / "runs" / "vamp100").num_pseudo_inputs == 5  # the smoke size
    assert AutoConfig.from_pretrained(tmp_path / "runs" / "default").prior == "standard_normal"  # the baseline
    # The combination takes the options that beat the baseline alone, and of vamp / vamp100 only the better.
    beat = [name for name in options if by_name[name]["nll"] < by_name["default"]["nll"]]
    if "vamp" in beat and "vamp100" in beat:
        beat.remove("vamp100" if by_name["vamp"]["nll"] <= by_name["vamp100"]["nll"] else "vamp")
    assert by_name["combination"]["overrides"] == vae_ablation.option_overrides(beat, smoke=True)
    assert "The combination row combines " in (tmp_path / "ablation.md").read_text()
    for row in rows:
        assert row["estimator"] == "IWAE, k=3" and row["nll_se"] > 0 and row["num_examples"] == 20
    markdown = (tmp_path / "ablation.md").read_text()
    assert sum(line.startswith("| ") for line in markdown.splitlines()) == len(rows) + 1  # header + a line per row
    assert f"{by_name['vamp']['nll']:.2f} +/- {by_name['vamp']['nll_se']:.2f}" in markdown
    if has_pythae:  # pythae's VAMP is scored as an hf_vae VampPrior model
        assert AutoConfig.from_pretrained(tmp_path / "runs" / "pythae_vamp" / "scored").prior == "vamp"
    assert json.loads((tmp_path / "runs" / "default.json").read_text())["steps"] == 3
    # The table also stands as a section of vae_mnist5k.md beside the results file.
    section = (tmp_path / "vae_mnist5k.md").read_text()
    assert section.startswith("<!-- begin ablation -->\n## Ablation (issue #17)")
    assert f"{by_name['vamp']['nll']:.2f} +/- {by_name['vamp']['nll_se']:.2f}" in section

