"""Pipelines: the transformers `pipeline()` tasks and the diffusers `DiffusionPipeline`s, from a model
object, a local folder and a repo id on the local Hub (tests/hub_server.py), as remote code without
hf_vae, and their argument errors. Every number must equal the model method it wraps."""

from __future__ import annotations

import json
import uuid

import diffusers
import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from PIL import Image
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import hf_vae
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
)
from hf_vae.images import to_pil
from hf_vae.pipelines import TASKS, VAEGenerationPipeline, VQGenerationPipeline

from .hub_server import USER
from .model_tester import run_without_hf_vae

GEN, LATENTS, RECON, SCORE = "unconditional-image-generation", "image-to-latents", "image-reconstruction", "image-scoring"


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(cls, config_cls, **kwargs):
    torch.manual_seed(0)
    return cls(config_cls(**kwargs)).eval()


@pytest.fixture(scope="module")
def models():
    image = dict(image_size=8, num_channels=1, hidden_channels=[8], num_res_blocks=0)
    return {
        "vae": build(VAEModel, VAEConfig, latent_dim=4, **image),
        "cvae": build(CVAEModel, CVAEConfig, latent_dim=4, num_classes=3, label_embedding_dim=4, label_dropout=0.2, **image),
        "vqvae": build(VQVAEModel, VQVAEConfig, codebook_size=8, embedding_dim=4, **image),
        # over the VQ-VAE's 4 x 4 code grid
        "code_prior": build(TransformerPriorModel, TransformerPriorConfig, vocab_size=8, grid_size=4, num_layers=1, num_heads=2,
                            hidden_size=8, token_source="vqvae_codes"),
        # over binarized 4 x 4 pixels, class-conditional with label dropout (guidance)
        "pixel_prior": build(PixelCNNPriorModel, PixelCNNPriorConfig, vocab_size=2, grid_size=4, token_source="pixels",
                             hidden_size=4, num_layers=2, output_channels=4, num_classes=2, label_dropout=0.2),
    }


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory):
    """Each model saved to a folder (the prior over codes records the VQ-VAE's folder)."""
    root = tmp_path_factory.mktemp("saved")
    paths = {}
    for name, model in models.items():
        if name == "code_prior":
            model.config.vqvae_name_or_path = str(root / "vqvae")
        model.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths


def binary_images(count: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand((count, 1, size, size), generator=seeded(seed)).round()


# --------------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------------


def test_import_registers_the_tasks_and_hf_vae_with_diffusers():
    from diffusers.pipelines import pipeline_loading_utils

    assert set(TASKS) == {GEN, LATENTS, RECON, SCORE}
    assert set(TASKS) <= set(PIPELINE_REGISTRY.get_supported_tasks())
    assert "VAEModel" in pipeline_loading_utils.LOADABLE_CLASSES["hf_vae"]
    assert "VQVAEModel" in pipeline_loading_utils.ALL_IMPORTABLE_CLASSES
    assert diffusers.VAEGenerationPipeline is VAEGenerationPipeline
    hf_vae.pipelines.register_pipelines()  # idempotent
    assert PIPELINE_REGISTRY.check_task(GEN)[1]["impl"] is TASKS[GEN]


# --------------------------------------------------------------------------------------------------
# unconditional-image-generation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output_type", ["pil", "np", "pt"])
def test_generation_output_types(models, output_type):
    pipe = pipeline(GEN, model=models["vae"])
    images = pipe(num_samples=3, generator=seeded(), output_type=output_type)
    expected = models["vae"].sample(3, generator=seeded())
    if output_type == "pil":
        assert isinstance(images, list) and len(images) == 3
        assert all(isinstance(i, Image.Image) and i.size == (8, 8) and i.mode == "L" for i in images)
        assert [np.asarray(i).tolist() for i in images] == [np.asarray(i).tolist() for i in to_pil(expected)]
    elif output_type == "np":
        assert isinstance(images, np.ndarray) and images.shape == (3, 8, 8, 1) and images.dtype == np.float32
        assert 0.0 <= images.min() and images.max() <= 1.0
        np.testing.assert_array_equal(images, expected.permute(0, 2, 3, 1).numpy())
    else:
        assert isinstance(images, torch.Tensor) and images.shape == (3, 1, 8, 8)
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert torch.equal(images, expected)


def test_generation_is_reproducible_with_a_generator_or_a_seed(models):
    pipe = pipeline(GEN, model=models["vae"], output_type="pt")
    a = pipe(num_samples=2, generator=seeded(4))
    assert torch.equal(a, pipe(num_samples=2, seed=4))
    assert not torch.equal(a, pipe(num_samples=2, seed=5))
    assert torch.equal(pipe(2, seed=0, temperature=0.5), models["vae"].sample(2, generator=seeded(0), temperature=0.5))


def test_cvae_generation_with_labels_and_guidance(models):
    cvae = models["cvae"]
    pipe = pipeline(GEN, model=cvae, output_type="pt")
    per_image = pipe(labels=[0, 2, 1], guidance_scale=2.0, seed=0)  # num_samples = len(labels)
    expected = cvae.sample(3, labels=torch.tensor([0, 2, 1]), guidance_scale=2.0, generator=seeded(0))
    assert torch.equal(per_image, expected)
    one_class = pipe(num_samples=2, labels=1, seed=0)
    assert torch.equal(one_class, cvae.sample(2, labels=1, generator=seeded(0)))
    assert not torch.equal(one_class, pipe(num_samples=2, labels=1, guidance_scale=3.0, seed=0))
    assert pipe(num_samples=2, seed=0).shape == (2, 1, 8, 8)  # no labels: unconditional (null label)
    with pytest.raises(ValueError, match="labels"):
        pipe(num_samples=2, labels=7)  # out of range, reported by the model
    with pytest.raises(ValueError, match="guidance_scale"):
        pipe(num_samples=2, guidance_scale=2.0)  # guidance needs labels


def test_token_prior_generation_pixels_and_two_stage(models, saved):
    pixel_prior, code_prior, vqvae = models["pixel_prior"], models["code_prior"], models["vqvae"]
    pixels = pipeline(GEN, model=pixel_prior, output_type="pt")(num_samples=2, labels=[0, 1], guidance_scale=1.5, seed=0)
    tokens = pixel_prior.sample(2, labels=torch.tensor([0, 1]), guidance_scale=1.5, generator=seeded(0), progress=False)
    assert torch.equal(pixels, tokens.unsqueeze(1).float())

    two_stage = pipeline(GEN, model=code_prior, vqvae=vqvae, output_type="pt")
    images = two_stage(num_samples=2, seed=0, top_k=4)
    codes = code_prior.sample(2, top_k=4, generator=seeded(0), progress=False)
    assert torch.equal(images, vqvae.decode_from_indices(codes))
    # From folders: the prior's config names the VQ-VAE folder, loaded once when the pipeline is built.
    from_path = pipeline(GEN, model=saved["code_prior"], output_type="pt")
    assert from_path.vqvae.config.codebook_size == 8
    assert torch.equal(from_path(num_samples=2, seed=0, top_k=4), images)


def test_generation_rejects_bad_arguments(models):
    vae_pipe = pipeline(GEN, model=models["vae"])
    with pytest.raises(ValueError, match="`labels`"):
        vae_pipe(num_samples=2, labels=1)
    with pytest.raises(ValueError, match="`guidance_scale`"):
        vae_pipe(guidance_scale=2.0)
    with pytest.raises(ValueError, match="`top_k`"):
        vae_pipe(top_k=3)
    with pytest.raises(ValueError, match="`output_type`"):
        vae_pipe(output_type="latent")
    with pytest.raises(ValueError, match="`output_type`"):
        pipeline(GEN, model=models["vae"], output_type="jpeg")
    with pytest.raises(ValueError, match="`num_samples`"):
        vae_pipe(num_samples=0)
    with pytest.raises(ValueError, match="`seed`"):
        vae_pipe(seed=1, generator=seeded())
    with pytest.raises(ValueError, match="`labels`"):
        pipeline(GEN, model=models["pixel_prior"].__class__(PixelCNNPriorConfig(
            vocab_size=2, grid_size=4, token_source="pixels", hidden_size=4, num_layers=1, output_channels=4)))(labels=0)
    with pytest.raises(ValueError, match="`model`"):
        pipeline(GEN, model=models["vqvae"])  # a VQ-VAE has no prior
    with pytest.raises(ValueError, match="`vqvae`"):
        pipeline(GEN, model=models["vae"], vqvae=models["vqvae"])
    with pytest.raises(ValueError, match="vqvae_name_or_path"):
        pipeline(GEN, model=TransformerPriorModel(TransformerPriorConfig(
            vocab_size=8, grid_size=4, num_layers=1, num_heads=2, hidden_size=8, token_source="vqvae_codes")))


# --------------------------------------------------------------------------------------------------
# image-to-latents, image-reconstruction
# --------------------------------------------------------------------------------------------------


def test_image_to_latents(models):
    x = binary_images()
    vae_latents = pipeline(LATENTS, model=models["vae"])
    one = vae_latents(x[0])  # one image: compared with a batch of one (batched convs may differ in the last bit)
    first = models["vae"].encode(x[:1]).latent_dist
    assert set(one) == {"posterior_mean", "posterior_logvar"}
    assert torch.equal(one["posterior_mean"], first.mean[0]) and torch.equal(one["posterior_logvar"], first.logvar[0])
    posterior = models["vae"].encode(x).latent_dist
    batch = vae_latents(list(x))
    assert len(batch) == 3 and torch.equal(torch.stack([b["posterior_mean"] for b in batch]), posterior.mean)
    assert torch.equal(vae_latents(x)[2]["posterior_logvar"], posterior.logvar[2])  # a (B, C, H, W) tensor is a batch

    cvae_latents = pipeline(LATENTS, model=models["cvae"])
    assert torch.equal(cvae_latents(list(x), labels=[0, 1, 2])[1]["posterior_mean"],
                       models["cvae"].encode(x, torch.tensor([0, 1, 2])).latent_dist.mean[1])
    with pytest.raises(ValueError, match="labels"):
        cvae_latents(x[0])  # a CVAE encodes q(z|x, y)

    vq_latents = pipeline(LATENTS, model=models["vqvae"])
    indices = vq_latents(list(x))
    assert [tuple(i) for i in indices] == [("indices",)] * 3
    assert torch.equal(torch.stack([i["indices"] for i in indices]), models["vqvae"].encode_to_indices(x))
    with pytest.raises(ValueError, match="`labels`"):
        vq_latents(x[0], labels=1)
    with pytest.raises(ValueError, match="`model`"):
        pipeline(LATENTS, model=models["pixel_prior"])


def test_image_reconstruction_from_pil_numpy_and_tensors(models):
    x = binary_images()
    vae = models["vae"]
    recon = pipeline(RECON, model=vae)
    expected = vae.reconstruct(x)
    as_pil = recon(to_pil(x))  # a list of PIL images: a list of PIL images back
    assert [np.asarray(i).tolist() for i in as_pil] == [np.asarray(i).tolist() for i in to_pil(expected)]
    # (C, H, W) in, (C, H, W) out; one image is compared with a batch of one (batched convs may differ in the last bit)
    assert torch.equal(recon(x[0], output_type="pt"), vae.reconstruct(x[:1])[0])
    uint8 = (x[1, 0].numpy() * 255).astype(np.uint8)  # (H, W) uint8 array
    assert np.array_equal(recon(uint8, output_type="np"), vae.reconstruct(x[1:2])[0].permute(1, 2, 0).numpy())
    assert recon(x, output_type="np").shape == (3, 8, 8, 1)
    drawn = recon(x, sample_posterior=True, seed=3, output_type="pt")
    assert torch.equal(drawn, vae.reconstruct(x, generator=seeded(3), sample_posterior=True))

    cvae = models["cvae"]
    assert torch.equal(pipeline(RECON, model=cvae)(x, labels=2, output_type="pt"),
                       cvae.reconstruct(x, torch.full((3,), 2)))
    vq = models["vqvae"]
    assert torch.equal(pipeline(RECON, model=vq)(x, output_type="pt"), vq.reconstruct(x))
    with pytest.raises(ValueError, match="`sample_posterior`"):
        pipeline(RECON, model=vq)(x, sample_posterior=True)


def test_image_inputs_are_checked(models):
    recon = pipeline(RECON, model=models["vae"])
    with pytest.raises(ValueError, match="pixel_values"):
        recon(torch.rand(1, 1, 6, 6))  # wrong size: never resized
    with pytest.raises(ValueError, match="pixel_values"):
        recon(torch.full((1, 8, 8), 2.0))  # out of [0, 1]: never clamped
    with pytest.raises(ValueError, match="`images`"):
        recon([])
    with pytest.raises(ValueError, match="`images`"):
        recon([torch.rand(1, 8, 8), torch.rand(1, 4, 4)])
    with pytest.raises(ValueError, match="`images`"):
        recon({"not": "an image"})
    with pytest.raises(ValueError, match="`output_type`"):
        recon(torch.rand(1, 8, 8), output_type="bmp")


def test_image_file_paths_are_read(models, tmp_path):
    x = binary_images(1)
    to_pil(x)[0].save(tmp_path / "digit.png")
    recon = pipeline(RECON, model=models["vae"], output_type="pt")
    assert torch.equal(recon(str(tmp_path / "digit.png")), models["vae"].reconstruct(x)[0])


# --------------------------------------------------------------------------------------------------
# image-scoring
# --------------------------------------------------------------------------------------------------


def test_scoring_vae_is_the_importance_weighted_nll(models):
    x = binary_images()
    vae = models["vae"]
    scores = pipeline(SCORE, model=vae)(list(x), num_importance_samples=7, seed=2)
    expected = -vae.log_likelihood(x, num_samples=7, generator=seeded(2))
    assert [s["score"] for s in scores] == expected.tolist()
    assert {s["estimator"] for s in scores} == {"IWAE, k=7"} and {s["unit"] for s in scores} == {"nats"}
    assert scores[0]["bits_per_dim"] == pytest.approx(scores[0]["score"] / (64 * np.log(2)))
    elbo = pipeline(SCORE, model=vae)(x[0], num_importance_samples=1, seed=0)
    assert elbo["estimator"] == "ELBO, 1 sample"
    default = pipeline(SCORE, model=vae)(x[0], seed=0)
    assert default["estimator"] == "IWAE, k=100"

    cvae = models["cvae"]
    conditional = pipeline(SCORE, model=cvae)(x, labels=[0, 1, 2], num_importance_samples=3, seed=0)
    expected = -cvae.log_likelihood(x, torch.tensor([0, 1, 2]), num_samples=3, generator=seeded(0))
    assert [s["score"] for s in conditional] == expected.tolist()
    unconditional = pipeline(SCORE, model=cvae)(x, num_importance_samples=3, seed=0)  # -log p(x): null label
    assert [s["score"] for s in unconditional] == (-cvae.log_likelihood(x, None, num_samples=3, generator=seeded(0))).tolist()


def test_scoring_priors_and_vqvae(models):
    pixel_prior = models["pixel_prior"]
    grey = torch.rand((2, 1, 4, 4), generator=seeded(1))
    scores = pipeline(SCORE, model=pixel_prior)(grey, labels=1)
    tokens = grey.round().long()[:, 0]
    assert [s["score"] for s in scores] == (-pixel_prior.log_likelihood(tokens, torch.tensor([1, 1]))).tolist()
    assert scores[0]["estimator"] == "exact, image quantized to 2 levels"
    binary = grey.round()
    assert pipeline(SCORE, model=pixel_prior)(binary, labels=1, quantize=False)[0]["score"] == scores[0]["score"]
    with pytest.raises(ValueError, match="pixel_values"):
        pipeline(SCORE, model=pixel_prior)(grey, quantize=False)  # off the 2-level grid: never rounded silently
    with pytest.raises(ValueError, match="`num_importance_samples`"):
        pipeline(SCORE, model=pixel_prior)(grey, num_importance_samples=3)

    x = binary_images()
    code_prior, vqvae = models["code_prior"], models["vqvae"]
    code_scores = pipeline(SCORE, model=code_prior, vqvae=vqvae)(x)
    expected = -code_prior.log_likelihood(vqvae.encode_to_indices(x))
    assert [s["score"] for s in code_scores] == expected.tolist()
    assert code_scores[0]["bits_per_dim"] is None and "code grid" in code_scores[0]["estimator"]

    vq_scores = pipeline(SCORE, model=vqvae)(list(x))
    for i, s in enumerate(vq_scores):
        assert s["score"] == vqvae(x[i : i + 1]).reconstruction_loss.item()
        assert "reconstruction" in s["estimator"]
    with pytest.raises(ValueError, match="`seed`"):
        pipeline(SCORE, model=vqvae)(x, seed=0)
    with pytest.raises(ValueError, match="`quantize`"):
        pipeline(SCORE, model=vqvae)(x, quantize=True)


def test_scoring_does_not_change_a_training_mode_vqvae(models):
    vqvae = VQVAEModel(models["vqvae"].config)
    vqvae.load_state_dict(models["vqvae"].state_dict())
    vqvae.train()
    before = {k: v.clone() for k, v in vqvae.state_dict().items()}
    pipeline(SCORE, model=vqvae)(binary_images())
    assert not vqvae.training  # pipelines run the model in eval mode
    assert all(torch.equal(before[k], v) for k, v in vqvae.state_dict().items())


# --------------------------------------------------------------------------------------------------
# From a local folder, and saved pipelines (custom code) with and without hf_vae
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vae", "cvae", "vqvae", "pixel_prior", "code_prior"])
def test_every_task_from_a_local_folder_matches_the_model_object(models, saved, name):
    model, path = models[name], saved[name]
    x = binary_images(2, size=4) if name == "pixel_prior" else binary_images(2)
    labels = {"cvae": [0, 2], "pixel_prior": [1, 0]}.get(name)
    label_kwargs = {} if labels is None else {"labels": labels}
    for task, pipeline_class in TASKS.items():
        if pipeline_class.capability not in type(model).capabilities:
            continue
        if task == GEN:
            kwargs = dict(num_samples=2, seed=0, output_type="pt", **label_kwargs)
            extra = {"vqvae": models["vqvae"]} if name == "code_prior" else {}
            a, b = pipeline(task, model=model, **extra)(**kwargs), pipeline(task, model=path)(**kwargs)
            assert torch.equal(a, b), task
            continue
        kwargs = dict(label_kwargs)
        if task == RECON:
            kwargs["output_type"] = "pt"
        if task == SCORE and name in ("vae", "cvae"):
            kwargs.update(num_importance_samples=3, seed=0)
        extra = {"vqvae": models["vqvae"]} if (name == "code_prior" and task == SCORE) else {}
        a, b = pipeline(task, model=model, **extra)(x, **kwargs), pipeline(task, model=path)(x, **kwargs)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), task
        else:
            assert len(a) == len(b) == 2
            for ra, rb in zip(a, b):
                assert ra.keys() == rb.keys()
                for key in ra:
                    same = torch.equal(ra[key], rb[key]) if isinstance(ra[key], torch.Tensor) else ra[key] == rb[key]
                    assert same, (task, key)


