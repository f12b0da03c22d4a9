"""The pictures a finished run writes (hf_vae.training.pictures) on the tiny 8x8 digits recipes: each for the
families it applies to and no other, referenced by the card exactly when it exists, drawn from the numbers
the evaluation measured, and never fatal to a run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModel

from hf_vae import cards
from hf_vae import data as hd
from hf_vae.evaluation import ACTIVE_UNIT_THRESHOLD, evaluate
from hf_vae.training import Recipe, pictures, train

from .model_tester import REPO_ROOT

pytestmark = pytest.mark.filterwarnings("ignore:posterior collapse")  # (20 steps: the tiny VAEs collapse)
CONFIGS = REPO_ROOT / "hf_vae" / "recipes"
ALWAYS = {"training_curves.png"}
GAUSSIAN = {"interpolation.png", "latent_map.png", "kl_per_dimension.png"}
EXPECTED = {  # family -> the pictures of training.pictures it must write (samples/reconstructions: artifacts)
    "vae": ALWAYS | GAUSSIAN,
    "cvae": ALWAYS | GAUSSIAN,
    "vqvae": ALWAYS | {"codebook_usage.png"},
    "pixelcnn": ALWAYS,
}
PICTURES = {f"{name}.png" for name in ("interpolation", "latent_map", "kl_per_dimension", "codebook_usage", "training_curves")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """family -> (run dir, the KL-per-dimension data the trainer plotted), after 20 steps on digits."""
    root, plotted, result = tmp_path_factory.mktemp("pictures"), {}, {}
    original = pictures.plot_kl_per_dimension

    def spy(metrics, path, **kwargs):
        plotted["kl"] = original(metrics, path, **kwargs)
        return plotted["kl"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pictures, "plot_kl_per_dimension", spy)
        for family in EXPECTED:
            plotted.clear()
            recipe = Recipe.from_yaml(CONFIGS / f"{family}_digits_tiny.yaml", [
                f"training.output_dir={root / family}", "training.max_steps=20", "training.log_every=5",
                "training.eval_every=10", "training.save_every=20", "training.progress=false"]
                + (["evaluation.num_importance_samples=5"] if family in ("vae", "cvae") else []))
            result[family] = (train(recipe), plotted.get("kl"))
    return result


def _test_split():
    return hd.load_split("digits", "test", binarize="static", seed=0)


def _card_pngs(run_dir: Path) -> set[str]:
    return set(re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", cards.render_card(run_dir).text))


@pytest.mark.parametrize("family", list(EXPECTED))
def test_each_picture_is_written_for_the_families_it_applies_to_only(runs, family):
    run_dir, _ = runs[family]
    written = {p.name for p in run_dir.glob("*.png")}
    assert written & PICTURES == EXPECTED[family]
    for name in written:
        with Image.open(run_dir / name) as image:
            assert image.width > 32 and image.height > 32, name


@pytest.mark.parametrize("family", list(EXPECTED))
def test_the_card_references_exactly_the_pictures_that_exist(runs, family, tmp_path):
    run_dir, _ = runs[family]
    assert _card_pngs(run_dir) == {p.name for p in run_dir.glob("*.png")}
    copy = tmp_path / family
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "best_model"))
    gone = sorted(EXPECTED[family])[0]
    (copy / gone).unlink()
    assert _card_pngs(copy) == {p.name for p in copy.glob("*.png")} and gone not in cards.render_card(copy).text


def test_the_card_places_the_pictures_in_their_sections(runs):
    vae = cards.render_card(runs["vae"][0]).text
    latent = vae.split("## Latent space\n", 1)[1].split("\n## ", 1)[0]
    assert "(kl_per_dimension.png)" in latent and "(latent_map.png)" in latent
    assert "(interpolation.png)" in vae.split("## Samples\n", 1)[1].split("\n## ", 1)[0]
    vq = cards.render_card(runs["vqvae"][0]).text
    assert "## Latent space" not in vq and "(codebook_usage.png)" in vq.split("## Codebook\n", 1)[1]
    assert "## Codebook" not in vae


def test_the_kl_per_dimension_plotted_is_the_evaluations(runs, tmp_path):
    run_dir, plotted = runs["vae"]
    recorded = json.loads((run_dir / "metrics.json").read_text())["test"]
    # What the trainer drew is the final evaluation's per-dimension KL and activity, number for number.
    assert plotted["kl"].tolist() == recorded["kl_per_dim"]["value"]
    assert plotted["activity"].tolist() == recorded["latent_activity"]["value"]
    assert int(plotted["active"].sum()) == recorded["active_units"]["value"]
    # And plotting a fresh evaluation of the saved model plots exactly its numbers.
    model = AutoModel.from_pretrained(run_dir).eval()
    with torch.no_grad():
        metrics = evaluate(model, _test_split(), num_importance_samples=0, progress=False)
    drawn = pictures.plot_kl_per_dimension(metrics, tmp_path / "kl.png")
    assert np.array_equal(drawn["kl"], np.asarray(metrics["kl_per_dim"].value))
    assert int(drawn["active"].sum()) == metrics["active_units"].value
    assert len(drawn["kl"]) == model.config.latent_dim and (tmp_path / "kl.png").is_file()
    # A saved run's metrics.json draws the same bars.
    assert pictures.plot_kl_per_dimension(recorded, tmp_path / "again.png")["kl"].tolist() == recorded["kl_per_dim"]["value"]


def test_bad_arguments_are_refused_before_drawing(runs, tmp_path):
    model = AutoModel.from_pretrained(runs["vae"][0]).eval()
    with pytest.raises(ValueError, match=r"`metrics` must hold kl_per_dim and latent_activity .*got \['perplexity'\]"):
        pictures.plot_kl_per_dimension({"perplexity": 3.0}, tmp_path / "kl.png")
    with pytest.raises(ValueError, match="`steps` must be an int >= 2, got 1"):
        pictures.plot_interpolation(model, _test_split(), tmp_path / "strip.png", steps=1)
    assert not list(tmp_path.iterdir())


def test_evaluate_records_the_activity_behind_active_units():
    torch.manual_seed(0)
    from hf_vae import VAEConfig, VAEModel

    model = VAEModel(VAEConfig(image_size=8, hidden_channels=[8], num_res_blocks=0, latent_dim=3)).eval()
    with torch.no_grad(), pytest.warns(UserWarning, match="posterior collapse"):
        metrics = evaluate(model, _test_split(), max_examples=50, num_importance_samples=0, progress=False)
    activity = metrics["latent_activity"].value
    assert len(activity) == 3 and all(a >= 0 for a in activity)
    assert metrics["active_units"].value == sum(a > ACTIVE_UNIT_THRESHOLD for a in activity)


def test_training_curves_use_one_sign_per_panel(runs, tmp_path):
    run_dir, _ = runs["vae"]
    log = run_dir / "logs" / "metrics.jsonl"
    panels = pictures.plot_training_curves(log, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").is_file()
    assert set(panels) == {"train (nats, lower is better)", "train KL (nats)", "validation (nats, lower is better)"}
    for title, curves in panels.items():
        for label, (_, values) in curves.items():
            assert all(v >= 0 for v in values), (title, label)  # costs (Bernoulli nats): never the ELBO itself
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    logged = [(row["step"], row["validation/elbo"]) for row in rows if "validation/elbo" in row]
    steps, values = panels["validation (nats, lower is better)"]["validation/-elbo"]
    assert list(zip(steps, values)) == [(step, -elbo) for step, elbo in logged]
    assert "validation/elbo" not in panels["validation (nats, lower is better)"]
    train = panels["train (nats, lower is better)"]
    recon, kl = train["train/reconstruction_loss"][1], panels["train KL (nats)"]["train/kl_loss"][1]
    assert train["train/-elbo"][1] == pytest.approx([r + k for r, k in zip(recon, kl)])


def test_training_curves_fall_back_to_the_test_split_and_skip_without_a_log(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(json.dumps(row) for row in (
        {"step": 10, "train/loss": 5.0, "train/reconstruction_loss": 4.0, "train/kl_loss": 1.0},
        {"step": 20, "test/elbo": -4.5, "test/nll": 4.2, "test/perplexity": 7.0})))
    panels = pictures.plot_training_curves(log, tmp_path / "curves.png")
    assert panels["test (nats, lower is better)"] == {"test/-elbo": ([20], [4.5]), "test/nll": ([20], [4.2])}
    assert pictures.plot_training_curves(tmp_path / "missing.jsonl", tmp_path / "none.png") == {}
    assert not (tmp_path / "none.png").exists()


def test_a_dense_warm_up_is_clipped_and_sparse_evaluations_are_not():
    steps = list(range(10, 6001, 10))
    curves = {"train/loss": (steps, [90 + 5000 / step for step in steps])}  # 590 nats at step 10, ~91 at the end
    bottom, top = pictures._clipped_ylim(curves)
    quarter = 10 * (6000 / 10) ** 0.25  # a quarter of the log step axis: everything after it fits
    assert max(v for s, v in zip(*curves["train/loss"]) if s >= quarter) < top < 590 and bottom < 91
    sparse = {"validation/-elbo": ([500, 1000, 1500], [127.0, 108.0, 104.0])}
    assert pictures._clipped_ylim(sparse) is None


def test_the_latent_map_is_the_pca_of_the_posterior_means_with_the_class_names(runs, tmp_path):
    from sklearn.decomposition import PCA

    run_dir, _ = runs["cvae"]
    model = AutoModel.from_pretrained(run_dir).eval()
    test = _test_split()
    with torch.no_grad():
        drawn = pictures.plot_latent_map(model, test, tmp_path / "map.png", max_examples=120)
        batch = hd.first_examples(test, 120)
        means = model.encode(batch["pixel_values"], labels=batch["labels"]).latent_dist.mean
    assert model.config.latent_dim == 4 and drawn["coordinates"].shape == (120, 2)
    expected = PCA(n_components=2, random_state=0).fit_transform(means.numpy())
    np.testing.assert_allclose(np.abs(drawn["coordinates"]), np.abs(expected), rtol=1e-4, atol=1e-5)
    assert torch.equal(drawn["labels"], batch["labels"])
    names = dict(model.config.id2label)
    assert drawn["legend"] == [names[label] for label in sorted(set(batch["labels"].tolist()))]


def test_a_two_dimensional_latent_space_is_drawn_as_it_is(tmp_path):
    from hf_vae import VAEConfig, VAEModel

    torch.manual_seed(0)
    model = VAEModel(VAEConfig(image_size=8, hidden_channels=[8], num_res_blocks=0, latent_dim=2)).eval()
    test = _test_split()
    with torch.no_grad():
        drawn = pictures.plot_latent_map(model, test, tmp_path / "map.png", max_examples=30)
        means = model.encode(hd.first_examples(test, 30)["pixel_values"]).latent_dist.mean
    assert drawn["explained_variance"] is None and np.array_equal(drawn["coordinates"], means.numpy())


def test_the_interpolation_strip_joins_test_images_of_different_classes(runs, tmp_path):
    run_dir, _ = runs["vae"]
    model = AutoModel.from_pretrained(run_dir).eval()
    test = _test_split()
    with torch.no_grad():
        pairs = pictures.plot_interpolation(model, test, tmp_path / "strip.png", rows=3, steps=5)
    labels = hd.first_examples(test, 120)["labels"]
    assert len(pairs) == 3 and all(labels[a] != labels[b] for a, b in pairs)
    with Image.open(tmp_path / "strip.png") as strip:
        scale = 8  # 8x8 digits are blown up to 64 pixels; tiles of 8 + 2 padding, 5 steps + the 2 ends
        assert strip.size == (scale * (2 + 7 * 10), scale * (2 + 3 * 10))


def test_the_codebook_usage_is_the_evaluations(runs, tmp_path):
    run_dir, _ = runs["vqvae"]
    recorded = json.loads((run_dir / "metrics.json").read_text())["test"]
    model = AutoModel.from_pretrained(run_dir).eval()
    with torch.no_grad():
        drawn = pictures.plot_codebook_usage(model, _test_split(), tmp_path / "codes.png")
    assert drawn["num_examples"] == recorded["num_examples"]["value"]
    assert drawn["perplexity"] == pytest.approx(recorded["perplexity"]["value"], rel=1e-5)
    assert drawn["dead_codes"] == recorded["dead_codes"]["value"]
    assert int((drawn["counts"] > 0).sum()) == recorded["codes_used"]["value"]


def test_a_picture_that_fails_to_draw_warns_and_the_others_are_written(runs, tmp_path, monkeypatch):
    run_dir, _ = runs["vae"]
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "best_model", "*.png"))
    model = AutoModel.from_pretrained(copy).eval()
    with torch.no_grad():
        metrics = evaluate(model, _test_split(), num_importance_samples=0, progress=False)

    def broken(model, test, path, **kwargs):
        path.write_bytes(b"half a picture")
        raise RuntimeError("no display")

    monkeypatch.setattr(pictures, "plot_latent_map", broken)
    with pytest.warns(UserWarning, match=r"could not draw latent_map.png .*RuntimeError: no display"):
        written = pictures.save_pictures(model, _test_split(), copy, metrics)
    assert set(written) == EXPECTED["vae"] - {"latent_map.png"}
    assert {p.name for p in copy.glob("*.png")} == set(written)  # the half-written file is gone
