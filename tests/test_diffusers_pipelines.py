"""The diffusers pipelines as diffusers users call them (DDPMPipeline's argument names, a generator per
image, `latents=`, `output_type="latent"`), and diffusers imported only when used: `import hf_vae` leaves
it alone, and `DiffusionPipeline.from_pretrained` still finds hf_vae's pipelines in either import order."""

from __future__ import annotations

import inspect

import pytest
import torch
from diffusers import DDPMPipeline

from hf_vae import CVAEConfig, CVAEModel, PixelCNNPriorConfig, PixelCNNPriorModel, TransformerPriorConfig, TransformerPriorModel
from hf_vae import VAEConfig, VAEModel, VQVAEConfig, VQVAEModel
from hf_vae.pipelines import VAEGenerationPipeline, VQGenerationPipeline

from .model_tester import run_python

IMAGE = dict(image_size=8, num_channels=1, hidden_channels=[8], num_res_blocks=0)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def generators(*seeds: int) -> list[torch.Generator]:
    return [seeded(seed) for seed in seeds]


def tiny(cls, config_cls, **kwargs):
    torch.manual_seed(0)
    return cls(config_cls(**kwargs)).eval()


@pytest.fixture(scope="module")
def models():
    return {
        "vae": tiny(VAEModel, VAEConfig, latent_dim=4, **IMAGE),
        "cvae": tiny(CVAEModel, CVAEConfig, latent_dim=4, num_classes=3, label_embedding_dim=4, label_dropout=0.2, **IMAGE),
        "vqvae": tiny(VQVAEModel, VQVAEConfig, codebook_size=8, embedding_dim=4, **IMAGE),
        "code_prior": tiny(TransformerPriorModel, TransformerPriorConfig, vocab_size=8, grid_size=4, num_layers=1,
                           num_heads=2, hidden_size=8, token_source="vqvae_codes"),
        "pixel_prior": tiny(PixelCNNPriorModel, PixelCNNPriorConfig, vocab_size=2, grid_size=4, token_source="pixels",
                            hidden_size=4, num_layers=2, output_channels=4, num_classes=2, label_dropout=0.2),
    }


@pytest.fixture(scope="module")
def pipes(models):
    vq = VQGenerationPipeline(vqvae=models["vqvae"], prior=models["code_prior"])
    pixels = VQGenerationPipeline(vqvae=None, prior=models["pixel_prior"])
    for pipe in (vq, pixels):
        pipe.set_progress_bar_config(disable=True)
    return {"vae": VAEGenerationPipeline(vae=models["vae"]), "cvae": VAEGenerationPipeline(vae=models["cvae"]),
            "vq": vq, "pixels": pixels}


# --------------------------------------------------------------------------------------------------
# DDPMPipeline's argument names
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline_class", [VAEGenerationPipeline, VQGenerationPipeline])
def test_call_takes_ddpm_argument_names_in_ddpm_order(pipeline_class):
    ours = inspect.signature(pipeline_class.__call__).parameters
    ddpm = inspect.signature(DDPMPipeline.__call__).parameters
    shared = [name for name in ddpm if name != "num_inference_steps"]  # no denoising steps here
    assert shared == ["self", "batch_size", "generator", "output_type", "return_dict"]
    assert [name for name in ours if name in shared] == shared
    assert list(ours)[:3] == ["self", "batch_size", "generator"]  # pipe(4, generator) as with DDPMPipeline
    for name in ("output_type", "return_dict"):
        assert ours[name].default == ddpm[name].default
    assert ours["num_samples"].kind is inspect.Parameter.KEYWORD_ONLY and ours["num_samples"].default is None


def test_batch_size_and_its_alias_num_samples(models, pipes):
    pipe = pipes["vae"]
    expected = models["vae"].sample(3, generator=seeded(0))
    for kwargs in ({"batch_size": 3}, {"num_samples": 3}, {"batch_size": 3, "num_samples": 3}):
        assert torch.equal(pipe(generator=seeded(0), output_type="pt", **kwargs).images, expected)
    assert torch.equal(pipe(3, seeded(0), output_type="pt").images, expected)  # positional, as DDPMPipeline
    assert len(pipe().images) == 1  # DDPMPipeline's default: one image
    with pytest.raises(ValueError, match="`num_samples` must be None or equal `batch_size`"):
        pipe(batch_size=2, num_samples=3)
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1"):
        pipe(batch_size=0)
    codes = models["code_prior"].sample(2, generator=seeded(4), progress=False)
    assert torch.equal(pipes["vq"](num_samples=2, generator=seeded(4), output_type="latent").images, codes)


# --------------------------------------------------------------------------------------------------
# A list of generators: one per image
# --------------------------------------------------------------------------------------------------