def test_saved_pipeline_loads_by_task_and_as_remote_code(models, tmp_path):
    x = binary_images(2)
    pipe = pipeline(SCORE, model=models["vae"])
    expected = pipe(x, num_importance_samples=4, seed=1)
    pipe.save_pretrained(tmp_path / "pipe")
    config = json.loads((tmp_path / "pipe" / "config.json").read_text())
    assert config["custom_pipelines"] == {
        f"hf_vae/{SCORE}": {"impl": "transformers_pipelines.ImageScoringPipeline", "pt": ["AutoModel"], "type": "image"}
    }
    assert "custom_pipelines" not in models["vae"].config.to_dict()  # the model in memory is unchanged
    assert (tmp_path / "pipe" / "transformers_pipelines.py").exists() and (tmp_path / "pipe" / "images.py").exists()
    # hf_vae installed: the registered task, no remote code involved
    local = pipeline(SCORE, model=str(tmp_path / "pipe"))
    assert type(local) is type(pipe) and local(x, num_importance_samples=4, seed=1) == expected
    # the repo's own pipeline code (what a user without hf_vae gets)
    remote = pipeline(model=str(tmp_path / "pipe"), trust_remote_code=True)
    assert type(remote).__module__.startswith("transformers_modules") and remote.task == SCORE
    assert remote(x, num_importance_samples=4, seed=1) == expected


