"""natural32: 32x32 RGB patches of the photographs shipped inside scikit-image, scikit-learn and matplotlib,
split by source photograph, written once in the Hub layout with the photographs and licences in its card."""

from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml

from hf_vae import data as hd
from hf_vae.data.natural32 import PHOTOS, cut_patches, photo_pixels

from .model_tester import import_benchmark

# the models the benchmark smoke test runs
SMOKE_MODELS = ("vae", "pixelcnn", "vq_prior")


@pytest.fixture(scope="module")
def natural32(tmp_path_factory):
    root = tmp_path_factory.mktemp("natural32_cache")
    return root, hd.materialize_embedded_dataset("natural32", root)


def test_patches_are_a_grid_without_constant_ones():
    pixels = np.zeros((70, 100, 3), np.uint8)
    pixels[:32, 32:64] = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)  # the one patch with content
    pixels[32:64, 64:96] = 200  # constant: dropped
    patches = cut_patches(pixels)
    assert patches.shape == (1, 32, 32, 3)  # 2 x 3 grid, 5 constant ones dropped; the remainders are never cut
    assert np.array_equal(patches[0], pixels[:32, 32:64])


def test_split_by_source_photograph_in_hub_layout(natural32):
    root, folder = natural32
    loaded = datasets.load_dataset(str(folder), cache_dir=str(root / "arrow"))
    assert {split: len(ds) for split, ds in loaded.items()} == {"train": 3679, "test": 646}
    photos = {split: Counter(ds["photo"]) for split, ds in loaded.items()}
    assert not set(photos["train"]) & set(photos["test"])  # no photograph in both splits
    assert set(photos["test"]) == {p.name for p in PHOTOS if p.split == "test"}
    assert set(photos["train"]) == {p.name for p in PHOTOS if p.split == "train"}
    image = loaded["test"][0]["image"]
    assert (image.mode, image.size) == ("RGB", (32, 32))
    # the first test patch is the top-left corner of the first test photograph, byte for byte
    first = next(p for p in PHOTOS if p.split == "test")
    assert loaded["test"][0]["photo"] == first.name
    assert np.array_equal(np.asarray(image), photo_pixels(first)[:32, :32])
    # "photo" is a string column: the loaders do not take it for a class label
    assert hd.detect_columns(loaded["train"].features) == ("image", None)


def test_card_lists_every_photograph_and_its_license(natural32):
    _, folder = natural32
    text = (folder / "README.md").read_text()
    card = yaml.safe_load(text.split("---")[1])
    assert card["task_categories"] == ["unconditional-image-generation"]
    for photo in PHOTOS:
        assert f"| `{photo.name}` | {photo.split} | {photo.description} | {photo.license} |" in text


def test_loads_by_name_through_the_data_path(natural32):
    root, _ = natural32
    dataset = hd.load_image_dataset("natural32", split="test", cache_dir=root)
    assert len(dataset) == 646


@pytest.fixture(scope="module")
def codecs():
    return import_benchmark("natural32_codecs")


def test_codec_baseline_tiles_exactly_and_counts_every_byte(codecs, natural32):
    assert codecs.mosaic_shape(646) == (19, 34) and codecs.mosaic_shape(7) == (1, 7)
    patches = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    mosaic = codecs.tile(patches)
    assert mosaic.shape == (64, 96, 3) and np.array_equal(mosaic[32:, 64:], patches[5])
    results = codecs.codec_bits_per_dim(patches)
    # uniform noise is incompressible: ~8 bits/dim plus the container, and per patch pays 6 headers
    for figures in results.values():
        assert 8.0 <= figures["mosaic"] < 8.3 and figures["per_patch"] > figures["mosaic"]
    root, _ = natural32
    flat = np.full((4, 32, 32, 3), 128, np.uint8)
    assert all(r["mosaic"] < 0.1 for r in codecs.codec_bits_per_dim(flat).values())
    assert codecs.main(["--output", str(root / "codecs.md")]).keys() == codecs.CODECS.keys()
    assert "mosaic 19 x 34 patches" in (root / "codecs.md").read_text()