def test_vae_generator_list_draws_image_i_with_generator_i(models, pipes):
    pipe, labels = pipes["cvae"], [0, 2, 1]
    latents = pipe(generator=generators(5, 6, 7), labels=labels, output_type="latent").images  # batch_size from the list
    alone = [pipe(generator=seeded(seed), labels=label, output_type="latent").images for seed, label in zip((5, 6, 7), labels)]
    assert latents.shape == (3, 4) and torch.equal(latents, torch.cat(alone))
    images = pipe(batch_size=3, generator=generators(5, 6, 7), labels=labels, guidance_scale=2.0, output_type="pt").images
    decoded = models["cvae"].decode(latents, torch.tensor(labels), guidance_scale=2.0).sample
    assert torch.equal(images, decoded)
    for i, (seed, label) in enumerate(zip((5, 6, 7), labels)):  # one decoder batch vs one image each
        single = pipe(generator=seeded(seed), labels=label, guidance_scale=2.0, output_type="pt").images
        assert torch.allclose(images[i : i + 1], single, atol=1e-6)
    assert not torch.equal(latents[0], latents[1])  # each generator its own draws


@pytest.mark.parametrize("bad", [generators(0, 1), generators(0, 1, 2, 3), [seeded(0), 1, seeded(2)], []])
def test_generator_list_must_hold_one_generator_per_image(pipes, bad):
    for pipe in (pipes["vae"], pipes["vq"]):
        with pytest.raises(ValueError, match=r"`generator` must be a torch.Generator or a list of 3 torch.Generators"):
            pipe(batch_size=3, generator=bad)
    with pytest.raises(ValueError, match="`generator` must be a torch.Generator or None"):
        pipes["vae"](generator=0)


def test_prior_generator_list_samples_one_image_per_generator(models, pipes):
    prior = models["code_prior"]
    tokens = pipes["vq"](batch_size=3, generator=generators(1, 2, 3), temperature=0.9, top_k=5, output_type="latent").images
    alone = [prior.sample(1, generator=seeded(seed), temperature=0.9, top_k=5, progress=False) for seed in (1, 2, 3)]
    assert tokens.dtype == torch.long and torch.equal(tokens, torch.cat(alone))
    images = pipes["vq"](generator=generators(1, 2, 3), temperature=0.9, top_k=5, output_type="pt").images
    assert torch.equal(images, models["vqvae"].decode_from_indices(tokens))

    pixel_prior, labels = models["pixel_prior"], [1, 0]
    grids = pipes["pixels"](generator=generators(8, 9), labels=labels, guidance_scale=1.5, output_type="latent").images
    alone = [pixel_prior.sample(1, generator=seeded(seed), labels=[label], guidance_scale=1.5, progress=False)
             for seed, label in zip((8, 9), labels)]
    assert torch.equal(grids, torch.cat(alone))
    pixels = pipes["pixels"](generator=generators(8, 9), labels=labels, guidance_scale=1.5, output_type="pt").images
    assert torch.equal(pixels, grids.unsqueeze(1).float())  # two levels: token t is pixel t


# --------------------------------------------------------------------------------------------------
# latents= and output_type="latent"
# --------------------------------------------------------------------------------------------------