# --------------------------------------------------------------------------------------------------
# By repo id, on the local Hub
# --------------------------------------------------------------------------------------------------


def new_repo(name: str) -> str:
    return f"{USER}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.mark.usefixtures("hub_server")
def test_tasks_by_repo_id_from_a_pushed_model_and_a_pushed_pipeline(models, tmp_path):
    x = binary_images(2)
    vae, cvae = models["vae"], models["cvae"]
    model_repo = new_repo("vae")
    vae.push_to_hub(model_repo)
    assert torch.equal(pipeline(RECON, model=model_repo)(x, output_type="pt"), vae.reconstruct(x))
    assert torch.equal(pipeline(GEN, model=model_repo)(num_samples=2, seed=0, output_type="pt"), vae.sample(2, generator=seeded(0)))

    pipe_repo = new_repo("cvae-pipe")
    pipeline(GEN, model=cvae).push_to_hub(pipe_repo)
    expected = cvae.sample(2, labels=torch.tensor([1, 2]), guidance_scale=2.0, generator=seeded(0))
    by_task = pipeline(GEN, model=pipe_repo)  # hf_vae installed: no remote code needed
    assert torch.equal(by_task(labels=[1, 2], guidance_scale=2.0, seed=0, output_type="pt"), expected)
    remote = run_without_hf_vae(
        f"""
        import json, torch
        from transformers import pipeline
        pipe = pipeline(model={pipe_repo!r}, trust_remote_code=True)
        assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
        images = pipe(labels=[1, 2], guidance_scale=2.0, seed=0, output_type="pt")
        print(json.dumps({{"task": pipe.task, "images": images.tolist()}}))
        """,
        tmp_path,
    )
    assert remote["task"] == GEN and torch.equal(torch.tensor(remote["images"]), expected)


