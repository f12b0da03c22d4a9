"""The image processor: any image -> the model's input exactly as training converts dataset rows
(`hf_vae.data.ImageTransform`), and back; registered with `AutoImageProcessor`, saved beside a model, and
used by every transformers pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, pipeline
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

from hf_vae import (
    HfVaeImageProcessor,
    PixelCNNPriorConfig,
    TransformerPriorConfig,
    VAEConfig,
    VAEModel,
    VQVAEConfig,
    image_processor_for,
    save_image_processor,
)
from hf_vae.data import ImageTransform
from hf_vae.families import FAMILIES

from .model_tester import run_without_hf_vae


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def photo(size: int = 64, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth colour picture (a gradient plus noise), so resizing and grey conversion both matter."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size)[None, :, None]
    channels = 4 if mode == "RGBA" else 3
    array = np.clip(ramp * np.ones((size, size, channels)) + rng.normal(0, 30, (size, size, channels)), 0, 255)
    return Image.fromarray(array.astype(np.uint8), mode=mode)


def by_hand(image: Image.Image, size: int = 28) -> torch.Tensor:
    """What the trainer does to a dataset image, written out: grey, PIL bilinear resize, / 255 -> (1, 1, H, W)."""
    grey = image.convert("L").resize((size, size), resample=Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0)[None, None]


@pytest.fixture(scope="module")
def grey28():
    torch.manual_seed(0)
    config = VAEConfig(image_size=28, num_channels=1, hidden_channels=[8], latent_dim=4, num_res_blocks=0)
    return VAEModel(config).eval()


@pytest.mark.filterwarnings("ignore:a Bernoulli likelihood scored grey-level")  # a photo is grey-level
def test_an_rgb_64_photo_scores_on_a_28_grey_model_as_converted_by_hand(grey28):
    image = photo()
    scores = pipeline("image-scoring", model=grey28)
    result = scores(image, num_importance_samples=3, seed=0)
    expected = -grey28.log_likelihood(by_hand(image), num_samples=3, generator=seeded(0))
    assert result["score"] == expected.item()
    # the same picture as a uint8 array, an RGBA image, a (C, H, W) uint8 tensor or a file: the same input
    array = np.array(image)
    as_tensor = torch.from_numpy(array).permute(2, 0, 1)
    for other in (array, as_tensor):
        assert scores(other, num_importance_samples=3, seed=0) == result
    rgba = photo(mode="RGBA")
    assert scores(rgba, num_importance_samples=3, seed=0)["score"] == \
        (-grey28.log_likelihood(by_hand(rgba), num_samples=3, generator=seeded(0))).item()


def test_reconstruction_of_a_photo_is_returned_at_the_model_size(grey28, tmp_path):
    image = photo()
    image.save(tmp_path / "photo.png")
    recon = pipeline("image-reconstruction", model=grey28)
    out = recon(str(tmp_path / "photo.png"))
    assert out.size == (28, 28) and out.mode == "L"
    assert torch.equal(recon(image, output_type="pt"), grey28.reconstruct(by_hand(image))[0])


def test_processor_is_the_training_transform_with_crop_and_static_binarization():
    images = [photo(seed=s) for s in range(3)]
    processor = HfVaeImageProcessor(image_size=16, num_channels=1, center_crop=48, binarize="static", binarize_seed=5)
    transform = ImageTransform(image_column="image", num_channels=1, image_size=16, center_crop=48,
                               binarize="static", seed=5)
    expected = torch.stack([e["pixel_values"] for e in transform.examples({"image": images}, indices=[0, 1, 2])])
    got = processor(images)["pixel_values"]
    assert got.shape == (3, 1, 16, 16) and torch.equal(got, expected)
    assert set(got.unique().tolist()) == {0.0, 1.0}
    # without binarization: crop the centre by hand, then resize
    plain = HfVaeImageProcessor(image_size=16, num_channels=3, center_crop=48)
    cropped = images[0].crop((8, 8, 56, 56)).resize((16, 16), resample=Image.Resampling.BILINEAR)
    assert torch.equal(plain(images[0])["pixel_values"][0],
                       torch.from_numpy(np.asarray(cropped, dtype=np.float32) / 255.0).permute(2, 0, 1))


def test_pixel_values_pass_unchanged_and_postprocess_goes_back():
    processor = HfVaeImageProcessor(image_size=8, num_channels=1)
    x = torch.rand((2, 1, 8, 8), generator=seeded(1))
    assert processor(x)["pixel_values"] is x  # a batch tensor is the model's input already
    assert torch.equal(processor(list(x))["pixel_values"], x)
    as_np = processor(x[0].permute(1, 2, 0).numpy())["pixel_values"]  # a float (H, W, C) array
    assert torch.equal(as_np, x[:1])
    pils = processor.postprocess(x)
    assert [p.size for p in pils] == [(8, 8)] * 2
    assert torch.allclose(processor(pils)["pixel_values"], x, atol=0.5 / 255)  # 8-bit round trip
    assert processor.postprocess(x, output_type="np").shape == (2, 8, 8, 1)


@pytest.mark.parametrize(("kwargs", "name"), [
    (dict(binarize="dynamic"), "binarize"), (dict(num_channels=4), "num_channels"),
    (dict(image_size=[8]), "image_size"), (dict(image_size=0), "image_size"), (dict(center_crop=0), "center_crop"),
])
def test_processor_arguments_are_checked(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}` must be"):
        HfVaeImageProcessor(**kwargs)


def test_unusable_images_are_named():
    processor = HfVaeImageProcessor(image_size=8)
    with pytest.raises(ValueError, match=r"`images\[1\]` must be a PIL image"):
        processor([photo(), {"not": "an image"}])
    with pytest.raises(ValueError, match="`images` must be an 8-bit image"):
        processor(Image.fromarray(np.zeros((8, 8), dtype=np.int32)))
    with pytest.raises(ValueError, match="`images` must hold at least one image"):
        processor([])
    with pytest.raises(ValueError, match="`kwargs` must be empty"):
        processor(photo(), do_resize=False)


def test_every_family_is_registered_with_auto_image_processor():
    assert FAMILIES  # the families registered on import
    for model_class in FAMILIES.values():
        assert HfVaeImageProcessor in IMAGE_PROCESSOR_MAPPING[model_class.config_class].values()


def test_image_processor_for_each_kind_of_model():
    vae = image_processor_for(VAEConfig(image_size=16, num_channels=3, hidden_channels=[8]))
    assert (vae.image_size, vae.num_channels) == ([16, 16], 3)
    pixels = image_processor_for(PixelCNNPriorConfig(vocab_size=2, grid_size=12, token_source="pixels"))
    assert (pixels.image_size, pixels.num_channels) == ([12, 12], 1)
    codes = TransformerPriorConfig(vocab_size=8, grid_size=4, token_source="vqvae_codes")
    with pytest.raises(ValueError, match="`vqvae_config` must be"):
        image_processor_for(codes)
    vqvae = VQVAEConfig(image_size=16, num_channels=1, hidden_channels=[8, 8], codebook_size=8)
    through = image_processor_for(codes, vqvae_config=vqvae, center_crop=20, binarize="static")
    assert (through.image_size, through.num_channels, through.center_crop, through.binarize) == ([16, 16], 1, 20, "static")


def test_saved_beside_the_model_and_loaded_by_auto_image_processor_and_the_pipelines(grey28, tmp_path):
    grey28.save_pretrained(tmp_path / "model")
    written = save_image_processor(grey28.config, tmp_path / "model", center_crop=40, binarize="static", binarize_seed=3)
    saved = json.loads((tmp_path / "model" / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "HfVaeImageProcessor" and saved["center_crop"] == 40
    # the auto_map names the copy of image_processing.py beside it, for loading without hf_vae
    assert saved.pop("auto_map") == {"AutoImageProcessor": "image_processing.HfVaeImageProcessor"}
    loaded = AutoImageProcessor.from_pretrained(tmp_path / "model")
    loaded_settings = {name: value for name, value in loaded.to_dict().items() if name != "auto_map"}
    assert type(loaded) is HfVaeImageProcessor and loaded_settings == written.to_dict()
    # a pipeline on the folder reads images as the saved processor says (crop 40, then binarize)
    pipe = pipeline("image-reconstruction", model=str(tmp_path / "model"))
    assert {name: value for name, value in pipe.image_processor.to_dict().items() if name != "auto_map"} == written.to_dict()
    image = photo()
    expected = written(image)["pixel_values"]
    assert set(expected.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(pipe(image, output_type="pt"), pipe.model.reconstruct(expected)[0])
    # a pipeline's save writes it too
    pipe.save_pretrained(tmp_path / "pipe")
    in_pipe = json.loads((tmp_path / "pipe" / "preprocessor_config.json").read_text())
    assert in_pipe.pop("auto_map") == {"AutoImageProcessor": "image_processing.HfVaeImageProcessor"} and in_pipe == saved


def test_a_saved_pipeline_keeps_its_image_processor_without_hf_vae(grey28, tmp_path):
    pipe = pipeline("image-reconstruction", model=grey28, image_processor=image_processor_for(grey28.config, center_crop=40))
    pipe.save_pretrained(tmp_path / "pipe")
    photo().save(tmp_path / "photo.png")
    expected = pipe(str(tmp_path / "photo.png"), output_type="pt")
    assert torch.equal(expected, grey28.reconstruct(pipe.image_processor(photo())["pixel_values"])[0])
    remote = run_without_hf_vae(
        f"""
        from transformers import pipeline
        pipe = pipeline(model={str(tmp_path / "pipe")!r}, trust_remote_code=True)
        out = pipe({str(tmp_path / "photo.png")!r}, output_type="pt")
        processor = pipe.image_processor
        pixel_values = processor({str(tmp_path / "photo.png")!r})["pixel_values"]
        print(json.dumps({{"module": type(processor).__module__, "center_crop": processor.center_crop,
                          "pixel_values": pixel_values.tolist(), "out": out.tolist()}}))
        """,
        tmp_path,
    )
    assert remote["module"].startswith("transformers_modules") and remote["center_crop"] == 40
    assert torch.equal(torch.tensor(remote["pixel_values"]), pipe.image_processor(photo())["pixel_values"])
    # another process (one thread) may round the convolutions differently in the last bit
    assert torch.allclose(torch.tensor(remote["out"]), expected, atol=1e-6)
