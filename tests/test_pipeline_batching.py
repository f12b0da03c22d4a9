"""transformers pipelines batch as transformers' own do: a list runs in batches of `batch_size` (given to
`pipeline()` or to the call), `num_workers` DataLoader workers preprocess, labels (ids or class names)
travel with their images, and the reprs report image modalities. Every number must equal the model
method run on the same batches."""

from __future__ import annotations

import pytest
import torch
from transformers import pipeline

from hf_vae import CVAEConfig, CVAEModel, VAEConfig, VAEModel, VQVAEConfig, VQVAEModel, set_label_names

GEN, LATENTS, RECON, SCORE = "unconditional-image-generation", "image-to-latents", "image-reconstruction", "image-scoring"
IMAGE = dict(image_size=8, num_channels=1, hidden_channels=[8], num_res_blocks=0)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(cls, config_cls, **kwargs):
    torch.manual_seed(0)
    return cls(config_cls(**kwargs, **IMAGE)).eval()


@pytest.fixture(scope="module")
def models():
    cvae = build(CVAEModel, CVAEConfig, latent_dim=4, num_classes=3, label_embedding_dim=4, label_dropout=0.2)
    set_label_names(cvae.config, ["zero", "one", "two"])
    return {"vae": build(VAEModel, VAEConfig, latent_dim=4), "cvae": cvae,
            "vqvae": build(VQVAEModel, VQVAEConfig, codebook_size=8, embedding_dim=4)}


def images(count: int = 10) -> torch.Tensor:
    return torch.rand((count, 1, 8, 8), generator=seeded(1)).round()


def count_calls(monkeypatch, model, method: str) -> list[int]:
    """Record the batch size of every call of `model.<method>` (the forward a pipeline runs)."""
    sizes = []
    original = getattr(model, method)

    def counted(first, *args, **kwargs):
        sizes.append(first if isinstance(first, int) else len(first))
        return original(first, *args, **kwargs)

    monkeypatch.setattr(model, method, counted)
    return sizes


def in_batches(fn, x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([fn(x[start : start + size]) for start in range(0, len(x), size)])


def test_a_list_of_10_runs_in_batches_of_4_4_and_2(models, monkeypatch):
    vae, x = models["vae"], images()
    sizes = count_calls(monkeypatch, vae, "score")
    scores = pipeline(SCORE, model=vae)(list(x), batch_size=4, num_importance_samples=3, seed=0)
    assert sizes == [4, 4, 2]
    # one generator throughout: each batch draws on from where the previous one stopped
    generator = seeded(0)
    expected = in_batches(lambda b: -vae.log_likelihood(b, num_samples=3, generator=generator), x, 4)
    assert [s["score"] for s in scores] == expected.tolist()
    assert {s["estimator"] for s in scores} == {"IWAE, k=3"} and len(scores) == 10


def test_batch_size_given_to_pipeline_and_a_batch_tensor(models, monkeypatch):
    vq, x = models["vqvae"], images()
    sizes = count_calls(monkeypatch, vq, "reconstruct")
    recon = pipeline(RECON, model=vq, batch_size=3)
    out = recon(list(x), output_type="pt")
    assert sizes == [3, 3, 3, 1] and out.shape == (10, 1, 8, 8)  # one tensor for the list, as without batching
    assert torch.equal(out, in_batches(vq.reconstruct, x, 3))
    sizes.clear()
    assert recon(list(x))[0].size == (8, 8)  # "pil": a list of images
    assert recon(list(x), output_type="np").shape == (10, 8, 8, 1)
    sizes.clear()
    assert torch.equal(recon(x, output_type="pt"), out)  # a (B, C, H, W) tensor is re-batched too
    assert sizes == [3, 3, 3, 1]
    sizes.clear()
    whole = recon(x, batch_size=10, output_type="pt")  # the call's batch_size overrides the pipeline's
    assert sizes == [10] and torch.equal(whole, vq.reconstruct(x))


def test_without_batch_size_a_list_is_one_batch(models, monkeypatch):
    vq, x = models["vqvae"], images(5)
    sizes = count_calls(monkeypatch, vq, "score")
    scores = pipeline(SCORE, model=vq)(list(x))
    assert sizes == [5] and len(scores) == 5
    assert [s["score"] for s in scores] == vq.score(x).score.tolist()


def test_num_workers_give_the_same_results(models):
    vq, x = models["vqvae"], images(6)
    latents = pipeline(LATENTS, model=vq)
    serial = latents(list(x), batch_size=4)
    parallel = latents(list(x), batch_size=4, num_workers=2)
    assert len(parallel) == 6
    assert all(torch.equal(a["indices"], b["indices"]) for a, b in zip(serial, parallel))
    assert torch.equal(torch.stack([r["indices"] for r in serial]), vq.encode(x).indices)


def test_labels_by_name_travel_with_their_images(models, monkeypatch):
    cvae, x = models["cvae"], images(5)
    names = ["two", "zero", 1, "one", "two"]  # names and ids mixed, one per image
    ids = torch.tensor([2, 0, 1, 1, 2])
    sizes = count_calls(monkeypatch, cvae, "reconstruct")
    out = pipeline(RECON, model=cvae)(list(x), labels=names, batch_size=2, output_type="pt")
    assert sizes == [2, 2, 1]
    expected = torch.cat([cvae.reconstruct(x[i : i + 2], ids[i : i + 2]) for i in range(0, 5, 2)])
    assert torch.equal(out, expected)
    latents = pipeline(LATENTS, model=cvae)(list(x), labels="one", batch_size=4)  # one name for every image
    posterior = cvae.encode(x, torch.ones(5, dtype=torch.long)).latent_dist
    assert torch.allclose(torch.stack([r["posterior_mean"] for r in latents]), posterior.mean, atol=1e-6)
    with pytest.raises(ValueError, match="`labels`"):
        pipeline(RECON, model=cvae)(list(x), labels=["zero", "nine", 1, 1, 1], batch_size=2)


def test_generation_draws_num_samples_in_batches(models, monkeypatch):
    cvae = models["cvae"]
    sizes = count_calls(monkeypatch, cvae, "sample")
    labels = ["one"] * 5 + [2] * 5
    out = pipeline(GEN, model=cvae, batch_size=4)(labels=labels, generator=seeded(3), output_type="pt")
    assert sizes == [4, 4, 2] and out.shape == (10, 1, 8, 8)
    generator, ids = seeded(3), torch.tensor([1] * 5 + [2] * 5)
    expected = torch.cat([cvae.sample(n, labels=ids[s : s + n], generator=generator) for s, n in ((0, 4), (4, 4), (8, 2))])
    assert torch.equal(out, expected.clamp(0, 1))
    sizes.clear()
    pipeline(GEN, model=cvae)(num_samples=6, seed=0)
    assert sizes == [6]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batch_size_is_checked(models, bad):
    with pytest.raises(ValueError, match="`batch_size` must be"):
        pipeline(SCORE, model=models["vqvae"])(list(images(2)), batch_size=bad)
    with pytest.raises(ValueError, match="`batch_size` must be"):
        pipeline(GEN, model=models["vae"])(num_samples=2, batch_size=bad)


def test_reprs_report_image_modalities(models):
    generation = repr(pipeline(GEN, model=models["vae"]))
    assert "'text'" not in generation and "'output_modalities': ['image']" in generation
    assert "'input_modalities': []" in generation
    for task, outputs in ((SCORE, []), (LATENTS, []), (RECON, ["image"])):
        text = repr(pipeline(task, model=models["vae"]))
        assert "'input_modalities': ['image']" in text and f"'output_modalities': {outputs}" in text
