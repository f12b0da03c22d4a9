"""Every seed-topic example under examples/ runs in its tiny mode (8x8 digits, a few steps) and writes what
it promises: the tables with the expected rows, finite numbers in sensible ranges, and the pictures.

The examples are imported from their files and run through `main(argv)`; the trained models go to one
folder shared by the whole module, so the VAE of the interpolation, anomaly and IWAE examples trains once.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from PIL import Image

from .model_tester import single_thread  # noqa: F401  (autouse: one torch thread, as the committed runs)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STEPS = ["--tiny", "--steps", "30"]


def load_example(name: str):
    """examples/<name>.py as a module (examples/ is a folder of scripts, not a package)."""
    sys.path.insert(0, str(EXAMPLES))  # the examples import their shared `_common`
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("example_runs")


def run(name: str, tmp_path: Path, runs_dir: Path, *extra: str):
    out = tmp_path / name
    result = load_example(name).main([*STEPS, "--output-dir", str(out), "--runs-dir", str(runs_dir), *extra])
    return out, result


def table_rows(path: Path) -> list[list[str]]:
    """The body rows of the markdown table in `path` (cells stripped)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def grid_size(rows: int, columns: int, side: int = 8, scale: int = 3, padding: int = 2) -> tuple[int, int]:
    """(width, height) of `hf_vae.images.image_grid` for rows x columns images of side `side`."""
    return (columns * (side + padding) + padding) * scale, (rows * (side + padding) + padding) * scale


def test_beta_vae_table_has_one_row_per_beta_and_kl_falls_with_beta(tmp_path, runs_dir):
    out, rows = run("beta_vae", tmp_path, runs_dir, "--betas", "0.5", "8")
    assert [r["beta"] for r in rows] == [0.5, 8.0]
    assert [row[0] for row in table_rows(out / "beta_vae.md")] == ["0.5", "8"]
    for r in rows:
        assert 0 <= r["active_units"] <= r["latent_dim"] == 8
        assert r["kl"] >= 0 and r["reconstruction"] > 0 and math.isfinite(r["elbo"])
        assert r["elbo"] == pytest.approx(-(r["reconstruction"] + r["kl"]), rel=1e-4)  # the ELBO at β = 1
        assert len(r["kl_per_dim"]) == 8
    # The heavier KL weight leaves less information in z: the point of the example.
    assert rows[0]["kl"] > rows[1]["kl"]
    assert rows[0]["active_units"] >= rows[1]["active_units"]
    assert Image.open(out / "beta_vae.png").size[0] > 0
    assert Image.open(out / "samples.png").size == grid_size(2, 8, scale=2)


def test_cvae_guidance_grid_has_a_row_per_class_by_name(tmp_path, runs_dir):
    out, result = run("cvae_guidance", tmp_path, runs_dir, "--scales", "0", "1", "3")
    assert result["classes"] == [str(i) for i in range(10)]  # the dataset's class names, recorded by the trainer
    assert result["accuracy"] == {}  # the reference classifier judges 28x28 digits: full size only
    assert Image.open(out / "cvae_guidance.png").size[1] > Image.open(out / "cvae_guidance.png").size[0]  # 10 rows, 3 columns


def test_interpolation_strips_and_latent_arithmetic(tmp_path, runs_dir):
    out, result = run("interpolation", tmp_path, runs_dir)
    module = load_example("interpolation")
    # A linear and a slerp strip per pair; one row per class and one column per scale.
    assert result["num_strips"] == 2 * len(module.PAIRS)
    assert Image.open(out / "interpolation.png").size == grid_size(2 * len(module.PAIRS), module.STEPS)
    assert Image.open(out / "latent_arithmetic.png").size == grid_size(10, len(module.SCALES))
    assert all(0 <= ink <= 1 for ink in result["ink_by_scale"].values())
    assert [float(row[0]) for row in table_rows(out / "latent_arithmetic.md")] == module.SCALES


def test_anomaly_detection_reports_an_auroc_per_outlier_set(tmp_path, runs_dir):
    out, result = run("anomaly_detection", tmp_path, runs_dir)
    assert list(result) == ["inverted test digits (1 - x)", "mnist5k test images resized to 8x8"]
    for report in result.values():
        assert 0 <= report["auroc"] <= 1 and math.isfinite(report["threshold"])
        assert 0 <= report["false_positive_rate"] <= report["true_positive_rate"] <= 1  # Youden's J >= 0
        assert report["num_reference"] == 300
    # Swapping black and white makes a digit very improbable, even under a barely trained model.
    assert result["inverted test digits (1 - x)"]["auroc"] > 0.9
    assert len(table_rows(out / "anomaly_detection.md")) == 2
    assert Image.open(out / "score_histogram.png").size[0] > 0


def test_iwae_bound_table_tightens_with_k(tmp_path, runs_dir):
    out, rows = run("iwae_bound", tmp_path, runs_dir, "--num-images", "30")
    assert [r["k"] for r in rows] == [1, 10, 100, 1000]
    assert [row[0] for row in table_rows(out / "iwae_bound.md")] == ["1", "10", "100", "1000"]
    for r in rows:
        assert r["log_px"] < 0 and r["standard_error"] > 0
        assert math.isfinite(r["gain"]) and math.isfinite(r["gain_standard_error"])
    # The bound does not get looser with k (up to Monte-Carlo noise: three standard errors).
    assert rows[-1]["gain"] > -3 * rows[-1]["gain_standard_error"]
    assert Image.open(out / "iwae_bound.png").size[0] > 0


def test_vqvae_two_stage_trains_both_stages_and_samples(tmp_path, runs_dir):
    out, result = run("vqvae_two_stage", tmp_path, runs_dir, "--prior-steps", "20")
    assert result["num_samples"] == 80  # 8 per class
    assert Image.open(out / "samples.png").size == grid_size(10, 8)
    assert Image.open(out / "reconstructions.png").size == grid_size(2, 16)
    stages = {(row[0], row[1]): float(row[2]) for row in table_rows(out / "vqvae_two_stage.md")}
    assert 0 < stages[("2: transformer prior", "bits_per_token")] < 10  # log2(32) = 5 is the uniform prior
    assert 1 <= stages[("1: VQ-VAE", "codes_used")] <= 32
    assert (runs_dir / "digits_vqvae" / "model.safetensors").is_file()  # stage 1 was trained here, not found
