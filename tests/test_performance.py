"""Performance work (issue 15) that must not change results: the IWAE estimate in the fast layout equals
the reference path, and the two-stage generation benchmark runs."""

import re

import pytest
import torch

from hf_vae import CVAEConfig, CVAEModel, VAEConfig, VAEModel

from .model_tester import single_thread  # noqa: F401 (autouse fixture)

# Big enough that oneDNN picks its blocked NHWC kernels (the tiny fixtures' sizes give bit-identical numbers).
IWAE_CONFIG = dict(image_size=28, num_channels=1, hidden_channels=[16, 32], num_res_blocks=1, latent_dim=8)


# VAEModel(VAEConfig(**IWAE_CONFIG)) after torch.manual_seed(0), k=40 with generator seed 1, recorded from the
# implementation before the fast layout (commit c8bba7a).
BEFORE = [-539.063720703125, -538.8677978515625, -538.4170532226562, -538.5360717773438, -539.1387939453125, -538.8153076171875]


def _binary_images(n):
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float()


@pytest.mark.parametrize("model_class, config_class", [(VAEModel, VAEConfig), (CVAEModel, CVAEConfig)])
def test_iwae_estimate_in_channels_last_equals_the_reference_path(model_class, config_class):
    torch.manual_seed(0)
    extra = {"num_classes": 3} if model_class is CVAEModel else {}
    model = model_class(config_class(**IWAE_CONFIG, **extra)).eval()
    x = _binary_images(6)
    kwargs = {"labels": torch.tensor([0, 1, 2, 0, 1, 2])} if extra else {}

    def estimate(**options):
        return model.log_likelihood(x, num_samples=40, generator=torch.Generator().manual_seed(1), **kwargs, **options)

    reference = estimate(channels_last=False)  # the implementation before the fast layout, unchanged
    if model_class is VAEModel:
        torch.testing.assert_close(estimate(), torch.tensor(BEFORE), rtol=1e-4, atol=0)
    fast = estimate()  # the default on CPU
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=0)
    assert torch.equal(fast, estimate(channels_last=True))
    # Chunking still does not change the estimate, in either layout.
    torch.testing.assert_close(estimate(chunk_size=1), reference, rtol=1e-4, atol=0)
    # The decoder's parameters stay in their layout: the fast path changes no state of the model.
    assert all(p.is_contiguous() for p in model.parameters())


def test_iwae_channels_last_must_be_a_bool():
    model = VAEModel(VAEConfig(**IWAE_CONFIG)).eval()
    with pytest.raises(ValueError, match="`channels_last` must be"):
        model.log_likelihood(_binary_images(2), num_samples=2, channels_last="yes")


@pytest.mark.filterwarnings("ignore:posterior collapse")  # an untrained model
def test_iwae_bf16_decoder_is_close_and_named_by_evaluate():
    """The opt-in bf16 decoder changes the estimate by rounding only (far below the 540-nat values), really
    runs in bf16 (not bit-identical), and `evaluate` names the estimator so a card cannot pass it off as fp32."""
    from hf_vae.data import TensorDictDataset
    from hf_vae.evaluation import evaluate

    torch.manual_seed(0)
    model = VAEModel(VAEConfig(**IWAE_CONFIG)).eval()
    x = _binary_images(6)
    fp32 = model.log_likelihood(x, num_samples=20, generator=torch.Generator().manual_seed(1))
    bf16 = model.log_likelihood(x, num_samples=20, generator=torch.Generator().manual_seed(1), decoder_precision="bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)
    assert (bf16 - fp32).abs().max() < 0.5 and (bf16 - fp32).mean().abs() < 0.2
    with pytest.raises(ValueError, match="`decoder_precision` must be one of"):
        model.log_likelihood(x, num_samples=2, decoder_precision="fp16")

    dataset = TensorDictDataset({"pixel_values": x})
    metrics = evaluate(model, dataset, batch_size=3, num_importance_samples=4, progress=False, decoder_precision="bf16")
    assert metrics["nll"].estimator == "IWAE, k=4, bf16 decoder"
    assert evaluate(model, dataset, batch_size=3, num_importance_samples=4, progress=False)["nll"].estimator == "IWAE, k=4"
    # A family without importance-weighted decoder passes is refused by name, before any batch is read.
    from hf_vae import VQVAEConfig, VQVAEModel

    vqvae = VQVAEModel(VQVAEConfig(image_size=28, num_channels=1, hidden_channels=[8], codebook_size=16, embedding_dim=4))
    with pytest.raises(ValueError, match=re.escape("`decoder_precision` must be fp32 for the 'vqvae' family (its test likelihood has no "
                                                   "importance-weighted decoder passes), got 'bf16'")):
        evaluate(vqvae, dataset, batch_size=3, progress=False, decoder_precision="bf16")


def test_nhwc_decoder_path_matches_the_plain_layers_and_backpropagates():
    """`ConvDecoder._forward_nhwc` (in-place ReLUs and residual sums, the one-channel last convolution as a
    matrix product) is the same function as running `convs`, values and gradients, to float rounding."""
    import torch.nn.functional as F

    from hf_vae.models.modeling_autoencoder import _single_channel_conv

    torch.manual_seed(0)
    model = VAEModel(VAEConfig(**IWAE_CONFIG)).eval()
    z = torch.randn(5, IWAE_CONFIG["latent_dim"], requires_grad=True)
    fast = model.decoder(z, memory_format=torch.channels_last)
    plain = model.decoder(z)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), z)
    (grad_plain,) = torch.autograd.grad(plain.square().sum(), z)
    torch.testing.assert_close(grad_fast, grad_plain, rtol=1e-4, atol=1e-5)

    x = torch.randn(3, 7, 6, 5).contiguous(memory_format=torch.channels_last)  # not square: rows vs columns
    weight, bias = torch.randn(1, 7, 3, 3), torch.randn(1)
    for b in (bias, None):
        torch.testing.assert_close(_single_channel_conv(x, weight, b), F.conv2d(x, weight, b, padding=1), rtol=1e-5, atol=1e-5)