@pytest.mark.filterwarnings("ignore:posterior collapse")  # 3 steps of a 4-latent model
def test_vae_natural32_recipe_trains_with_the_logistic_mixture(natural32, tmp_path, monkeypatch):
    import json

    from hf_vae.recipes import recipe_info
    from hf_vae.training import Recipe, train

    root, _ = natural32
    monkeypatch.setenv("HF_VAE_CACHE", str(root))  # the natural32 folder this module already wrote
    recipe = Recipe.from_yaml(recipe_info("vae_natural32").path, [
        "model.config.hidden_channels=[8, 16]", "model.config.num_res_blocks=0", "model.config.latent_dim=4",
        "model.config.num_mixtures=2", "data.validation_size=16", "data.num_workers=0", "training.max_steps=3",
        "training.batch_size=8", "training.eval_every=3", "training.save_every=3", "training.log_every=1",
        "training.warmup_steps=0", "training.mixed_precision='no'", "training.progress=false",
        "training.early_stopping_patience=null", f"training.output_dir={tmp_path / 'run'}", "training.trackers=[jsonl]",
        "evaluation.num_importance_samples=2", "evaluation.max_examples=16", "evaluation.batch_size=8",
        "evaluation.num_samples=4",
    ])
    assert recipe.model.config["likelihood"] == "discretized_logistic_mixture"
    train(recipe)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    bits = metrics["test"]["bits_per_dim"]
    # a 3-step model spends about 8 bits per subpixel; the card states the 8-bit convention
    assert 4 < bits["value"] < 12 and "8-bit convention" in bits["description"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["num_channels"], config["num_mixtures"]) == (3, 2)


TINY_RUN = ["data.validation_size=16", "data.num_workers=0", "training.max_steps=3", "training.batch_size=8",
            "training.eval_every=3", "training.save_every=3", "training.log_every=1", "training.warmup_steps=0",
            "training.mixed_precision='no'", "training.progress=false", "training.early_stopping_patience=null",
            "training.trackers=[jsonl]", "evaluation.max_examples=16", "evaluation.batch_size=8", "evaluation.num_samples=4"]


def test_vqvae_and_transformer_prior_recipes_train_sample_and_bound_natural32(natural32, tmp_path, monkeypatch):
    """vqvae_natural32 -> transformer_prior_vqvae_natural32 on its codes, a few steps each: two-stage RGB samples,
    and evaluate() on the test images gives the VQ-VAE + prior bound, -log p(codes) - log p(x|z_q), in bits/dim."""
    import json

    import torch
    from transformers import AutoModel

    from hf_vae.evaluation import evaluate
    from hf_vae.generation import generate_images
    from hf_vae.recipes import recipe_info
    from hf_vae.training import Recipe, train

    root, _ = natural32
    monkeypatch.setenv("HF_VAE_CACHE", str(root))
    vq_dir, prior_dir = tmp_path / "vqvae", tmp_path / "prior"
    vq_recipe = Recipe.from_yaml(recipe_info("vqvae_natural32").path, TINY_RUN + [
        "model.config.hidden_channels=[8, 16]", "model.config.num_res_blocks=0", "model.config.codebook_size=16",
        "model.config.embedding_dim=4", "model.config.num_mixtures=2", f"training.output_dir={vq_dir}"])
    assert (vq_recipe.model.config["likelihood"], vq_recipe.model.config["num_channels"]) == ("discretized_logistic_mixture", 3)
    train(vq_recipe)
    vq_metrics = json.loads((vq_dir / "metrics.json").read_text())["test"]
    assert 0 < vq_metrics["psnr"]["value"] < 100 and -1 < vq_metrics["ssim"]["value"] <= 1
    assert "8-bit convention" in vq_metrics["reconstruction_bits_per_dim"]["description"]

    prior_recipe = Recipe.from_yaml(recipe_info("transformer_prior_vqvae_natural32").path, TINY_RUN + [
        f"model.config.vqvae_name_or_path={vq_dir}", "model.config.vocab_size=16", "model.config.num_layers=1",
        "model.config.num_heads=2", "model.config.hidden_size=16", f"training.output_dir={prior_dir}"])
    assert recipe_info("transformer_prior_vqvae_natural32").prerequisite_command.startswith("hf-vae train vqvae_natural32 ")
    train(prior_recipe)
    prior, vqvae = AutoModel.from_pretrained(prior_dir).eval(), AutoModel.from_pretrained(vq_dir).eval()

    samples = generate_images(prior, 3, generator=torch.Generator().manual_seed(0), progress=False)
    assert samples.shape == (3, 3, 32, 32) and 0 <= samples.min() <= samples.max() <= 1
    assert (prior_dir / "samples.png").exists()

    from hf_vae import data as hd

    test = hd.load_split("natural32", "test", cache_dir=root)
    metrics = evaluate(prior, test, max_examples=12, batch_size=5, progress=False)  # the VQ-VAE its config names
    pixels = torch.stack([test[i]["pixel_values"] for i in range(12)])
    with torch.no_grad():
        codes = -prior.log_likelihood(vqvae.encode_to_indices(pixels))
        reconstruction = vqvae.score(pixels).score
    assert metrics["nll"].value == pytest.approx(codes.mean().item(), rel=1e-5)
    assert metrics["reconstruction_loss"].value == pytest.approx(reconstruction.mean().item(), rel=1e-5)
    bound = (codes + reconstruction).mean().item()
    assert metrics["nll_bound"].value == pytest.approx(bound, rel=1e-5)
    assert metrics["bits_per_dim"].value == pytest.approx(bound / (3 * 32 * 32 * np.log(2)), rel=1e-5)
    assert metrics["code_bits_per_pixel"].value == pytest.approx(codes.mean().item() / (32 * 32 * np.log(2)), rel=1e-5)
    assert "8-bit convention" in metrics["bits_per_dim"].description and "bound" in metrics["bits_per_dim"].estimator
    assert metrics["bits_per_dim"].value > metrics["reconstruction_bits_per_dim"].value  # the codes cost bits too

    # the pipelines on the colour pair: RGB pictures in and out
    from transformers import pipeline

    from hf_vae.images import to_pil

    generated = pipeline("unconditional-image-generation", model=str(prior_dir))(num_samples=2, seed=0)
    assert [(image.mode, image.size) for image in generated] == [("RGB", (32, 32))] * 2
    reconstruction = pipeline("image-reconstruction", model=str(vq_dir))(to_pil(pixels[:1])[0])
    assert (reconstruction.mode, reconstruction.size) == ("RGB", (32, 32))

    with pytest.raises(ValueError, match="vocab_size"):  # a VQ-VAE whose codebook is not the prior's vocabulary
        from hf_vae import VQVAEConfig, VQVAEModel

        other = VQVAEModel(VQVAEConfig(image_size=32, num_channels=3, hidden_channels=[8, 16], num_res_blocks=0,
                                       codebook_size=32, embedding_dim=4))
        evaluate(prior, test, vqvae=other, max_examples=4, progress=False)


