"""A convolutional VAE / β-VAE as a Hugging Face model (Kingma & Welling 2014; Higgins et al. 2017).

Read top-down: blocks -> encoder -> decoder -> `VAEModel` (forward = negative ELBO with named terms,
then the public methods `encode`, `decode`, `sample`, `reconstruct`, `interpolate`, `log_likelihood`).
The probability maths lives in `hf_vae/distributions.py`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...distributions import DiagonalGaussian, get_likelihood, log_mean_exp, standard_normal, standard_normal_log_prob
from ...modeling_outputs import VAEOutput
from ...modeling_utils import HfVaePreTrainedModel
from ...validation import check_generator, check_pixel_values
from .configuration_vae import VAEConfig

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU}


class ResidualBlock(nn.Module):
    """x + conv3x3(act(dropout(conv3x3(act(x))))), width and resolution kept."""

    def __init__(self, channels: int, activation: str, dropout: float):
        super().__init__()
        self.block = nn.Sequential(
            ACTIVATIONS[activation](),
            nn.Conv2d(channels, channels, 3, padding=1),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class VAEEncoder(nn.Module):
    """(B, C, H, W) -> (B, 2 * latent_dim): mean and log-variance of q(z|x)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        layers, width = [], config.num_channels
        for out_width in config.hidden_channels:
            # Each stage halves the resolution: a 4x4 stride-2 conv, then residual blocks.
            layers += [nn.Conv2d(width, out_width, 4, stride=2, padding=1), ACTIVATIONS[config.activation]()]
            layers += [ResidualBlock(out_width, config.activation, config.dropout) for _ in range(config.num_res_blocks)]
            width = out_width
        self.convs = nn.Sequential(*layers)
        bottom = config.image_size // 2 ** len(config.hidden_channels)
        self.to_moments = nn.Linear(width * bottom * bottom, 2 * config.latent_dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # fp32 out even under bf16 autocast: the KL and likelihood are sums over many terms.
        return self.to_moments(self.convs(pixel_values).flatten(1)).float()


class VAEDecoder(nn.Module):
    """(B, latent_dim) -> (B, C * num_params, H, W): the parameters of p(x|z) (logits or mean/log-scale)."""

    def __init__(self, config: VAEConfig, num_params: int):
        super().__init__()
        widths = list(reversed(config.hidden_channels))
        self.bottom = config.image_size // 2 ** len(widths)
        self.from_latent = nn.Linear(config.latent_dim, widths[0] * self.bottom * self.bottom)
        layers = []
        for i, width in enumerate(widths):
            out_width = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            layers += [ResidualBlock(width, config.activation, config.dropout) for _ in range(config.num_res_blocks)]
            # Mirror of the encoder stage: a 4x4 stride-2 transposed conv doubles the resolution.
            layers += [ACTIVATIONS[config.activation](), nn.ConvTranspose2d(width, out_width, 4, stride=2, padding=1)]
        layers += [ACTIVATIONS[config.activation](), nn.Conv2d(widths[-1], config.num_channels * num_params, 3, padding=1)]
        self.convs = nn.Sequential(*layers)
        self.width = widths[0]

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        hidden = self.from_latent(latents).view(-1, self.width, self.bottom, self.bottom)
        return self.convs(hidden).float()  # the likelihood sums C*H*W terms: keep it in fp32 under autocast


class VAEPreTrainedModel(HfVaePreTrainedModel):
    config_class = VAEConfig


class VAEModel(VAEPreTrainedModel):
    """Convolutional VAE with a N(0, I) prior, a diagonal Gaussian posterior and a configurable p(x|z).

    `forward(pixel_values)` returns the negative ELBO (`loss`, KL weighted by `config.beta`) and its terms.
    """

    input_kind = "images"
    takes_global_step = True
    evaluator = "gaussian_latent"
    card_template = "vae.md.j2"
    capabilities = frozenset({"sample", "encode", "reconstruct", "score", "interpolate"})

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.likelihood = get_likelihood(config.likelihood, config.likelihood_scale)
        self.encoder = VAEEncoder(config)
        self.decoder = VAEDecoder(config, self.likelihood.num_params)
        self.post_init()

    # -- checks -----------------------------------------------------------------------------------

    def _check_pixel_values(self, pixel_values, name: str = "pixel_values") -> None:
        check_pixel_values(pixel_values, self.config.num_channels, self.config.image_size, name)

    def _check_latents(self, latents) -> None:
        if not isinstance(latents, torch.Tensor) or latents.ndim != 2 or latents.shape[1] != self.config.latent_dim:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"`latents` must be a tensor of shape (batch, {self.config.latent_dim}), got {got}")

    # -- the objective ------------------------------------------------------------------------------

    def kl_weight(self, global_step: int | None = None) -> float:
        """beta times the linear warm-up factor min(1, (step + 1) / kl_warmup_steps); beta outside training."""
        if global_step is None or self.config.kl_warmup_steps == 0:
            return float(self.config.beta)
        return float(self.config.beta) * min(1.0, (global_step + 1) / self.config.kl_warmup_steps)

    def schedule_values(self, global_step: int) -> dict[str, float]:
        """The KL weight at `global_step` (logged by the trainer)."""
        return {"kl_weight": self.kl_weight(global_step)}

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        global_step: int | None = None,
        return_dict: bool = True,
    ) -> VAEOutput | tuple:
        """Negative ELBO of `pixel_values` (B, C, H, W) in [0, 1] with one posterior sample.

        Args:
            pixel_values: images in [0, 1]; binary for the Bernoulli likelihood, 8-bit for the discretized one.
            labels: ignored (the VAE is unconditional); accepted so every family takes the same batch.
            generator: drives the posterior sample (reproducible losses).
            global_step: optimizer step, for the KL warm-up; `None` uses the full `beta`.
            return_dict: return a `VAEOutput` (default) or a tuple.
        """
        self._check_pixel_values(pixel_values)
        check_generator(generator)
        posterior = self.encode(pixel_values)
        latents = posterior.rsample(generator)
        params = self.decoder(latents)

        log_px_z = self.likelihood.log_prob(params, pixel_values)  # (B,)
        kl = posterior.kl()  # (B,)
        reconstruction_loss = -log_px_z.mean()
        if self.config.free_bits > 0:
            # Free bits: each dimension's batch-mean KL counts at least `free_bits` nats in the loss.
            kl_objective = posterior.kl_per_dim().mean(dim=0).clamp(min=self.config.free_bits).sum()
        else:
            kl_objective = kl.mean()
        loss = reconstruction_loss + self.kl_weight(global_step) * kl_objective

        output = VAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            kl_loss=kl.mean(),
            elbo=log_px_z - kl,
            posterior_mean=posterior.mean,
            posterior_logvar=posterior.logvar,
            latents=latents,
            reconstruction=self.likelihood.mean(params),
        )
        return output if return_dict else output.to_tuple()

    # -- public methods -------------------------------------------------------------------------------

    def encode(self, pixel_values: torch.Tensor) -> DiagonalGaussian:
        """q(z|x) for images (B, C, H, W) in [0, 1]."""
        self._check_pixel_values(pixel_values)
        mean, logvar = self.encoder(pixel_values).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, latents: torch.Tensor, generator: torch.Generator | None = None, output: str = "mean") -> torch.Tensor:
        """Images (B, C, H, W) from latents (B, latent_dim): the mean of p(x|z), or a draw from it.

        Args:
            output: `"mean"` (probabilities for Bernoulli; smooth images) or `"sample"` (pixels drawn
                from p(x|z) with `generator`).
        """
        self._check_latents(latents)
        if output not in ("mean", "sample"):
            raise ValueError(f"`output` must be one of ('mean', 'sample'), got {output!r}")
        params = self.decoder(latents)
        if output == "mean":
            return self.likelihood.mean(params)
        return self.likelihood.sample(params, generator)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        output: str = "mean",
    ) -> torch.Tensor:
        """Draw `num_samples` images (N, C, H, W): z ~ N(0, temperature^2 I), then `decode(z, output=output)`."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"`temperature` must be a number > 0, got {temperature!r}")
        check_generator(generator)
        latents = temperature * standard_normal(
            (num_samples, self.config.latent_dim), generator=generator, device=self.device, dtype=self.dtype
        )
        return self.decode(latents, generator=generator, output=output)

    @torch.no_grad()
    def reconstruct(
        self, pixel_values: torch.Tensor, generator: torch.Generator | None = None, sample_posterior: bool = False
    ) -> torch.Tensor:
        """Mean of p(x|z) at the posterior mean (or at a posterior sample when `sample_posterior`)."""
        posterior = self.encode(pixel_values)
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(latents)

    @torch.no_grad()
    def interpolate(
        self, image_a: torch.Tensor, image_b: torch.Tensor, steps: int = 8, method: str = "linear"
    ) -> torch.Tensor:
        """Decode `steps` points between the posterior means of two images; returns (steps, C, H, W).

        Args:
            image_a, image_b: (C, H, W) or (1, C, H, W) images in [0, 1].
            method: `"linear"`, or `"slerp"` (spherical, keeps the norm typical of N(0, I) samples).
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ValueError(f"`steps` must be an int >= 2, got {steps!r}")
        if method not in ("linear", "slerp"):
            raise ValueError(f"`method` must be one of ('linear', 'slerp'), got {method!r}")
        ends = []
        for name, image in (("image_a", image_a), ("image_b", image_b)):
            if isinstance(image, torch.Tensor) and image.ndim == 3:
                image = image.unsqueeze(0)
            if isinstance(image, torch.Tensor) and image.shape[0] != 1:
                raise ValueError(f"`{name}` must be one image (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
            self._check_pixel_values(image, name)
            ends.append(self.encode(image).mode()[0])
        t = torch.linspace(0.0, 1.0, steps, device=ends[0].device, dtype=ends[0].dtype)[:, None]
        latents = slerp(ends[0], ends[1], t) if method == "slerp" else (1 - t) * ends[0] + t * ends[1]
        return self.decode(latents)

    @torch.no_grad()
    def log_likelihood(
        self,
        pixel_values: torch.Tensor,
        num_samples: int = 1000,
        generator: torch.Generator | None = None,
        chunk_size: int = 128,
    ) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) per example in nats (Burda et al. 2016), shape (B,).

        log p(x) ~= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), k = `num_samples`. It is
        a lower bound that tightens as k grows (k = 1 is the ELBO). The k samples are drawn in chunks of
        about `chunk_size` decoder passes (at least one sample of the whole batch), so k = 1000 fits in
        memory at any batch size; the estimate does not depend on `chunk_size`.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        check_generator(generator)
        posterior = self.encode(pixel_values)
        batch = pixel_values.shape[0]
        # Small decoder batches stay in the CPU caches: 128 passes per call ran ~2x faster than 2048.
        per_chunk = max(1, chunk_size // batch)
        log_weights = []  # chunks of (s, B)
        for start in range(0, num_samples, per_chunk):
            s = min(per_chunk, num_samples - start)
            # One (B, D) draw per sample, so the estimate does not depend on `chunk_size`.
            eps = torch.stack([
                standard_normal(posterior.mean.shape, generator=generator, device=self.device, dtype=self.dtype)
                for _ in range(s)
            ])
            z = posterior.mean + posterior.std * eps  # (s, B, D)
            params = self.decoder(z.flatten(0, 1))
            log_px_z = self.likelihood.log_prob(params, pixel_values.repeat(s, 1, 1, 1)).view(s, batch)
            log_pz = standard_normal_log_prob(z.flatten(0, 1)).view(s, batch)
            log_qz_x = posterior.log_prob(z)  # broadcasts over the s samples: (s, B)
            log_weights.append(log_px_z + log_pz - log_qz_x)
        return log_mean_exp(torch.cat(log_weights, dim=0), dim=0)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between vectors a and b (D,) at fractions t (T, 1); returns (T, D)."""
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:  # parallel vectors: slerp degenerates to lerp
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / math.sin(float(omega))
