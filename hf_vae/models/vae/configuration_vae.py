"""Configuration of the VAE family (β-VAE is the same model with `beta != 1`)."""

from __future__ import annotations

from ...configuration_utils import AutoencoderConfig
from ...validation import check_choice, check_float, check_int

PRIORS = ("standard_normal", "vamp")


class VAEConfig(AutoencoderConfig):
    r"""Configuration of a convolutional VAE / β-VAE (Kingma & Welling 2014; Higgins et al. 2017).

    Takes every field of [`AutoencoderConfig`] (`image_size`, `num_channels`, `hidden_channels`,
    `num_res_blocks`, `likelihood`, `likelihood_scale`, `dropout`, `activation`), plus:

    Args:
        latent_dim (`int`, defaults to 16): dimension of z.
        beta (`float`, defaults to 1.0): weight of the KL term (β-VAE when != 1).
        kl_warmup_steps (`int`, defaults to 0): the KL weight ramps linearly from 0 to `beta` over this
            many optimizer steps (0 = no warm-up).
        free_bits (`float`, defaults to 0.0): minimum KL in nats per latent dimension in the training
            objective (Kingma et al. 2016), averaged over the batch; 0 disables it.
        train_importance_samples (`int`, defaults to 1): k of the training objective. 1 is the ELBO;
            k > 1 trains on the importance-weighted bound IWAE_k (Burda et al. 2016), k decoder passes per
            image. The warm-up weight multiplies log p(z) - log q(z|x) inside each importance weight.
            Needs `beta == 1` and `free_bits == 0` (a reweighted KL is no bound on log p(x)).
        prior (`str`, defaults to `"standard_normal"`): p(z); `"standard_normal"` is N(0, I), `"vamp"` the
            VampPrior (Tomczak & Welling 2018), the mixture (1/K) sum_k q(z | u_k) of the posteriors at K
            learned pseudo-inputs u_k. Its KL is a one-sample estimate, so it needs `free_bits == 0`.
        num_pseudo_inputs (`int`, defaults to 500): K, the VampPrior's pseudo-inputs (images in the
            model's input space: K x C x H x W more weights, 392,000 for 500 MNIST digits; each training
            step also encodes the K of them); ignored by the standard normal prior.
    """

    model_type = "vae"

    latent_dim: int = 16
    beta: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0
    train_importance_samples: int = 1
    prior: str = "standard_normal"
    num_pseudo_inputs: int = 500

    def _check_fields(self) -> None:
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_float("beta", self.beta, minimum=0.0)
        check_int("kl_warmup_steps", self.kl_warmup_steps, minimum=0)
        check_float("free_bits", self.free_bits, minimum=0.0)
        check_int("train_importance_samples", self.train_importance_samples, minimum=1)
        check_choice("prior", self.prior, PRIORS)
        check_int("num_pseudo_inputs", self.num_pseudo_inputs, minimum=1)
        # Free bits clamp a per-dimension KL, which neither the importance weights nor a mixture prior have.
        if self.free_bits != 0 and (self.train_importance_samples > 1 or self.prior != "standard_normal"):
            raise ValueError(f"`free_bits` must be 0 with train_importance_samples={self.train_importance_samples} and "
                             f"prior={self.prior!r} (free bits need the ELBO's closed-form KL to N(0, I)), got {self.free_bits!r}")
        if self.beta != 1 and self.train_importance_samples > 1:
            raise ValueError(f"`beta` must be 1 with train_importance_samples={self.train_importance_samples} "
                             f"(a reweighted KL inside the importance weights bounds nothing), got {self.beta!r}")
        super()._check_fields()  # the shared autoencoder fields