def test_benchmark_smoke_run_writes_every_figure_and_grid(natural32, codecs, tmp_path, monkeypatch):
    """`benchmarks/natural32.py --smoke`: tiny models, a few steps each, through the same code as the real run."""
    root, _ = natural32
    monkeypatch.setenv("HF_VAE_CACHE", str(root))
    benchmark = import_benchmark("natural32")
    results_md = tmp_path / "results" / "natural32.md"
    out = benchmark.main(["--smoke", "--models", *SMOKE_MODELS, "--output_dir", str(tmp_path / "runs"), "--results", str(results_md)])
    assert list(out["models"]) == list(SMOKE_MODELS)
    text = results_md.read_text()
    assert "SMOKE RUN" in text and "Best lossless codec: WebP lossless" in text
    for model, result in out["models"].items():
        assert 0 < result["bits_per_dim"] < 16
        assert all((tmp_path / "results" / "natural32" / Path(p).name).is_file() for p in result["pictures"])
        assert f"**{result['bits_per_dim']:.3f}**" in text
    vq = out["models"]["vq_prior"]
    # the bound is its two terms; the code rate per pixel is 3x the codes' bits per dimension (3 channels)
    assert vq["bits_per_dim"] == pytest.approx(vq["reconstruction_bits_per_dim"] + vq["code_bits_per_dim"], rel=1e-6)
    assert vq["code_bits_per_pixel"] == pytest.approx(3 * vq["code_bits_per_dim"], rel=1e-6)
    assert out["models"]["vae"]["estimator"] == "IWAE, k=2" and out["models"]["vae"]["steps"] == 2
    pixelcnn = out["models"]["pixelcnn"]  # the colour gated PixelCNN of pixelcnn_natural32.yaml: exact
    assert pixelcnn["estimator"] == "exact" and (pixelcnn["model"]["num_channels"], pixelcnn["model"]["vocab_size"]) == (3, 256)
    assert "Gated PixelCNN at least 15% below it" in text
    assert "| vqvae | `vqvae_natural32.yaml` | 2 (2) |" in text