# --------------------------------------------------------------------------------------------------
# diffusers
# --------------------------------------------------------------------------------------------------


def test_diffusers_vae_pipeline_outputs_and_errors(models):
    pipe = VAEGenerationPipeline(vae=models["vae"])
    out = pipe(num_samples=3, generator=seeded(0))
    assert isinstance(out, ImagePipelineOutput) and len(out.images) == 3 and out.images[0].size == (8, 8)
    as_np = pipe(num_samples=3, generator=seeded(0), output_type="np").images
    assert as_np.shape == (3, 8, 8, 1) and 0 <= as_np.min() and as_np.max() <= 1
    (as_pt,) = pipe(num_samples=3, generator=seeded(0), output_type="pt", return_dict=False)
    assert torch.equal(as_pt, models["vae"].sample(3, generator=seeded(0)))
    assert np.array_equal(as_np, as_pt.permute(0, 2, 3, 1).numpy())
    with pytest.raises(ValueError, match="`labels`"):
        pipe(labels=1)
    with pytest.raises(ValueError, match="`output_type`"):
        pipe(output_type="latents")
    with pytest.raises(ValueError, match="`vae`"):
        VAEGenerationPipeline(vae=models["vqvae"])

    cvae_pipe = VAEGenerationPipeline(vae=models["cvae"])
    guided = cvae_pipe(num_samples=2, labels=[0, 1], guidance_scale=2.0, generator=seeded(0), output_type="pt").images
    assert torch.equal(guided, models["cvae"].sample(2, labels=torch.tensor([0, 1]), guidance_scale=2.0, generator=seeded(0)))


