"""`import hf_vae` is light (only the configs), and everything else registers itself the moment it is
needed, in either import order: `AutoModel`, `pipeline()`, `AutoImageProcessor`, `hf_vae.VAEModel`.
Also: `model.save_pretrained` writes the model's image processor beside it."""

from __future__ import annotations

import json

import pytest
import torch

from hf_vae import VAEConfig, VAEModel, save_image_processor

from .model_tester import run_python

HEAVY = ("transformers.modeling_utils", "transformers.pipelines", "transformers.image_processing_utils",
         "transformers.models.auto.modeling_auto", "diffusers", "datasets", "sklearn", "hf_vae.models.vae.modeling_vae")


def test_import_hf_vae_imports_no_modeling_pipeline_or_data_code(tmp_path):
    result = run_python(f"""
        import json, sys
        import hf_vae
        print(json.dumps({{"imported": [name for name in {HEAVY!r} if name in sys.modules],
                          "configs": [hf_vae.VAEConfig.model_type, hf_vae.TransformerPriorConfig.model_type]}}))
    """, tmp_path)
    assert result == {"imported": [], "configs": ["vae", "transformer_prior"]}


@pytest.fixture(scope="module")
def saved_vae(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vae")
    VAEModel(VAEConfig(image_size=8, num_channels=1, hidden_channels=[8], latent_dim=2, num_res_blocks=0)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("first", ["hf_vae", "transformers"])
def test_automodel_pipeline_and_image_processor_find_hf_vae_in_either_import_order(saved_vae, tmp_path, first):
    imports = ["import hf_vae", "from transformers import AutoImageProcessor, AutoModel, pipeline"]
    result = run_python(f"""
        import json
        {imports[0] if first == "hf_vae" else imports[1]}
        {imports[1] if first == "hf_vae" else imports[0]}
        model = AutoModel.from_pretrained({str(saved_vae)!r})
        processor = AutoImageProcessor.from_pretrained({str(saved_vae)!r})
        pipe = pipeline("image-scoring", model={str(saved_vae)!r})
        print(json.dumps({{"model": type(model).__name__, "same_class": type(model) is hf_vae.VAEModel,
                          "processor": type(processor).__name__, "pipeline": type(pipe).__name__}}))
    """, tmp_path)
    assert result == {"model": "VAEModel", "same_class": True, "processor": "HfVaeImageProcessor",
                      "pipeline": "ImageScoringPipeline"}


def test_a_model_class_used_first_is_registered_with_automodel(saved_vae, tmp_path):
    result = run_python(f"""
        import json, sys
        import hf_vae
        config = hf_vae.VAEConfig(image_size=8, num_channels=1, hidden_channels=[8], latent_dim=2, num_res_blocks=0)
        model = hf_vae.VAEModel(config)  # imports the model classes (not AutoModel's module)
        from hf_vae.families import FAMILIES
        from transformers import AutoModel
        print(json.dumps({{"families": sorted(FAMILIES), "auto": type(AutoModel.from_config(config)).__name__}}))
    """, tmp_path)
    assert result == {"families": ["cvae", "pixelcnn_prior", "transformer_prior", "vae", "vqvae"], "auto": "VAEModel"}


@pytest.mark.parametrize("first", [
    "import hf_vae; from transformers import GPT2Model",  # transformers' modeling_layers imports AutoModel mid-import
    "import transformers.modeling_layers, hf_vae",
    "from hf_vae.models.vae.modeling_vae import VAEModel",
    "from hf_vae.models.cvae.modeling_cvae import CVAEModel",  # imports the VAE's model file mid-import
    "from hf_vae.models.pixelcnn_prior.modeling_pixelcnn_prior import PixelCNNPriorModel",
    "from hf_vae.modeling_utils import HfVaePreTrainedModel",
])
def test_any_first_import_registers_every_family_without_a_circular_import(saved_vae, tmp_path, first):
    result = run_python(f"""
        import json
        {first}
        from transformers import AutoModel
        from hf_vae.families import FAMILIES
        print(json.dumps({{"families": sorted(FAMILIES), "model": type(AutoModel.from_pretrained({str(saved_vae)!r})).__name__}}))
    """, tmp_path)
    assert result == {"families": ["cvae", "pixelcnn_prior", "transformer_prior", "vae", "vqvae"], "model": "VAEModel"}


def test_unknown_attribute_is_an_attribute_error():
    import hf_vae

    with pytest.raises(AttributeError, match="no attribute 'VAEModle'"):
        hf_vae.VAEModle  # noqa: B018


def test_save_pretrained_writes_the_image_processor_and_keeps_a_training_runs(saved_vae, tmp_path):
    processor = json.loads((saved_vae / "preprocessor_config.json").read_text())
    assert (processor["image_processor_type"], processor["image_size"], processor["num_channels"]) == ("HfVaeImageProcessor", [8, 8], 1)
    assert processor["auto_map"] == {"AutoImageProcessor": "image_processing.HfVaeImageProcessor"}
    assert (saved_vae / "image_processing.py").is_file()  # the processor's remote code
    model = VAEModel.from_pretrained(saved_vae)
    # a training run's processor (its crop and binarization) survives saving the same model again ...
    save_image_processor(model.config, tmp_path, center_crop=6, binarize="static")
    model.save_pretrained(tmp_path)
    kept = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert (kept["center_crop"], kept["binarize"]) == (6, "static")
    # ... but a processor for another image size is replaced by this model's
    other = VAEModel(VAEConfig(image_size=16, num_channels=1, hidden_channels=[8], latent_dim=2, num_res_blocks=0))
    other.save_pretrained(tmp_path)
    replaced = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert (replaced["image_size"], replaced["center_crop"], replaced["binarize"]) == ([16, 16], None, "none")
