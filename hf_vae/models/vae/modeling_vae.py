"""A convolutional VAE / β-VAE as a Hugging Face model (Kingma & Welling 2014; Higgins et al. 2017).

Read top-down: the Gaussian encoder and decoder (the shared convolutional core of
`models/modeling_autoencoder.py` plus a dense bottleneck) -> `VAEModel` (the prior p(z), forward = the
negative ELBO or importance-weighted bound with named terms, then the public methods `encode`, `decode`,
`sample`, `reconstruct`, `interpolate`, `latent_arithmetic`, `log_likelihood`). The probability maths
lives in `hf_vae/distributions.py` and `hf_vae/likelihoods.py`, the VampPrior's pseudo-inputs in `vamp_prior.py`.

`VAEModel` is also the body of the conditional VAE: everything that depends on a condition goes through
two hooks, `_condition` (labels -> the vector the encoder and decoder read, `None` here) and
`_forward_condition` (the same in `forward`, where the CVAE also drops labels), so the CVAE overrides
how the label enters and reuses the objective, the importance sampling, interpolation and the checks.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from ...distributions import DiagonalGaussian, log_mean_exp, standard_normal, standard_normal_log_prob, uniform
from ...likelihoods import get_likelihood, warn_if_not_a_likelihood
from ...modeling_outputs import EncoderOutput, ScoreOutput, VAEOutput
from ...modeling_utils import SamplingMixin
from ...validation import check_bool, check_choice, check_float, check_generator, check_int, check_labels, check_latents
from ..modeling_autoencoder import AutoencoderPreTrainedModel, ConvDecoder, ConvEncoder
from .configuration_vae import VAEConfig
from .vamp_prior import VampPseudoInputs

INTERPOLATIONS = ("linear", "slerp")


class GaussianEncoder(ConvEncoder):
    """(B, C, H, W) images [and (B, L) condition vectors] -> (B, 2 * latent_dim): mean and log-variance
    of q(z|x[, c]). A condition is broadcast over the image and enters as L extra input channels."""

    def __init__(self, config: VAEConfig, condition_dim: int = 0):
        super().__init__(config, config.num_channels + condition_dim)
        self.to_moments = nn.Linear(config.hidden_channels[-1] * self.bottom**2, 2 * config.latent_dim)

    def forward(self, pixel_values: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            maps = condition[:, :, None, None].expand(-1, -1, *pixel_values.shape[2:])
            pixel_values = torch.cat([pixel_values, maps], dim=1)
        # fp32 out even under bf16 autocast: the KL and likelihood are sums over many terms.
        return self.to_moments(self.convs(pixel_values).flatten(1)).float()


class GaussianDecoder(ConvDecoder):
    """(B, latent_dim) latents [and (B, L) condition vectors, concatenated to z] -> (B, num_outputs, H, W):
    the parameters of p(x|z[, c]) (logits, or mean and log-scale)."""

    def __init__(self, config: VAEConfig, num_outputs: int, condition_dim: int = 0):
        super().__init__(config, num_outputs, in_features=config.latent_dim + condition_dim)

    def forward(self, latents: torch.Tensor, condition: torch.Tensor | None = None,
                memory_format: torch.memory_format | None = None) -> torch.Tensor:
        if condition is not None:
            latents = torch.cat([latents, condition], dim=1)
        return super().forward(latents, memory_format)


class VAEPreTrainedModel(AutoencoderPreTrainedModel):
    config_class = VAEConfig


class VAEModel(SamplingMixin, VAEPreTrainedModel):
    """Convolutional VAE with a diagonal Gaussian posterior, a configurable p(x|z) and a N(0, I) prior, or
    the VampPrior (`config.prior`).

    `forward(pixel_values)` returns the negative ELBO (`loss`, KL weighted by `config.beta`), or with
    `config.train_importance_samples` k > 1 the negative IWAE_k bound, and the ELBO's terms.
    Methods take `labels` like the CVAE's, so the families share one vocabulary; here any `labels` other
    than `None` (and any `guidance_scale` other than 1) raises.
    """

    takes_global_step = True
    evaluator = "gaussian_latent"
    card_template = "vae.md.j2"
    capabilities = frozenset({"sample", "encode", "reconstruct", "score", "interpolate"})
    sample_options = frozenset({"output"})
    reconstruct_options = frozenset({"generator", "sample_posterior"})
    score_options = frozenset({"num_importance_samples", "generator"})

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        self.likelihood = get_likelihood(config.likelihood, config.likelihood_scale, config.num_mixtures)
        self._build(config)
        self._build_prior(config)
        self.post_init()

    def _build(self, config: VAEConfig) -> None:
        """The modules; the CVAE adds its label embedding and widens encoder and decoder by its size."""
        self.encoder = GaussianEncoder(config)
        self.decoder = GaussianDecoder(config, self.likelihood.num_outputs(config.num_channels))

    def _build_prior(self, config: VAEConfig) -> None:
        """The VampPrior's pseudo-inputs, for the VAE and the CVAE, built after the modules of `_build` (so a
        seeded model with the standard normal prior initialises as before the option existed)."""
        if config.prior == "vamp":
            self.pseudo_inputs = VampPseudoInputs(config)

    # -- hooks: how a condition enters (the CVAE overrides these) ------------------------------------

    def _condition(self, labels, batch_size: int, required: bool = False, name: str = "labels") -> torch.Tensor | None:
        """The (B, L) vector encoder and decoder read for `labels`; `None` for an unconditional model."""
        check_labels(labels, None, batch_size, name)  # any labels raise: the VAE is unconditional
        return None

    def _forward_condition(self, labels, batch_size: int, generator: torch.Generator | None) -> torch.Tensor | None:
        """The condition of `forward`'s batch; the VAE ignores the batch's labels (every family takes one batch)."""
        return None

    # -- checks -----------------------------------------------------------------------------------

    def _check_latents(self, latents) -> None:
        check_latents(latents, (self.config.latent_dim,), dtype=self.dtype)

    # -- the prior p(z) -------------------------------------------------------------------------------

    def prior_components(self) -> DiagonalGaussian | None:
        """The VampPrior's K mixture components q(z | u_k), a `DiagonalGaussian` over (K, latent_dim) (the
        CVAE encodes the pseudo-inputs with its null label, so p(z) ignores the class); None for N(0, I)."""
        if self.config.prior == "standard_normal":
            return None
        pseudo_inputs = self.pseudo_inputs().to(self.dtype)
        condition = self._condition(None, pseudo_inputs.shape[0])
        return DiagonalGaussian(*self.encoder(pseudo_inputs, condition).chunk(2, dim=1))

    def prior_log_prob(self, latents: torch.Tensor, components: DiagonalGaussian | None = None) -> torch.Tensor:
        """log p(z) in nats for latents (..., latent_dim) -> (...). The VampPrior encodes its pseudo-inputs
        unless `components` (`prior_components()`, computed once for many calls) are passed."""
        if self.config.prior == "standard_normal":
            return standard_normal_log_prob(latents.reshape(-1, latents.shape[-1])).view(latents.shape[:-1])
        return (components if components is not None else self.prior_components()).mixture_log_prob(latents)

    # -- the objective ------------------------------------------------------------------------------

    def kl_weight(self, global_step: int | None = None) -> float:
        """beta times the linear warm-up factor min(1, (step + 1) / kl_warmup_steps); beta outside training."""
        if global_step is None or self.config.kl_warmup_steps == 0:
            return float(self.config.beta)
        return float(self.config.beta) * min(1.0, (global_step + 1) / self.config.kl_warmup_steps)

    def schedule_values(self, global_step: int) -> dict[str, float]:
        """The KL weight at `global_step` (logged by the trainer)."""
        return {"kl_weight": self.kl_weight(global_step)}

    def _objective(self, pixel_values, labels, generator, global_step) -> VAEOutput:
        """`forward`: the training objective with k = `config.train_importance_samples` posterior samples,
        drawn in turn with `generator` (the CVAE drops labels with it first); the KL, or inside the weights
        log p(z) - log q(z|x), is weighted by `kl_weight(global_step)`, `None` giving the full `beta`.

        k = 1 is the negative ELBO: closed-form KL for N(0, I) (with free bits), a one-sample estimate
        log q(z|x) - log p(z) for the VampPrior. k > 1 is -IWAE_k = -log (1/k) sum_i w_i, log w_i =
        log p(x|z_i) + kl_weight * (log p(z_i) - log q(z_i|x)) (Burda et al. 2016), mean over the batch:
        a tighter bound on log p(x), reached at the end of the warm-up. The named terms are the ELBO's at
        the first sample, which is the draw that k = 1 takes.
        """
        batch, k = pixel_values.shape[0], self.config.train_importance_samples
        condition = self._forward_condition(labels, batch, generator)
        posterior = DiagonalGaussian(*self.encoder(pixel_values, condition).chunk(2, dim=1))
        # k draws of (B, D), stacked sample-major: (k * B, D), row i * B + b is sample i of image b.
        latents = posterior.rsample(generator) if k == 1 else torch.cat([posterior.rsample(generator) for _ in range(k)])
        params = self.decoder(latents, _repeat(condition, k))
        log_px_z = self.likelihood.log_prob(params, _repeat(pixel_values, k)).view(k, batch)  # (k, B)

        prior = self.prior_components()
        if prior is None:
            kl = posterior.kl()  # (B,) closed form
        else:
            kl = posterior.log_prob(latents[:batch]) - prior.mixture_log_prob(latents[:batch])  # (B,) one sample
        reconstruction_loss = -log_px_z[0].mean()
        weight = self.kl_weight(global_step)
        if k > 1:
            samples = latents.view(k, batch, -1)
            log_weights = log_px_z + weight * (self.prior_log_prob(samples, prior) - posterior.log_prob(samples))
            loss = -log_mean_exp(log_weights, dim=0).mean()
        elif self.config.free_bits > 0:
            # Free bits: each dimension's batch-mean KL counts at least `free_bits` nats in the loss.
            loss = reconstruction_loss + weight * posterior.kl_per_dim().mean(dim=0).clamp(min=self.config.free_bits).sum()
        else:
            loss = reconstruction_loss + weight * kl.mean()

        return VAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            kl_loss=kl.mean(),
            elbo=log_px_z[0] - kl,
            posterior_mean=posterior.mean,
            posterior_logvar=posterior.logvar,
            latents=latents[:batch],
            reconstruction=self.likelihood.mean(params[:batch]),
        )

    # -- public methods -------------------------------------------------------------------------------

    def encode(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, return_dict: bool = True):
        """q(z|x) for images (B, C, H, W) in [0, 1] (CVAE: q(z|x, y), `labels` (B,) required).

        Returns `EncoderOutput(latent_dist=DiagonalGaussian)` (or the tuple `(latent_dist,)`).
        """
        self._check_pixel_values(pixel_values)
        condition = self._condition(labels, pixel_values.shape[0], required=True)
        posterior = DiagonalGaussian(*self.encoder(pixel_values, condition).chunk(2, dim=1))
        return EncoderOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(
        self,
        latents: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        output: str = "mean",
        guidance_scale: float = 1.0,
        return_dict: bool = True,
    ):
        """Images from latents (B, latent_dim): `DecoderOutput(sample=(B, C, H, W))`, the mean of p(x|z) or a draw.

        Args:
            labels: CVAE only: class ids (B,); `None` decodes unconditionally (the null label).
            generator: drives the draw when `output="sample"`.
            output: `"mean"` (probabilities for Bernoulli; smooth images) or `"sample"` (pixels drawn from p(x|z)).
            guidance_scale: CVAE only, classifier-free guidance s >= 0: the decoder's logits (Bernoulli) or
                mean (Gaussians) become uncond + s * (cond - uncond). 1 is plain conditional decoding,
                0 unconditional, > 1 sharpens the class.
            return_dict: return a `DecoderOutput` (default) or the tuple `(images,)`.
        """
        self._check_latents(latents)
        self._check_decode_args(output, generator)
        self._check_guidance(guidance_scale, labels)
        condition = self._condition(labels, latents.shape[0])
        params = self.decoder(latents, condition)
        if guidance_scale != 1:
            unconditional = self.decoder(latents, self._condition(None, latents.shape[0]))
            params = self.likelihood.guide(params, unconditional, float(guidance_scale))
        return self._images(params, output, generator, return_dict)

    def _draw(self, num_samples: int, *, generator, labels, temperature, guidance_scale,
                output: str = "mean") -> torch.Tensor:
        """`sample` for the VAE family: N images (N, C, H, W), z from the prior, then `decode` (CVAE: given
        `labels`, with classifier-free `guidance_scale`). N(0, I): z ~ N(0, temperature^2 I); VampPrior: a
        component k uniformly per image, then z ~ N(mean_k, temperature^2 var_k).

        Options: `output`, `"mean"` (the mean of p(x|z), default) or `"sample"` (pixels drawn from it).
        """
        self._check_decode_args(output, generator)
        latents = temperature * standard_normal(
            (num_samples, self.config.latent_dim), generator=generator, device=self.device, dtype=self.dtype
        )
        prior = self.prior_components()
        if prior is not None:
            # Component ids floor(K u), u ~ U[0, 1), drawn after the noise (so N(0, I) sampling is unchanged).
            u = uniform((num_samples,), generator=generator, device=self.device, dtype=torch.float32)
            pick = (u * self.config.num_pseudo_inputs).long().clamp(max=self.config.num_pseudo_inputs - 1)
            latents = prior.mean[pick] + prior.std[pick] * latents
        return self.decode(latents, labels, generator=generator, output=output, guidance_scale=guidance_scale).sample

    @torch.no_grad()
    def reconstruct(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, *,
                    generator: torch.Generator | None = None, sample_posterior: bool = False) -> torch.Tensor:
        """Mean of p(x|z) at the posterior mean (or at a posterior sample when `sample_posterior`); CVAE: given `labels`."""
        posterior = self.encode(pixel_values, labels).latent_dist
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(latents, labels).sample

    @torch.no_grad()
    def interpolate(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        steps: int = 8,
        method: str = "linear",
        *,
        label_a: int | torch.Tensor | None = None,
        label_b: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode `steps` points between the posterior means of two images; returns (steps, C, H, W).

        Args:
            image_a, image_b: (C, H, W) or (1, C, H, W) images in [0, 1].
            method: `"linear"`, or `"slerp"` (spherical, keeps the norm typical of N(0, I) samples).
            label_a, label_b: CVAE only: the images' classes; the condition moves linearly alongside z,
                so the ends are the reconstructions.
        """
        check_int("steps", steps, minimum=2)
        check_choice("method", method, INTERPOLATIONS)
        ends, conditions = [], []
        for name, image, label_name, label in (("image_a", image_a, "label_a", label_a), ("image_b", image_b, "label_b", label_b)):
            if isinstance(image, torch.Tensor) and image.ndim == 3:
                image = image.unsqueeze(0)
            if isinstance(image, torch.Tensor) and image.shape[0] != 1:
                raise ValueError(f"`{name}` must be one image (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
            self._check_pixel_values(image, name)
            if isinstance(label, numbers.Integral) and not isinstance(label, bool):
                label = torch.tensor([int(label)])
            elif isinstance(label, torch.Tensor) and label.ndim == 0:
                label = label.reshape(1)
            condition = self._condition(label, 1, required=True, name=label_name)
            ends.append(DiagonalGaussian(*self.encoder(image, condition).chunk(2, dim=1)).mode()[0])
            conditions.append(condition)
        t = torch.linspace(0.0, 1.0, steps, device=ends[0].device, dtype=ends[0].dtype)[:, None]
        latents = slerp(ends[0], ends[1], t) if method == "slerp" else (1 - t) * ends[0] + t * ends[1]
        condition = None if conditions[0] is None else (1 - t) * conditions[0] + t * conditions[1]
        return self.likelihood.mean(self.decoder(latents, condition))

    @torch.no_grad()
    def latent_arithmetic(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        image_c: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        scale: float = 1.0,
    ) -> torch.Tensor:
        """Decode z_a + scale * (z_b - z_c) from the posterior means of three batches of images
        (B, C, H, W) (or one image each, broadcast against the others); returns (B, C, H, W).

        The classic "a is to c what ? is to b": with b = a smiling face and c = the same face neutral, the
        difference is a direction in latent space that is added to a. CVAE: `labels` (B,) condition all
        three encodings and the decoding, so the arithmetic acts on the style within that class.
        """
        check_float("scale", scale)
        images = {"image_a": image_a, "image_b": image_b, "image_c": image_c}
        for name, image in images.items():
            self._check_pixel_values(image, name)
        batch = max(image.shape[0] for image in images.values())
        for name, image in images.items():
            if image.shape[0] not in (1, batch):
                raise ValueError(f"`{name}` must hold 1 or {batch} images (the largest batch), got {image.shape[0]}")
        condition = self._condition(labels, batch, required=True)
        means = [
            DiagonalGaussian(*self.encoder(image.expand(batch, -1, -1, -1), condition).chunk(2, dim=1)).mode()
            for image in images.values()
        ]
        latents = means[0] + float(scale) * (means[1] - means[2])
        return self.likelihood.mean(self.decoder(latents, condition))

    @torch.no_grad()
    def score(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, *,
              num_importance_samples: int = 100, generator: torch.Generator | None = None) -> ScoreOutput:
        """-log p(x) per image in nats by importance sampling with k = `num_importance_samples` (an upper
        bound on the NLL that tightens with k; k = 1 is the single-sample ELBO). CVAE: -log p(x|y) given
        `labels`, -log p(x) without."""
        k = num_importance_samples
        log_px = self.log_likelihood(pixel_values, labels, num_samples=k, generator=generator)
        return ScoreOutput(score=-log_px, estimator="ELBO, 1 sample" if k == 1 else f"IWAE, k={k}",
                           num_dims=pixel_values[0].numel())

    @torch.no_grad()
    def log_likelihood(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        num_samples: int = 1000,
        generator: torch.Generator | None = None,
        chunk_size: int = 128,
        channels_last: bool | None = None,
        decoder_precision: str = "fp32",
    ) -> torch.Tensor:
        """Importance-weighted estimate of log p(x) per example in nats (Burda et al. 2016), shape (B,).

        log p(x) ~= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x), k = `num_samples`. It is
        a lower bound that tightens as k grows (k = 1 is the ELBO). The k samples are drawn in chunks of
        about `chunk_size` decoder passes (at least one sample of the whole batch), so k = 1000 fits in
        memory at any batch size; the estimate does not depend on `chunk_size`. CVAE: log p(x|y) given
        `labels`, or log p(x) of the unconditional model (null label) for `labels=None`.

        The k decoder passes are nearly all the work. `channels_last` (None = on CPU) runs them on NHWC
        grids, oneDNN's fast layout, through `ConvDecoder._forward_nhwc` (in-place ReLUs and residual sums,
        the one-channel last convolution as a matrix product): the same estimate to float rounding (2e-5
        nats per image measured) in ~2x less time than the NCHW reference, ~1.3-1.5x less than the plain
        NHWC layers (benchmarks/results/iwae_speed.md); its 3x3 convolutions already run near the CPU's
        fp32 peak, so fp32 has little left to gain. `decoder_precision="bf16"` runs them under bf16
        autocast (the encoder, the likelihood and the weights stay fp32): ~1.5-2x faster again on CPUs
        with bf16 instructions, at a measured error of the mean estimate below 0.01 nats but up to ~0.2
        nats per image (benchmarks/results/iwae_speed.md); the default "fp32" is the exact reference.
        """
        check_int("num_samples", num_samples, minimum=1)
        check_generator(generator)
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        check_bool("channels_last", channels_last)
        check_choice("decoder_precision", decoder_precision, ("fp32", "bf16"))
        # The layout option is the convolutional decoder's (a decoder swapped in for a test takes no such option).
        layout = {"memory_format": torch.channels_last} if channels_last and isinstance(self.decoder, ConvDecoder) else {}
        bf16 = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=decoder_precision == "bf16")
        self._check_pixel_values(pixel_values)
        warn_if_not_a_likelihood(self.likelihood, pixel_values)  # e.g. Bernoulli on grey pixels
        batch = pixel_values.shape[0]
        condition = self._condition(labels, batch)
        posterior = DiagonalGaussian(*self.encoder(pixel_values, condition).chunk(2, dim=1))
        # Small decoder batches stay in the CPU caches: 128 passes per call ran ~2x faster than 2048.
        per_chunk = max(1, chunk_size // batch)
        prior = self.prior_components()  # the VampPrior's pseudo-inputs, encoded once (None: N(0, I))
        log_weights = []  # chunks of (s, B)
        for start in range(0, num_samples, per_chunk):
            s = min(per_chunk, num_samples - start)
            # One (B, D) draw per sample, so the estimate does not depend on `chunk_size`.
            eps = torch.stack([
                standard_normal(posterior.mean.shape, generator=generator, device=self.device, dtype=self.dtype)
                for _ in range(s)
            ])
            z = posterior.mean + posterior.std * eps  # (s, B, D)
            with bf16:  # the decoder returns fp32 parameters either way
                params = self.decoder(z.flatten(0, 1), None if condition is None else condition.repeat(s, 1), **layout)
            log_px_z = self.likelihood.log_prob(params, pixel_values.repeat(s, 1, 1, 1)).view(s, batch)
            log_pz = self.prior_log_prob(z, prior)  # (s, B)
            log_qz_x = posterior.log_prob(z)  # broadcasts over the s samples: (s, B)
            log_weights.append(log_px_z + log_pz - log_qz_x)
        return log_mean_exp(torch.cat(log_weights, dim=0), dim=0)


def _repeat(tensor: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """`tensor` (B, ...) repeated k times along the batch, sample-major (k * B, ...); itself when k = 1."""
    return tensor if tensor is None or k == 1 else tensor.repeat(k, *[1] * (tensor.ndim - 1))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between vectors a and b (D,) at fractions t (T, 1); returns (T, D)."""
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:  # parallel vectors: slerp degenerates to lerp
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / math.sin(float(omega))