def test_diffusers_save_load_round_trip_gives_identical_images(models, tmp_path):
    cvae_pipe = VAEGenerationPipeline(vae=models["cvae"])
    cvae_pipe.save_pretrained(tmp_path / "cvae")
    index = json.loads((tmp_path / "cvae" / "model_index.json").read_text())
    assert index["_class_name"] == "VAEGenerationPipeline" and index["vae"] == ["hf_vae", "CVAEModel"]
    for loaded in (DiffusionPipeline.from_pretrained(tmp_path / "cvae"), VAEGenerationPipeline.from_pretrained(tmp_path / "cvae")):
        assert type(loaded) is VAEGenerationPipeline and type(loaded.vae) is CVAEModel
        kwargs = dict(num_samples=2, labels=2, guidance_scale=1.5, output_type="pt")
        assert torch.equal(loaded(generator=seeded(3), **kwargs).images, cvae_pipe(generator=seeded(3), **kwargs).images)

    vq_pipe = VQGenerationPipeline(vqvae=models["vqvae"], prior=models["code_prior"])
    vq_pipe.set_progress_bar_config(disable=True)
    vq_pipe.save_pretrained(tmp_path / "vq")
    index = json.loads((tmp_path / "vq" / "model_index.json").read_text())
    assert index["vqvae"] == ["hf_vae", "VQVAEModel"] and index["prior"] == ["hf_vae", "TransformerPriorModel"]
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "vq")
    loaded.set_progress_bar_config(disable=True)
    a = vq_pipe(num_samples=2, generator=seeded(1), temperature=0.8, output_type="pt").images
    assert torch.equal(a, loaded(num_samples=2, generator=seeded(1), temperature=0.8, output_type="pt").images)
    codes = models["code_prior"].sample(2, temperature=0.8, generator=seeded(1), progress=False)
    assert torch.equal(a, models["vqvae"].decode_from_indices(codes))