def test_vae_latent_output_and_latents_round_trip(models, pipes):
    pipe, vae = pipes["vae"], models["vae"]
    z = pipe(batch_size=3, generator=seeded(2), output_type="latent").images
    assert torch.equal(z, torch.randn((3, 4), generator=seeded(2)))  # z ~ N(0, I)
    cooled = pipe(batch_size=3, generator=seeded(2), temperature=0.5, output_type="latent").images
    assert torch.equal(cooled, 0.5 * z)  # z ~ N(0, temperature^2 I)
    images = pipe(latents=z, output_type="pt").images  # batch_size from the latents
    assert torch.equal(images, pipe(batch_size=3, generator=seeded(2), output_type="pt").images)
    assert torch.equal(images, vae.decode(z).sample)
    (as_tuple,) = pipe(latents=z, output_type="latent", return_dict=False)
    assert torch.equal(as_tuple, z)
    cases = [
        (dict(latents=torch.zeros(3, 5)), r"`latents` must be a tensor of shape \(batch, 4\), got \(3, 5\)"),
        (dict(latents=torch.zeros(3, 4, dtype=torch.long)), "`latents` must be a floating-point tensor"),
        (dict(latents=torch.full((1, 4), float("nan"))), "`latents` must be finite"),
        (dict(latents=z, batch_size=2), "`latents` must have batch_size=2 rows, got 3"),
        (dict(latents=z, generator=seeded(0)), "`generator` must be None when `latents` are given"),
        (dict(latents=z, temperature=0.5), "`temperature` must be 1.0 when `latents` are given"),
        (dict(output_type="latents"), "`output_type` must be one of"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            pipe(**kwargs)


def test_cvae_latents_are_decoded_with_labels_and_guidance(models, pipes):
    z = torch.randn((2, 4), generator=seeded(3))
    images = pipes["cvae"](latents=z, labels=[2, 0], guidance_scale=1.5, output_type="pt").images
    assert torch.equal(images, models["cvae"].decode(z, torch.tensor([2, 0]), guidance_scale=1.5).sample)


def test_prior_latent_output_is_the_token_grid_and_latents_decode_it(models, pipes):
    pipe, prior, vqvae = pipes["vq"], models["code_prior"], models["vqvae"]
    tokens = pipe(batch_size=2, generator=seeded(1), output_type="latent").images
    assert tokens.shape == (2, 4, 4) and torch.equal(tokens, prior.sample(2, generator=seeded(1), progress=False))
    images = pipe(latents=tokens, output_type="pt").images
    assert torch.equal(images, vqvae.decode_from_indices(tokens))
    assert torch.equal(images, pipe(batch_size=2, generator=seeded(1), output_type="pt").images)
    np_images = pipe(latents=tokens, output_type="np").images
    assert np_images.shape == (2, 8, 8, 1)
    grid = torch.tensor([[[0, 1, 1, 0]] * 4])
    assert torch.equal(pipes["pixels"](latents=grid, output_type="pt").images, grid.unsqueeze(1).float())
    cases = [
        (dict(latents=torch.full((1, 4, 4), 8)), r"`latents` must hold token ids in \[0, 8\), got ids in \[8, 8\]"),
        (dict(latents=torch.zeros(1, 3, 3, dtype=torch.long)), r"`latents` must have shape \(batch, 4, 4\)"),
        (dict(latents=tokens.float()), "`latents` must be an integer tensor of token ids"),
        (dict(latents=tokens, top_k=3), "`top_k` must be None when `latents` are given"),
        (dict(latents=tokens, temperature=0.8), "`temperature` must be 1.0 when `latents` are given"),
        (dict(latents=tokens, generator=generators(0, 1)), "`generator` must be None when `latents` are given"),
        (dict(latents=tokens, batch_size=3), "`latents` must have batch_size=3 rows, got 2"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            pipe(**kwargs)
    with pytest.raises(ValueError, match="`labels` must be None when `latents` are given"):
        pipes["pixels"](latents=grid, labels=1)


# --------------------------------------------------------------------------------------------------
# diffusers imported only when used
# --------------------------------------------------------------------------------------------------


def test_import_hf_vae_does_not_import_diffusers_until_a_pipeline_is_used(tmp_path):
    result = run_python("""
        import json, sys, warnings
        warnings.simplefilter("error", UserWarning)  # a failed registration warns
        import hf_vae
        after_import = sorted(name for name in sys.modules if name.split(".")[0] == "diffusers")
        pipeline_class = hf_vae.pipelines.VAEGenerationPipeline  # first use imports diffusers
        import diffusers
        from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES
        print(json.dumps({"after_import": after_import, "registered": diffusers.VAEGenerationPipeline is pipeline_class,
                          "loadable": "VQVAEModel" in LOADABLE_CLASSES["hf_vae"]}))
    """, tmp_path)
    assert result == {"after_import": [], "registered": True, "loadable": True}


@pytest.mark.parametrize("first", ["hf_vae", "diffusers"])
def test_diffusion_pipeline_from_pretrained_finds_hf_vae_in_either_import_order(models, pipes, tmp_path, first):
    pipes["cvae"].save_pretrained(tmp_path / "cvae")
    imports = ["import hf_vae", "from diffusers import DiffusionPipeline"]
    result = run_python(f"""
        import importlib.util, json, torch
        {imports[0] if first == "hf_vae" else imports[1]}
        importlib.util.find_spec("diffusers.pipelines.pipeline_utils")  # a look-up must not spend the hook
        {imports[1] if first == "hf_vae" else imports[0]}
        pipe = DiffusionPipeline.from_pretrained("cvae")
        images = pipe(generator=[torch.Generator().manual_seed(s) for s in (0, 1)], labels=[2, 1], output_type="pt").images
        print(json.dumps({{"class": type(pipe).__name__, "vae": type(pipe.vae).__name__, "images": images.tolist()}}))
    """, tmp_path)
    assert result["class"] == "VAEGenerationPipeline" and result["vae"] == "CVAEModel"
    expected = pipes["cvae"](generator=generators(0, 1), labels=[2, 1], output_type="pt").images
    assert torch.equal(torch.tensor(result["images"]), expected)
