"""Image-quality metrics of reconstructions (the VQ-VAE evaluator's PSNR and SSIM), from scikit-image."""

from __future__ import annotations

import numpy as np
import torch


def image_quality(reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (B,) PSNR in dB (peak 1, capped at 100 dB for a perfect reconstruction) and SSIM of
    images (B, C, H, W) in [0, 1], by scikit-image (`peak_signal_noise_ratio`, `structural_similarity`
    with its default 7x7 window, shrunk to the largest odd side that fits a smaller image)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    recon = reconstruction.detach().double().clamp(0, 1).cpu().numpy()
    truth = target.detach().double().cpu().numpy()
    side = min(truth.shape[-2:])
    window = min(7, side if side % 2 else side - 1)
    psnr, ssim = [], []
    for r, t in zip(recon, truth):
        with np.errstate(divide="ignore"):  # a perfect reconstruction: infinite PSNR, capped below
            psnr.append(min(100.0, peak_signal_noise_ratio(t, r, data_range=1.0)))
        ssim.append(structural_similarity(t, r, data_range=1.0, channel_axis=0, win_size=window))
    return torch.tensor(psnr), torch.tensor(ssim)
