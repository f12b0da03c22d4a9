"""Issue #19, item 1: the `hf-vae` verbs on tiny saved models: score (table, CSV/JSON, AUROC), reconstruct,
interpolate, encode, sample --labels (cycled), recipes by name, env, and one `error:` line (exit 2) for
every verb a family cannot do."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from hf_vae import (
    CVAEConfig,
    CVAEModel,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    TransformerPriorConfig,
    TransformerPriorModel,
    VAEConfig,
    VAEModel,
    VQVAEConfig,
    VQVAEModel,
    set_label_names,
)
from hf_vae.anomaly import anomaly_detection
from hf_vae.cli import main
from hf_vae.generation import generate_images
from hf_vae.images import image_grid

IMAGE = dict(image_size=8, num_channels=1, hidden_channels=[8], num_res_blocks=0)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random models of every family saved in folders, and a folder of four 8x8 binary PNGs."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    VAEModel(VAEConfig(latent_dim=4, **IMAGE)).save_pretrained(root / "vae")
    cvae_config = CVAEConfig(latent_dim=4, num_classes=10, label_embedding_dim=4, **IMAGE)
    set_label_names(cvae_config, [str(d) for d in range(10)])
    CVAEModel(cvae_config).save_pretrained(root / "cvae")
    VQVAEModel(VQVAEConfig(codebook_size=16, embedding_dim=4, **IMAGE)).save_pretrained(root / "vqvae")
    PixelCNNPriorModel(PixelCNNPriorConfig(vocab_size=2, grid_size=8, token_source="pixels", hidden_size=4,
                                           num_layers=2, output_channels=4)).save_pretrained(root / "pixelcnn")
    TransformerPriorModel(TransformerPriorConfig(vocab_size=16, grid_size=4, hidden_size=8, num_layers=1, num_heads=2,
                                                 vqvae_name_or_path=str(root / "vqvae"))).save_pretrained(root / "prior")
    images = root / "images"
    images.mkdir()
    pixels = torch.rand((4, 8, 8), generator=seeded(1)).round()
    for i, image in enumerate(pixels):
        Image.fromarray((image.numpy() * 255).astype(np.uint8), mode="L").save(images / f"{i}.png")
    return root


def load(folder):
    from hf_vae.hub import load_model

    return load_model(str(folder)).eval()


def pixels(models) -> torch.Tensor:
    """The four PNGs as the processor reads them (sorted, 0/255 -> 0/1)."""
    files = sorted((models / "images").glob("*.png"))
    return torch.stack([torch.from_numpy(np.array(Image.open(f), dtype=np.float32) / 255)[None] for f in files])


def same_png(path, expected: Image.Image) -> bool:
    return Image.open(path).tobytes() == expected.tobytes() and Image.open(path).size == expected.size


# -- score -----------------------------------------------------------------------------------------------


def test_score_prints_and_writes_the_models_scores(models, tmp_path, capsys):
    main(["score", str(models / "vae"), str(models / "images"), "--num-importance-samples", "4",
          "--output", str(tmp_path / "s.csv")])
    out = capsys.readouterr().out
    assert "IWAE, k=4" in out and "0.png" in out and "bits_per_dim" in out
    expected = load(models / "vae").score(pixels(models), num_importance_samples=4, generator=seeded(0)).score
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["0.png", "1.png", "2.png", "3.png"]
    assert torch.allclose(torch.tensor([float(r["nll_nats"]) for r in rows]), expected)
    assert float(rows[0]["bits_per_dim"]) == pytest.approx(expected[0].item() / (64 * np.log(2)), rel=1e-5)

    main(["score", str(models / "pixelcnn"), "--dataset", "digits", "--max-images", "3", "--binarize", "static",
          "--output", str(tmp_path / "s.json")])
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["estimator"].startswith("exact") and len(written["images"]) == 3
    assert written["images"][0]["image"] == "digits:test[0]"


def test_score_reports_the_auroc_of_digits_against_inverted_digits(tmp_path, capsys):
    """A tiny VAE trained by recipe NAME on the digits tells test digits from inverted ones (AUROC ~1)."""
    from hf_vae import data

    run = tmp_path / "run"
    main(["train", "vae_digits_tiny", "--output_dir", str(run), "--set", "training.max_steps=40",
          "--set", "training.progress=false", "--set", "evaluation.num_importance_samples=2",
          "--set", "evaluation.num_samples=4"])
    test = data.load_tensors(data.load_split("digits", "test", image_size=8, num_channels=1))["pixel_values"][:40]
    inverted = tmp_path / "inverted"
    inverted.mkdir()
    for i, image in enumerate(test):
        Image.fromarray(np.round(255 * (1 - image[0].numpy())).astype(np.uint8), mode="L").save(inverted / f"{i:02d}.png")
    capsys.readouterr()
    main(["score", str(run), "--reference", "digits:test", "--outliers", str(inverted), "--max-images", "40",
          "--num-importance-samples", "8", "--output", str(tmp_path / "a.json")])
    out = capsys.readouterr().out
    written = json.loads((tmp_path / "a.json").read_text())
    report = written["anomaly"]
    assert report["auroc"] > 0.95 and report["num_reference"] == report["num_outliers"] == 40
    assert f"AUROC {report['auroc']:.4f}" in out and "suggested threshold" in out
    reference = [r["nll_nats"] for r in written["images"] if r["set"] == "reference"]
    outliers = [r["nll_nats"] for r in written["images"] if r["set"] == "outliers"]
    assert report == anomaly_detection(reference, outliers).to_dict()


# -- reconstruct, interpolate, encode -------------------------------------------------------------------


@pytest.mark.parametrize("family", ["vae", "vqvae"])
def test_reconstruct_puts_each_image_above_its_reconstruction(models, tmp_path, family):
    main(["reconstruct", str(models / family), str(models / "images"), "--per-row", "4", "--output", str(tmp_path / "r.png")])
    x = pixels(models)
    expected = image_grid(torch.cat([x, load(models / family).reconstruct(x)]), nrow=4, scale=2)
    assert same_png(tmp_path / "r.png", expected)


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolate_writes_the_strip_between_two_images(models, tmp_path, method):
    files = sorted((models / "images").glob("*.png"))
    main(["interpolate", str(models / "vae"), str(files[0]), str(files[1]), "--steps", "5", "--method", method,
          "--output", str(tmp_path / "i.png")])
    x = pixels(models)
    strip = load(models / "vae").interpolate(x[0], x[1], steps=5, method=method)
    assert same_png(tmp_path / "i.png", image_grid(strip, nrow=5, scale=2))


def test_interpolate_a_cvae_between_two_named_classes(models, tmp_path):
    files = sorted((models / "images").glob("*.png"))
    main(["interpolate", str(models / "cvae"), str(files[0]), str(files[1]), "--labels", "3", "8",
          "--output", str(tmp_path / "i.png")])
    x = pixels(models)
    strip = load(models / "cvae").interpolate(x[0], x[1], steps=8, label_a=3, label_b=8)
    assert same_png(tmp_path / "i.png", image_grid(strip, nrow=8, scale=2))


def test_encode_writes_posterior_means_or_code_ids(models, tmp_path):
    x = pixels(models)
    main(["encode", str(models / "vae"), str(models / "images"), "--output", str(tmp_path / "z.safetensors")])
    assert torch.equal(load_file(tmp_path / "z.safetensors")["posterior_mean"], load(models / "vae").encode(x).latent_dist.mean)
    with safe_open(tmp_path / "z.safetensors", "pt") as f:
        assert f.metadata()["model_type"] == "vae" and len(json.loads(f.metadata()["images"])) == 4

    main(["encode", str(models / "vqvae"), str(models / "images"), "--output", str(tmp_path / "c.safetensors")])
    assert torch.equal(load_file(tmp_path / "c.safetensors")["indices"], load(models / "vqvae").encode_to_indices(x))

    # A CVAE encodes with the dataset's own labels, which are saved beside the means.
    main(["encode", str(models / "cvae"), "--dataset", "digits", "--max-images", "5", "--output", str(tmp_path / "y.safetensors")])
    saved = load_file(tmp_path / "y.safetensors")
    assert saved["posterior_mean"].shape == (5, 4) and saved["labels"].shape == (5,)


# -- sample ----------------------------------------------------------------------------------------------


def test_sample_cycles_the_labels_to_fill_num_samples(models, tmp_path):
    main(["sample", str(models / "cvae"), "--num-samples", "7", "--labels", "0,1", "2", "--output", str(tmp_path / "s.png")])
    expected = load(models / "cvae").sample(7, labels=torch.tensor([0, 1, 2, 0, 1, 2, 0]), generator=seeded(0))
    assert same_png(tmp_path / "s.png", image_grid(expected, nrow=3, scale=2))  # one column per label


def test_sample_a_prior_over_codes_decodes_through_its_vqvae(models, tmp_path):
    main(["sample", str(models / "prior"), "--num-samples", "3", "--output", str(tmp_path / "s.png")])
    expected = generate_images(load(models / "prior"), 3, vqvae=load(models / "vqvae"), generator=seeded(0), progress=False)
    assert same_png(tmp_path / "s.png", image_grid(expected, scale=2))


# -- one error line for what a family cannot do ----------------------------------------------------------

NOT_APPLICABLE = [
    ("sample", "vae", ["--labels", "3"], "unconditional"),
    ("sample", "vqvae", [], "'sample' capability"),
    ("sample", "cvae", ["--num-samples", "2", "--labels", "0,1,2"], "at least the number of labels"),
    ("interpolate", "vqvae", ["IMG", "IMG"], "'interpolate' capability"),
    ("interpolate", "pixelcnn", ["IMG", "IMG"], "'interpolate' capability"),
    ("interpolate", "prior", ["IMG", "IMG"], "'interpolate' capability"),
    ("encode", "pixelcnn", ["IMG"], "'encode' capability"),
    ("encode", "prior", ["IMG"], "'encode' capability"),
    ("reconstruct", "pixelcnn", ["IMG"], "'reconstruct' capability"),
    ("reconstruct", "vae", [], "one of them"),
    ("reconstruct", "cvae", ["IMG"], "`--labels` must give the images' classes"),
    ("encode", "cvae", ["IMG"], "`--labels` must give the images' classes"),
    ("interpolate", "cvae", ["IMG", "IMG"], "`--labels` must give the classes of A and B"),
    ("reconstruct", "vae", ["IMG", "--per-row", "0"], "`--per-row` must be an int >= 1, got 0"),
    ("score", "vae", ["--reference", "digits"], "given together"),
    ("encode", "vae", ["IMG", "--output", "z.npy"], ".safetensors"),
]


@pytest.mark.parametrize("verb, family, extra, message", NOT_APPLICABLE)
def test_a_verb_that_does_not_apply_says_so_in_one_line(models, tmp_path, capsys, verb, family, extra, message):
    image = str(sorted((models / "images").glob("*.png"))[0])
    extra = [image if a == "IMG" else str(tmp_path / a) if a.endswith(".npy") else a for a in extra]
    with pytest.raises(SystemExit) as exit_info:
        main([verb, str(models / family), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err  # transformers' "Loading weights" bar may come first
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"hf-vae {verb}: error: ") and message in errors[0]
    assert "Traceback" not in err


# -- recipes, train by name, env -------------------------------------------------------------------------


def test_recipes_lists_the_shipped_recipes_and_the_priors_prerequisite(capsys):
    main(["recipes"])
    out = capsys.readouterr().out
    assert "vae_mnist5k" in out and "vqvae_digits_tiny" in out
    assert "make it first: hf-vae train vqvae_mnist5k --output_dir benchmarks/runs/vqvae_mnist5k/restarts_on" in out


def test_train_the_transformer_prior_without_its_vqvae_stops_early(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no benchmarks/runs/vqvae_mnist5k here
    with pytest.raises(SystemExit):
        main(["train", "transformer_prior_vqvae_mnist5k"])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'benchmarks/runs/vqvae_mnist5k/restarts_on' (no such folder)" in err
    assert "hf-vae train vqvae_mnist5k --output_dir benchmarks/runs/vqvae_mnist5k/restarts_on" in err
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_train_an_unknown_recipe_name_lists_the_shipped_ones(capsys):
    with pytest.raises(SystemExit):
        main(["train", "vae_mnsit5k"])
    err = capsys.readouterr().err
    assert "got 'vae_mnsit5k'" in err and "vae_mnist5k" in err


def test_env_reports_versions_and_devices(capsys):
    main(["env"])
    out = capsys.readouterr().out
    assert f"torch: {torch.__version__}" in out and "devices: cpu" in out and "torch threads:" in out
