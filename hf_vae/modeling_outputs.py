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


@dataclass
class TokenPriorOutput(ModelOutput):
    """Output of the token priors' `forward` (PixelCNN and transformer over token grids).

    Args:
        loss: scalar objective, the mean negative log-likelihood per token in nats (cross-entropy).
        logits: unnormalised log-probabilities of each token given the tokens before it in raster order:
            (B, vocab_size, H, W) for the PixelCNN, (B, sequence_length, vocab_size) for the transformer.
        log_likelihood: (B,) exact log p(tokens) per example in nats (sum over the scored tokens).
        past_key_values: the transformer's key/value cache when `use_cache=True`.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    log_likelihood: torch.Tensor | None = None
    past_key_values: object | None = None


@dataclass
class VQVAEOutput(ModelOutput):
    """Output of the VQ-VAE family's `forward`.

    Args:
        loss: scalar objective, reconstruction_loss + codebook_loss + commitment_loss (van den Oord et
            al. 2017, eq. 3); what the trainer minimises.
        reconstruction_loss: scalar, mean over the batch of -log p(x|z_q) in nats.
        codebook_loss: scalar, mean over the batch of ||sg[z_e] - e||^2 (summed over the code grid);
            0 when the codebook is learned by EMA.
        commitment_loss: scalar, mean over the batch of commitment_cost * ||z_e - sg[e]||^2 (already weighted).
        perplexity: scalar, exp of the entropy of the batch's code usage (1 = one code, codebook_size = uniform).
        codes_used_fraction: scalar, fraction of the codebook used by the batch.
        dead_codes: scalar (long), codes assigned fewer than `dead_code_threshold` vectors in the batch.
        restarted_codes: scalar (long), dead codes this training step moved onto encoder outputs (0 in
            eval mode or without `restart_dead_codes`); the trainer logs it with the loss terms.
        indices: (B, h, w) long, the code ids.
        reconstruction: (B, C, H, W) mean of p(x|z_q) in [0, 1].
    """

    loss: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    perplexity: torch.Tensor | None = None
    codes_used_fraction: torch.Tensor | None = None
    dead_codes: torch.Tensor | None = None
    restarted_codes: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None


@dataclass
class EncoderOutput(ModelOutput):
    """Output of the VAE / CVAE `encode` (the shape of diffusers' `AutoencoderKLOutput`).

    Args:
        latent_dist: the posterior q(z|x) (CVAE: q(z|x, y)), a `hf_vae.distributions.DiagonalGaussian`
            over (B, latent_dim): `.mean`, `.logvar`, `.std`, `.mode()`, `.sample(generator)`, `.kl()`.
    """

    latent_dist: object | None = None


@dataclass
class VQEncoderOutput(ModelOutput):
    """Output of the VQ-VAE `encode`.

    Args:
        latents: (B, embedding_dim, h, w) the encoder outputs z_e, before quantization.
        indices: (B, h, w) long, the ids of their nearest codes (the tokens a prior models).
    """

    latents: torch.Tensor | None = None
    indices: torch.Tensor | None = None


@dataclass
class DecoderOutput(ModelOutput):
    """Output of `decode` (VAE, CVAE, VQ-VAE), as diffusers' `DecoderOutput`.

    Args:
        sample: (B, C, H, W) images in [0, 1]: the mean of p(x|z), or a draw from it (`output="sample"`).
    """

    sample: torch.Tensor | None = None


@dataclass
class ScoreOutput(ModelOutput):
    """Output of `score`: how unlikely each image is under the model (higher = more unusual).

    Args:
        score: (B,) per-image score in nats (a negative log-likelihood, or its stand-in for a VQ-VAE).
        estimator: how the score was computed ("IWAE, k=100", "exact", ...), printed verbatim.
        num_dims: dimensions per image for bits/dim (C * H * W), or None when the score is not of pixels
            (the code grid of a prior over VQ-VAE codes).
    """

    score: torch.Tensor | None = None
    estimator: str | None = None
    num_dims: int | None = None

