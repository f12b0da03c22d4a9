"""Two-stage generation and the trainer's token-prior path."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from hf_vae import PixelCNNPriorConfig, PixelCNNPriorModel, TransformerPriorConfig, TransformerPriorModel, VQVAEConfig, VQVAEModel
from hf_vae.generation import generate_images, load_vqvae
from hf_vae.training import Recipe, train

REPO = Path(__file__).resolve().parents[1]


def _vqvae():
    torch.manual_seed(0)
    return VQVAEModel(VQVAEConfig(image_size=8, num_channels=1, hidden_channels=[8], codebook_size=16, embedding_dim=4)).eval()


def _code_prior(cls=TransformerPriorModel, config_cls=TransformerPriorConfig, **kw):
    torch.manual_seed(0)
    extra = dict(num_layers=1, num_heads=2, hidden_size=16) if cls is TransformerPriorModel else dict(hidden_size=8, num_layers=2, output_channels=8)
    return cls(config_cls(vocab_size=16, grid_size=4, token_source="vqvae_codes", **extra, **kw)).eval()


def test_two_stage_generation_decodes_the_prior_samples(tmp_path):
    vqvae, prior = _vqvae(), _code_prior()
    images = generate_images(prior, 3, vqvae=vqvae, generator=torch.Generator().manual_seed(0), progress=False)
    tokens = prior.sample(3, generator=torch.Generator().manual_seed(0), progress=False)
    assert images.shape == (3, 1, 8, 8)
    assert torch.equal(images, vqvae.decode_from_indices(tokens))
    # With no VQ-VAE given, the one recorded in the prior's config is loaded (path + revision).
    vqvae.save_pretrained(tmp_path / "vq")
    prior.config.vqvae_name_or_path = str(tmp_path / "vq")
    again = generate_images(prior, 3, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(images, again)


def test_two_stage_rejects_a_mismatched_vqvae():
    prior = _code_prior(PixelCNNPriorModel, PixelCNNPriorConfig)
    torch.manual_seed(0)
    other = VQVAEModel(VQVAEConfig(image_size=8, num_channels=1, hidden_channels=[8], codebook_size=32, embedding_dim=4))
    with pytest.raises(ValueError, match="vocab_size"):
        generate_images(prior, 1, vqvae=other, progress=False)
    with pytest.raises(ValueError, match="vqvae_name_or_path"):
        load_vqvae(prior)


def test_pixel_prior_generates_binary_images():
    torch.manual_seed(0)
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(vocab_size=2, grid_size=4, token_source="pixels",
                                                   hidden_size=8, num_layers=2, output_channels=8)).eval()
    images = generate_images(prior, 2, generator=torch.Generator().manual_seed(0), progress=False)
    assert images.shape == (2, 1, 4, 4) and set(images.unique().tolist()) <= {0.0, 1.0}


def test_pixelcnn_recipe_trains_on_binarized_pixels(tmp_path):
    recipe = Recipe.from_yaml(REPO / "hf_vae" / "recipes" / "pixelcnn_digits_tiny.yaml",
                              [f"training.output_dir={tmp_path / 'run'}", "training.max_steps=30", "training.progress=false",
                               "evaluation.num_samples=4"])
    run_dir = train(recipe)
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert test["nll"]["estimator"] == "exact" and test["bits_per_dim"]["unit"] == "bits/dim"
    assert test["nll"]["value"] < 64 * 0.6931  # better than a fair coin per pixel
    assert (run_dir / "samples.png").exists()
    assert isinstance(AutoModel.from_pretrained(run_dir), PixelCNNPriorModel)


def test_code_prior_recipe_encodes_the_dataset_once(tmp_path):
    vqvae = _vqvae()
    vqvae.save_pretrained(tmp_path / "vq")
    recipe = Recipe.from_dict({
        "model": {"family": "transformer_prior", "config": {
            "vocab_size": 16, "grid_size": 4, "token_source": "vqvae_codes", "vqvae_name_or_path": str(tmp_path / "vq"),
            "num_layers": 1, "num_heads": 2, "hidden_size": 16}},
        "data": {"dataset": "digits"},
        "training": {"output_dir": str(tmp_path / "prior"), "max_steps": 10, "batch_size": 32, "eval_every": 10,
                     "save_every": 10, "log_every": 5, "progress": False},
        "evaluation": {"num_samples": 4},
    })
    run_dir = train(recipe)
    cached = torch.load(run_dir / "codes.pt", weights_only=True)
    assert cached["splits"]["test"]["indices"].shape == (300, 4, 4)
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["bits_per_token"]["value"] > 0
    # A grid that does not match the codes fails before training.
    bad = Recipe.from_dict({**recipe.to_dict(), "training": {**recipe.to_dict()["training"], "output_dir": str(tmp_path / "bad")},
                            "model": {"family": "transformer_prior", "config": {**recipe.model.config, "grid_size": 5}}})
    with pytest.raises(ValueError, match="grid_size"):
        train(bad)


def test_code_cache_is_rebuilt_when_the_vqvae_weights_change(tmp_path):
    from hf_vae.training import build_model, load_data, prepare_prior_data

    vqvae = _vqvae()
    vqvae.save_pretrained(tmp_path / "vq")
    recipe = Recipe.from_dict({
        "model": {"family": "pixelcnn_prior", "config": {
            "vocab_size": 16, "grid_size": 4, "token_source": "vqvae_codes", "vqvae_name_or_path": str(tmp_path / "vq"),
            "hidden_size": 8, "num_layers": 2, "output_channels": 8}},
        "data": {"dataset": "digits"},
    })
    splits, model = load_data(recipe), build_model(recipe)
    first = prepare_prior_data(model, splits, recipe, tmp_path / "run")["test"]["indices"]
    torch.manual_seed(5)  # retrain in the same folder: other weights, same path
    VQVAEModel(vqvae.config).save_pretrained(tmp_path / "vq")
    second = prepare_prior_data(model, splits, recipe, tmp_path / "run")["test"]["indices"]
    assert not torch.equal(first, second)
    assert torch.equal(second, prepare_prior_data(model, splits, recipe, tmp_path / "run")["test"]["indices"])


def test_cli_samples_images_from_a_pixel_prior(tmp_path):
    """`hf-vae sample` on a prior writes images (the token grids mapped to pixels), one per sample."""
    from PIL import Image

    from hf_vae.cli import main
    from hf_vae.images import image_grid

    torch.manual_seed(0)
    prior = PixelCNNPriorModel(PixelCNNPriorConfig(vocab_size=2, grid_size=4, token_source="pixels", num_classes=2,
                                                   hidden_size=8, num_layers=2, output_channels=8)).eval()
    prior.save_pretrained(tmp_path / "prior")
    main(["sample", str(tmp_path / "prior"), "--num-samples", "4", "--labels", "0,1", "--output", str(tmp_path / "s.png")])
    # The labels cycle to fill the samples, one grid column per label.
    expected = generate_images(prior, 4, labels=torch.tensor([0, 1, 0, 1]), generator=torch.Generator().manual_seed(0),
                               progress=False)
    image_grid(expected, nrow=2, scale=2).save(tmp_path / "expected.png")
    assert Image.open(tmp_path / "s.png").tobytes() == Image.open(tmp_path / "expected.png").tobytes()
