"""A class-conditional convolutional VAE as a Hugging Face model (Sohn et al. 2015), with label dropout
so one model also decodes unconditionally, which gives classifier-free guidance (Ho & Salimans 2022).

Read top-down: label embedding -> `CVAEModel`. The CVAE is the VAE of `modeling_vae.py` with a
condition: the label's vector enters the encoder as extra input channels and the decoder concatenated
with z (the VAE's `GaussianEncoder` / `GaussianDecoder`, widened by `config.label_dim`). It overrides
only the VAE's condition hooks (`_condition`, `_forward_condition`); the objective, the importance
sampling, decoding with guidance, interpolation and the checks are the VAE's, and so are the prior options.
The prior p(z) ignores the label (N(0, I), or the VampPrior with its pseudo-inputs encoded under the null
label). The label vocabulary has a "null" entry, id `num_classes` (`null_label`), meaning
"no label"; methods take `labels=None` for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...distributions import uniform
from ..vae.modeling_vae import GaussianDecoder, GaussianEncoder, VAEModel
from .configuration_cvae import CVAEConfig


class LabelEmbedding(nn.Module):
    """Class ids (B,) in [0, num_classes] (num_classes = null) -> label vectors (B, config.label_dim)."""

    def __init__(self, config: CVAEConfig):
        super().__init__()
        self.num_embeddings = config.num_classes + 1
        self.one_hot = config.label_embedding == "one_hot"
        if not self.one_hot:
            self.table = nn.Embedding(self.num_embeddings, config.label_embedding_dim)

    def forward(self, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.one_hot:
            return F.one_hot(labels, self.num_embeddings).to(dtype)
        return self.table(labels).to(dtype)


class CVAEModel(VAEModel):
    """Conditional VAE: q(z|x, y), p(z) (N(0, I) or the VampPrior), p(x|z, y), with label dropout for classifier-free guidance.

    `forward(pixel_values, labels)` returns the negative conditional ELBO (`loss`, KL weighted by
    `config.beta`) and its terms, as the VAE does. `encode`, `reconstruct` and `interpolate` need the
    images' labels; `decode`, `sample` and `log_likelihood` take `labels=None` for the null label.
    """

    config_class = CVAEConfig
    evaluator = "cvae"
    card_template = "cvae.md.j2"

    def _build(self, config: CVAEConfig) -> None:
        self.label_embedding = LabelEmbedding(config)
        self.encoder = GaussianEncoder(config, condition_dim=config.label_dim)
        self.decoder = GaussianDecoder(config, self.likelihood.num_outputs(config.num_channels), condition_dim=config.label_dim)

    @property
    def is_conditional(self) -> bool:
        return True

    @property
    def null_label(self) -> int:
        """The label id meaning "no label" (unconditional encoding/decoding)."""
        return self.config.num_classes

    # -- the condition hooks ------------------------------------------------------------------------

    def _labels(self, labels, batch_size: int, required: bool, name: str = "labels") -> torch.Tensor:
        """Checked class ids (B,) long on the model's device, from ids or class names (`class_ids`); `None`
        -> the null label unless `required`."""
        if labels is None:
            if required:
                raise ValueError(
                    f"`{name}` must be an integer tensor of class ids in [0, {self.config.num_classes}) "
                    f"of shape ({batch_size},), got None"
                )
            return torch.full((batch_size,), self.null_label, dtype=torch.long, device=self.device)
        return self.class_ids(labels, batch_size, name).to(device=self.device, dtype=torch.long)

    def _condition(self, labels, batch_size: int, required: bool = False, name: str = "labels") -> torch.Tensor:
        """Label vectors (B, label_dim) of class ids (B,); `None` is the null label unless `required`."""
        return self.label_embedding(self._labels(labels, batch_size, required, name), self.dtype)

    def _forward_condition(self, labels, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """The batch's labels (required), after label dropout in training mode, as label vectors."""
        return self.label_embedding(self.drop_labels(self._labels(labels, batch_size, True), generator), self.dtype)

    def drop_labels(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """In training mode, replace each label by the null label with probability `config.label_dropout`."""
        if not self.training or self.config.label_dropout == 0:
            return labels
        u = uniform(labels.shape, generator=generator, device=labels.device, dtype=torch.float32)
        return torch.where(u < self.config.label_dropout, torch.full_like(labels, self.null_label), labels)

    # -- public methods whose signature names the labels --------------------------------------------

    @torch.no_grad()
    def interpolate(
        self,
        image_a: torch.Tensor,
        image_b: torch.Tensor,
        label_a: int | torch.Tensor,
        label_b: int | torch.Tensor,
        steps: int = 8,
        method: str = "linear",
    ) -> torch.Tensor:
        """Decode `steps` points between (z_a, y_a) and (z_b, y_b); returns (steps, C, H, W).

        z_a, z_b are the posterior means of the two images given their labels; z moves linearly or by
        `"slerp"`, and the label embedding moves linearly alongside (so the ends are the reconstructions).
        Equal labels interpolate the style within one class.
        """
        return super().interpolate(image_a, image_b, steps, method, label_a=label_a, label_b=label_b)
