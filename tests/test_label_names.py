"""Class names: `set_label_names` writes a dataset's `ClassLabel` names into a conditional model's
`config.id2label` / `label2id`, they survive save/load (folder, Hub, remote code), and `sample`, the CVAE's
and the priors' methods, the pipelines and the CLI take `labels` by name exactly as by id."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import ImagePipelineOutput
from PIL import Image
from transformers import pipeline

from hf_vae import (
    CVAEConfig,
    CVAEModel,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    VAEConfig,
    VAEModel,
    has_label_names,
    set_label_names,
)
from hf_vae.cards import render_card
from hf_vae.cli import main
from hf_vae.hub import load_model, push_run
from hf_vae.images import image_grid
from hf_vae.pipelines import VAEGenerationPipeline, VQGenerationPipeline

from .hub_server import USER
from .model_tester import run_without_hf_vae

MNIST_NAMES = [str(digit) for digit in range(10)]
IMAGE = dict(image_size=8, num_channels=1, hidden_channels=[8], num_res_blocks=0)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_cvae(names=None, num_classes: int = 10) -> CVAEModel:
    torch.manual_seed(0)
    config = CVAEConfig(latent_dim=4, num_classes=num_classes, label_embedding_dim=4, label_dropout=0.2, **IMAGE)
    if names is not None:
        set_label_names(config, names)
    return CVAEModel(config).eval()


def tiny_prior(names=("zero", "one")) -> PixelCNNPriorModel:
    """A class-conditional PixelCNN over binary 4 x 4 pixels, with label dropout (guidance)."""
    torch.manual_seed(0)
    config = PixelCNNPriorConfig(vocab_size=2, grid_size=4, token_source="pixels", hidden_size=4, num_layers=2,
                                 output_channels=4, num_classes=2, label_dropout=0.2)
    set_label_names(config, list(names))
    return PixelCNNPriorModel(config).eval()


def binary_images(count: int = 2, size: int = 8) -> torch.Tensor:
    return torch.rand((count, 1, size, size), generator=seeded(1)).round()


# -- the config: names set, checked, and never confused with transformers' placeholders -------------


def test_placeholder_ids_are_not_names_and_set_label_names_writes_both_maps():
    config = CVAEConfig(num_classes=3, **IMAGE)
    assert config.id2label == {0: "LABEL_0", 1: "LABEL_1"}  # transformers' filler on every config
    assert not has_label_names(config) and config.label_names is None
    config = CVAEConfig(num_classes=3, num_labels=3, **IMAGE)  # LABEL_0..LABEL_2: the right count, still no names
    assert len(config.id2label) == 3 and not has_label_names(config) and config.label_names is None
    set_label_names(config, ["cat", "dog", "3"])
    assert has_label_names(config) and config.label_names == ["cat", "dog", "3"]
    assert config.id2label == {0: "cat", 1: "dog", 2: "3"} and config.label2id == {"cat": 0, "dog": 1, "3": 2}
    assert not has_label_names(VAEConfig(**IMAGE))


def test_set_label_names_rejects_bad_names_and_unconditional_configs():
    config = CVAEConfig(num_classes=3, **IMAGE)
    for names in (["a", "b"], ["a", "b", "a"], ["a", "b", 3], ["a", "b", ""], "abc", None):
        with pytest.raises(ValueError, match=r"`names` must be a list of 3 unique non-empty strings"):
            set_label_names(config, names)
    assert config.label_names is None  # nothing was written
    with pytest.raises(ValueError, match=r"`config` must be the config of a conditional hf_vae model.*VAEConfig"):
        set_label_names(VAEConfig(**IMAGE), ["a", "b"])
    with pytest.raises(ValueError, match=r"conditional hf_vae model.*num_classes=None"):
        set_label_names(PixelCNNPriorConfig(vocab_size=2, grid_size=4, token_source="pixels"), ["a", "b"])


def test_a_config_json_whose_names_contradict_num_classes_fails_to_load(tmp_path):
    tiny_cvae(MNIST_NAMES).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"`id2label` must map the class ids 0\.\.4 \(num_classes=5\)"):
        CVAEConfig.from_pretrained(tmp_path, num_classes=5)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["id2label"]["9"] = "0"  # a duplicate name, as a hand edit would make
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"`id2label` must map .* to unique non-empty names"):
        CVAEConfig.from_pretrained(tmp_path)


# -- the models: a name draws exactly what its id draws -----------------------------------------------


def test_cvae_sample_by_name_equals_sample_by_id():
    model = tiny_cvae(MNIST_NAMES)
    by_name = model.sample(3, labels=["3", "7", "3"], generator=seeded())
    assert torch.equal(by_name, model.sample(3, labels=[3, 7, 3], generator=seeded()))
    assert torch.equal(model.sample(2, labels="3", generator=seeded()), model.sample(2, labels=3, generator=seeded()))
    assert not torch.equal(by_name, model.sample(3, labels=[4, 7, 3], generator=seeded()))  # the label matters
    # A name is looked up, never parsed: where "3" names class 6, "3" draws class 6.
    reversed_names = tiny_cvae(MNIST_NAMES[::-1])
    assert torch.equal(reversed_names.sample(2, labels=["3", 1], guidance_scale=2.0, generator=seeded()),
                       reversed_names.sample(2, labels=torch.tensor([6, 1]), guidance_scale=2.0, generator=seeded()))


def test_cvae_methods_that_take_labels_take_names():
    model = tiny_cvae(MNIST_NAMES)
    x, ids = binary_images(), torch.tensor([3, 5])
    latents = torch.randn(2, 4, generator=seeded())
    assert torch.equal(model.decode(latents, ["3", "5"]).sample, model.decode(latents, ids).sample)
    assert torch.equal(model.reconstruct(x, ["3", 5]), model.reconstruct(x, ids))
    assert torch.equal(model.encode(x, "3").latent_dist.mean, model.encode(x, torch.tensor([3, 3])).latent_dist.mean)
    assert torch.equal(model.log_likelihood(x, ["3", "5"], num_samples=2, generator=seeded()),
                       model.log_likelihood(x, ids, num_samples=2, generator=seeded()))
    assert torch.equal(model.interpolate(x[0], x[1], "3", "5", steps=3), model.interpolate(x[0], x[1], 3, 5, steps=3))


def test_conditional_prior_samples_and_scores_by_name():
    prior = tiny_prior()
    by_name = prior.sample(3, labels=["one", "zero", "one"], guidance_scale=1.5, generator=seeded(), progress=False)
    by_id = prior.sample(3, labels=[1, 0, 1], guidance_scale=1.5, generator=seeded(), progress=False)
    assert torch.equal(by_name, by_id)
    indices = torch.randint(0, 2, (2, 4, 4), generator=seeded())
    assert torch.equal(prior.log_likelihood(indices, "one"), prior.log_likelihood(indices, torch.tensor([1, 1])))
    assert torch.equal(prior(indices, labels=["zero", "one"]).loss, prior(indices, labels=torch.tensor([0, 1])).loss)


# -- the errors -----------------------------------------------------------------------------------------


def test_unknown_names_digit_strings_without_names_and_unconditional_models_raise():
    named = tiny_cvae(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
                       "apple", "pear"], num_classes=12)
    with pytest.raises(ValueError, match=r"`labels` must be class ids in \[0, 12\) or class names of the model "
                                         r"\('airplane', .*'truck' and 2 more\).*got 'cta'") as error:
        named.sample(2, labels=["cat", "cta"])
    assert "'apple'" not in str(error.value)  # at most 10 names are listed
    unnamed = tiny_cvae()  # placeholder id2label: no names
    with pytest.raises(ValueError, match=r"`labels` must be class ids \(an int, a list of ints or an integer tensor; "
                                         r"this model has no class names.*got '3'"):
        unnamed.sample(1, labels="3")
    with pytest.raises(ValueError, match=r"no class names.*got 'LABEL_0'"):  # the placeholders are not names
        unnamed.sample(1, labels=["LABEL_0"])
    with pytest.raises(ValueError, match=r"`labels` must hold class ids in \[0, 10\), got ids in \[3, 10\]"):
        tiny_cvae(MNIST_NAMES).sample(2, labels=["3", 10])  # the range is check_labels' to report
    with pytest.raises(ValueError, match=r"`labels` must have shape \(3,\), got \(2,\)"):
        tiny_cvae(MNIST_NAMES).sample(3, labels=["3", "4"])
    torch.manual_seed(0)
    vae = VAEModel(VAEConfig(latent_dim=4, **IMAGE)).eval()
    for labels in ("3", ["cat"], 3):
        with pytest.raises(ValueError, match=r"`labels` must be None: the model is unconditional"):
            vae.sample(1, labels=labels)


# -- save / load: folder, Hub (with the card), remote code ---------------------------------------------


def test_names_survive_save_load_the_hub_and_remote_code(tmp_path, hub_server):
    model = tiny_cvae(MNIST_NAMES[::-1])
    model.save_pretrained(tmp_path / "cvae")
    saved = json.loads((tmp_path / "cvae" / "config.json").read_text())
    assert saved["id2label"]["0"] == "9" and saved["label2id"]["9"] == 0
    loaded = CVAEModel.from_pretrained(tmp_path / "cvae")
    assert loaded.config.label_names == MNIST_NAMES[::-1] and loaded.config.label2id == model.config.label2id
    expected = model.sample(2, labels=[6, 0], generator=seeded())
    assert torch.equal(loaded.sample(2, labels=["3", "9"], generator=seeded()), expected)

    repo_id = f"{USER}/cvae-label-names"
    push_run(tmp_path / "cvae", repo_id)
    from_hub = load_model(repo_id)
    assert from_hub.config.label_names == MNIST_NAMES[::-1]
    assert torch.equal(from_hub.sample(2, labels=["3", "9"], generator=seeded()), expected)
    card = hub_server.files(repo_id)["README.md"].decode()
    assert "## Classes" in card and "| 0 | 9 |" in card and "| 9 | 0 |" in card

    remote = run_without_hf_vae(
        f"""
        import json, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({repo_id!r}, trust_remote_code=True).eval()
        images = model.sample(2, labels=["3", "9"], generator=torch.Generator().manual_seed(0))
        print(json.dumps({{"names": model.config.label_names, "images": images.tolist()}}))
        """,
        tmp_path,
    )
    assert remote["names"] == MNIST_NAMES[::-1] and torch.equal(torch.tensor(remote["images"]), expected)


def test_card_lists_classes_only_when_named(tmp_path):
    tiny_cvae(["cat", "dog|wolf", "3"], num_classes=3).save_pretrained(tmp_path / "named")
    text = render_card(tmp_path / "named").text
    classes = text.split("## Classes\n", 1)[1].split("\n## ", 1)[0]
    assert "| 0 | cat |" in classes and "| 1 | dog\\|wolf |" in classes and "| 2 | 3 |" in classes
    assert 'labels="cat"' in classes
    tiny_cvae(num_classes=3).save_pretrained(tmp_path / "unnamed")
    text = render_card(tmp_path / "unnamed").text
    assert "## Classes" not in text and "LABEL_0" not in text


# -- pipelines and the CLI --------------------------------------------------------------------------------


def test_transformers_pipelines_take_names():
    cvae, prior = tiny_cvae(MNIST_NAMES[::-1]), tiny_prior()
    generate = pipeline("unconditional-image-generation", model=cvae, output_type="pt")
    expected = cvae.sample(2, labels=[6, 0], guidance_scale=2.0, generator=seeded())
    assert torch.equal(generate(labels=["3", "9"], guidance_scale=2.0, seed=0), expected)  # num_samples = len(labels)
    assert torch.equal(generate(num_samples=2, labels="3", seed=0), cvae.sample(2, labels=6, generator=seeded()))
    tokens = prior.sample(2, labels=[1, 1], generator=seeded(), progress=False)
    assert torch.equal(pipeline("unconditional-image-generation", model=prior, output_type="pt")(
        num_samples=2, labels="one", seed=0), prior.indices_to_pixels(tokens))

    x = binary_images()
    assert torch.equal(pipeline("image-reconstruction", model=cvae)(list(x), labels=["3", "9"], output_type="pt"),
                       cvae.reconstruct(x, torch.tensor([6, 0])))
    latents = pipeline("image-to-latents", model=cvae)(list(x), labels="3")
    assert torch.equal(latents[1]["posterior_mean"], cvae.encode(x, torch.tensor([6, 6])).latent_dist.mean[1])
    scores = pipeline("image-scoring", model=prior)(list(binary_images(size=4)), labels=["zero", "one"])
    exact = prior.score(binary_images(size=4), torch.tensor([0, 1])).score
    assert [row["score"] for row in scores] == exact.tolist()
    with pytest.raises(ValueError, match=r"class names of the model \('zero', 'one'\).*got 'two'"):
        pipeline("image-scoring", model=prior)(list(binary_images(size=4)), labels="two")


def test_diffusers_pipelines_take_names():
    cvae, prior = tiny_cvae(MNIST_NAMES[::-1]), tiny_prior()
    output = VAEGenerationPipeline(vae=cvae)(num_samples=2, labels=["3", 9], generator=seeded(), output_type="pt")
    assert isinstance(output, ImagePipelineOutput)
    assert torch.equal(output.images, cvae.sample(2, labels=[6, 9], generator=seeded()))
    images = VQGenerationPipeline(vqvae=None, prior=prior)(num_samples=2, labels="zero", guidance_scale=1.5,
                                                           generator=seeded(), output_type="pt").images
    tokens = prior.sample(2, labels=0, guidance_scale=1.5, generator=seeded(), progress=False)
    assert torch.equal(images, prior.indices_to_pixels(tokens))


def test_cli_sample_takes_names_and_ids(tmp_path, capsys):
    model = tiny_cvae(["3", "cat", "dog"], num_classes=3)
    model.save_pretrained(tmp_path / "cvae")
    # The labels repeat in order to fill --num-samples, one grid column per label.
    for labels, ids in ((["3", "cat"], [0, 1, 0, 1]), (["0,2"], [0, 2, 0, 2]), (["dog", "1"], [2, 1, 2, 1]),
                        (["dog", "cat", "3"], [2, 1, 0, 2])):
        main(["sample", str(tmp_path / "cvae"), "--num-samples", "4", "--labels", *labels,
              "--output", str(tmp_path / "s.png")])
        expected = model.sample(4, labels=torch.tensor(ids), generator=seeded())
        image_grid(expected, nrow=len(set(ids)), scale=2).save(tmp_path / "e.png")
        assert Image.open(tmp_path / "s.png").tobytes() == Image.open(tmp_path / "e.png").tobytes(), labels

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(tmp_path / "cvae"), "--labels", "bird", "--output", str(tmp_path / "s.png")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "`--labels` must be class ids in [0, 3) or class names" in error
    assert "got 'bird'" in error