def test_diffusers_vq_pipeline_checks_its_components(models):
    with pytest.raises(ValueError, match="`vqvae`"):
        VQGenerationPipeline(vqvae=None, prior=models["code_prior"])
    with pytest.raises(ValueError, match="`prior`"):
        VQGenerationPipeline(vqvae=models["vqvae"], prior=models["vae"])
    mismatched = VQVAEModel(VQVAEConfig(image_size=8, num_channels=1, hidden_channels=[8], num_res_blocks=0,
                                        codebook_size=16, embedding_dim=4))
    with pytest.raises(ValueError, match="vocab_size"):
        VQGenerationPipeline(vqvae=mismatched, prior=models["code_prior"])
    pixels = VQGenerationPipeline(vqvae=None, prior=models["pixel_prior"])  # pixel tokens need no VQ-VAE
    pixels.set_progress_bar_config(disable=True)
    images = pixels(num_samples=2, labels=1, generator=seeded(0), output_type="pt").images
    assert images.shape == (2, 1, 4, 4) and set(images.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="`top_p`"):
        pixels(top_p=1.5)


@pytest.mark.usefixtures("hub_server")
def test_diffusers_pipeline_by_repo_id(models):
    pipe = VQGenerationPipeline(vqvae=models["vqvae"], prior=models["code_prior"])
    pipe.set_progress_bar_config(disable=True)
    repo_id = new_repo("vq-pipe")
    pipe.push_to_hub(repo_id)
    loaded = DiffusionPipeline.from_pretrained(repo_id)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is VQGenerationPipeline and type(loaded.prior) is TransformerPriorModel
    kwargs = dict(num_samples=2, output_type="pt")
    assert torch.equal(loaded(generator=seeded(2), **kwargs).images, pipe(generator=seeded(2), **kwargs).images)
