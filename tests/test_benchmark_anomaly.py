"""`benchmarks/anomaly_mnist5k.py` in a tiny mode (tiny random models saved beforehand, so nothing trains; 20
images per set): the markdown has a row per model and outlier set, and `hf-vae score` on the PNG folders it
writes gives the same AUROC."""

import json

import torch

from hf_vae import PixelCNNPriorConfig, PixelCNNPriorModel, VAEConfig, VAEModel
from hf_vae.cli import main as cli_main

from .model_tester import import_benchmark


def test_anomaly_benchmark_tiny_run_matches_the_cli(tmp_path):
    anomaly_mnist5k = import_benchmark("anomaly_mnist5k")
    torch.manual_seed(0)
    VAEModel(VAEConfig(image_size=28, num_channels=1, hidden_channels=[8], num_res_blocks=0, latent_dim=4)).save_pretrained(tmp_path / "vae")
    PixelCNNPriorModel(PixelCNNPriorConfig(vocab_size=2, grid_size=28, token_source="pixels", hidden_size=4, num_layers=2,
                                           output_channels=4)).save_pretrained(tmp_path / "pixelcnn")
    results = anomaly_mnist5k.main(["--vae", str(tmp_path / "vae"), "--pixelcnn", str(tmp_path / "pixelcnn"),
                                    "--output_dir", str(tmp_path / "runs"), "--results", str(tmp_path / "anomaly.md"),
                                    "--max-images", "20", "--num-importance-samples", "2"])
    markdown = (tmp_path / "anomaly.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith(("| VAE |", "| Gated PixelCNN |"))]
    assert len(rows) == 6  # 2 models x 2 outlier sets, then one line per model about its run
    assert [r["estimator"] for r in results] == ["IWAE, k=2", "exact, image quantized to 2 levels"]
    for result in results:
        for report in result["anomaly"].values():
            assert 0 <= report["auroc"] <= 1 and report["num_reference"] == report["num_outliers"] == 20
    assert len(list((tmp_path / "runs" / "sets" / "inverted").glob("*.png"))) == 20

    cli_main(["score", str(tmp_path / "vae"), "--binarize", "static", "--reference", "mnist5k:test", "--outliers",
              str(tmp_path / "runs" / "sets" / "inverted"), "--max-images", "20", "--num-importance-samples", "2",
              "--output", str(tmp_path / "cli.json")])
    assert json.loads((tmp_path / "cli.json").read_text())["anomaly"] == results[0]["anomaly"]["inverted"]
