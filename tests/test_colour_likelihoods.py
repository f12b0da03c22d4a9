"""The 8-bit likelihoods inside the autoencoder families: VAE, CVAE and VQ-VAE on RGB images with the
discretized logistic mixture (and the discretized Gaussian), guidance on each likelihood's parameters, and
the bits/dim convention evaluation states."""

import pytest
import torch

from hf_vae import CVAEConfig, CVAEModel, VAEConfig, VAEModel, VQVAEConfig, VQVAEModel, evaluate
from hf_vae.data import TensorDictDataset
from hf_vae.likelihoods import get_likelihood

RGB = dict(image_size=8, num_channels=3, hidden_channels=[8, 16], num_res_blocks=1,
           likelihood="discretized_logistic_mixture", num_mixtures=3)


def eight_bit(n=4, seed=0):
    return torch.randint(0, 256, (n, 3, 8, 8), generator=torch.Generator().manual_seed(seed)).float() / 255


@pytest.mark.parametrize("family", ["vae", "cvae", "vqvae"])
def test_families_train_and_score_rgb_images_with_the_mixture(family):
    torch.manual_seed(0)
    model = {"vae": lambda: VAEModel(VAEConfig(**RGB, latent_dim=4)),
             "cvae": lambda: CVAEModel(CVAEConfig(**RGB, latent_dim=4, num_classes=3)),
             "vqvae": lambda: VQVAEModel(VQVAEConfig(**RGB, codebook_size=8, embedding_dim=4))}[family]()
    x, labels = eight_bit(), torch.tensor([0, 1, 2, 0])
    kwargs = {"labels": labels} if family == "cvae" else {}
    # the decoder emits K * (1 + 2C + C(C-1)/2) = 3 * 10 parameters per pixel
    assert model.decoder.convs[-1].out_channels == 30
    out = model(x, **kwargs)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(p.grad is not None for p in model.decoder.parameters())
    # an 8x8x3 image has 192 subpixels of 8 bits: a fresh model spends about 8 bits on each
    assert 0.5 * 192 * 8 < out.reconstruction_loss.item() / torch.log(torch.tensor(2.0)).item() < 3 * 192 * 8
    recon = out.reconstruction
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1
    if family != "vqvae":
        draws = model.eval().sample(2, generator=torch.Generator().manual_seed(0), output="sample",
                                    **({"labels": [0, 1]} if family == "cvae" else {}))
        assert torch.equal(draws * 255, (draws * 255).round())  # on the 8-bit grid
        assert torch.isfinite(model.log_likelihood(x, num_samples=3, **kwargs)).all()


def test_cvae_guidance_moves_the_locations_and_keeps_the_spread():
    torch.manual_seed(0)
    model = CVAEModel(CVAEConfig(**RGB, latent_dim=4, num_classes=3)).eval()
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([1, 2])
    cond = model.decoder(z, model._condition(labels, 2))
    uncond = model.decoder(z, model._condition(None, 2))
    guided = model.likelihood.guide(cond, uncond, 3.0)
    k, c = 3, 3
    located = k + c * k
    torch.testing.assert_close(guided[:, :located], uncond[:, :located] + 3.0 * (cond[:, :located] - uncond[:, :located]))
    torch.testing.assert_close(guided[:, located:], cond[:, located:])  # log-scales and coefficients
    expected = model.likelihood.mean(guided)
    torch.testing.assert_close(model.decode(z, labels, guidance_scale=3.0).sample, expected)


@pytest.mark.parametrize("name, scale", [("bernoulli", None), ("gaussian", 0.1), ("gaussian", None),
                                          ("discretized_gaussian", None), ("discretized_logistic_mixture", None)])
def test_guidance_at_scale_one_is_the_conditional_and_at_zero_keeps_the_conditional_spread(name, scale):
    likelihood = get_likelihood(name, scale, num_mixtures=2)
    outputs = likelihood.num_outputs(3)
    cond, uncond = torch.randn(2, outputs, 4, 4), torch.randn(2, outputs, 4, 4)
    torch.testing.assert_close(likelihood.guide(cond, uncond, 1.0), cond)
    at_zero = likelihood.guide(cond, uncond, 0.0)
    assert at_zero.shape == cond.shape and not torch.equal(at_zero, cond)


def test_off_grid_pixels_are_flagged_and_the_convention_is_stated():
    torch.manual_seed(0)
    model = VAEModel(VAEConfig(**RGB, latent_dim=4)).eval()
    assert model.likelihood.not_a_likelihood(eight_bit()) is None
    assert "256-level grid" in model.likelihood.not_a_likelihood(eight_bit() + 0.001)
    dataset = TensorDictDataset({"pixel_values": eight_bit(6)})
    metrics = evaluate(model, dataset, batch_size=3, num_importance_samples=2, seed=0)
    assert "8-bit convention: -log2 p(x) / (C*H*W)" in metrics["bits_per_dim"].description


def test_num_mixtures_is_checked():
    with pytest.raises(ValueError, match="`num_mixtures` must be"):
        VAEConfig(**{**RGB, "num_mixtures": 0}, latent_dim=4)


def test_vqvae_reports_psnr_and_ssim_of_colour_reconstructions():
    from skimage.metrics import structural_similarity

    from hf_vae.evaluation import image_quality

    x = eight_bit(3)
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    psnr, ssim = image_quality(noisy, x)
    mse = (noisy - x).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(psnr, (-10 * mse.double().log10()))
    assert ssim[1].item() == pytest.approx(structural_similarity(x[1].double().numpy(), noisy[1].double().numpy(),
                                                                 data_range=1.0, channel_axis=0))
    perfect_psnr, perfect_ssim = image_quality(x, x)
    assert perfect_psnr.tolist() == [100.0] * 3 and perfect_ssim.tolist() == pytest.approx([1.0] * 3)
    torch.manual_seed(0)
    model = VQVAEModel(VQVAEConfig(**RGB, codebook_size=8, embedding_dim=4)).eval()
    metrics = evaluate(model, TensorDictDataset({"pixel_values": x}), batch_size=2)
    assert -1 <= metrics["ssim"].value <= 1 and metrics["psnr"].unit == "dB"


def test_a_fresh_logistic_mixture_decoder_starts_at_mid_grey_a_dozen_levels_wide():
    """`init_output_bias`: a VAE's centres at 0.5 and log-scales at -3 (not black with scales of the whole range), so a
    short run starts near where the data are; the VQ-VAE opts out (`init_likelihood_bias`: its codebook destabilised)."""
    torch.manual_seed(0)
    common = dict(image_size=8, num_channels=3, hidden_channels=[8], num_res_blocks=0, likelihood="discretized_logistic_mixture",
                  num_mixtures=2)
    bias = VAEModel(VAEConfig(latent_dim=2, **common)).decoder.convs[-1].bias  # 2 logits, 3x2 centres, 3x2 log-scales, ...
    assert (bias[2:8] - 0.5).abs().max() < 0.3 and (bias[8:14] + 3).abs().max() < 0.3 and bias[14:].abs().max() < 0.3
    vq_bias = VQVAEModel(VQVAEConfig(codebook_size=4, embedding_dim=2, **common)).decoder.convs[-1].bias
    assert vq_bias.abs().max() < 0.3
