"""ModelOutput dataclasses shared by the families. `loss` is what the trainer minimises; the other
fields are the named terms it logs (all scalars are batch means in nats unless the name says otherwise)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class VAEOutput(ModelOutput):
    """Output of the VAE family's `forward`.

    Args:
        loss: scalar objective, -ELBO with the KL weighted by beta (times the warm-up factor during
            training) and free bits applied; what the trainer minimises.
        reconstruction_loss: scalar, mean over the batch of -log p(x|z) in nats.
        kl_loss: scalar, mean over the batch of KL(q(z|x) || p(z)) in nats (no beta, no free bits).
        elbo: (B,) per-example evidence lower bound log p(x|z) - KL in nats (beta = 1).
        posterior_mean: (B, latent_dim) mean of q(z|x).
        posterior_logvar: (B, latent_dim) log-variance of q(z|x).
        latents: (B, latent_dim) the z that was decoded.
        reconstruction: (B, C, H, W) mean of p(x|z) in [0, 1] for the decoded z.
    """

    loss: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    kl_loss: torch.Tensor | None = None
    elbo: torch.Tensor | None = None
    posterior_mean: torch.Tensor | None = None
    posterior_logvar: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