def test_decoder_keeps_channels_last_weights_in_channels_last_grids():
    """Training with `channels_last: true` makes the weights NHWC; the dense stem's view is NCHW, and
    layers fed mixed layouts ran ReLU's backward ~70x slower. The decoder now hands its layers an NHWC
    grid (same values); a model in the default layout is untouched (bit-identical to older releases)."""
    torch.manual_seed(0)
    model = VAEModel(VAEConfig(**IWAE_CONFIG)).eval()
    z = torch.randn(3, IWAE_CONFIG["latent_dim"])
    seen = []
    model.decoder.convs[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    plain = model.decoder(z)
    assert seen[-1].is_contiguous()
    model.to(memory_format=torch.channels_last)
    nhwc = model.decoder(z)
    assert seen[-1].is_contiguous(memory_format=torch.channels_last) and not seen[-1].is_contiguous()
    torch.testing.assert_close(nhwc, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_trainer_steps_with_the_fused_adamw(tmp_path, monkeypatch):
    """The training loop builds the fused AdamW on CPU (one kernel per parameter, profiled faster)."""
    from pathlib import Path

    from hf_vae.training import Recipe, train

    built = []

    class Recording(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    recipe = Path(__file__).resolve().parents[1] / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
    train(Recipe.from_yaml(recipe, [f"training.output_dir={tmp_path / 'run'}", "training.max_steps=2",
                                    "training.progress=false", "evaluation.num_importance_samples=0"]))
    assert len(built) == 1 and built[0].defaults["fused"] is True
    assert all(built[0].state[p]["step"] == 2 for p in built[0].state)


def test_recipe_decoder_precision_reaches_the_test_evaluation_and_is_checked(tmp_path):
    """`evaluation.decoder_precision: bf16` makes the trainer's test NLL the bf16-decoder estimate (named so in
    metrics.json); an unknown value, or a family without importance-weighted decoder passes, fails on load."""
    import json
    from pathlib import Path

    from hf_vae.training import Recipe, train

    recipes = Path(__file__).resolve().parents[1] / "hf_vae" / "recipes"
    common = ["training.max_steps=2", "training.progress=false", "evaluation.num_importance_samples=3"]
    run_dir = train(Recipe.from_yaml(recipes / "vae_digits_tiny.yaml", [f"training.output_dir={tmp_path / 'run'}", *common,
                                                                        "evaluation.decoder_precision=bf16"]))
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["nll"]["estimator"] == "IWAE, k=3, bf16 decoder"
    with pytest.raises(ValueError, match=re.escape("`evaluation.decoder_precision` must be one of ('fp32', 'bf16'), got 'fp16'")):
        Recipe.from_yaml(recipes / "vae_digits_tiny.yaml", ["evaluation.decoder_precision=fp16"])
    with pytest.raises(ValueError, match="`evaluation.decoder_precision` must be fp32 for the 'vqvae' family"):
        Recipe.from_yaml(recipes / "vqvae_digits_tiny.yaml", ["evaluation.decoder_precision=bf16"])
