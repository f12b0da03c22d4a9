"""Configuration of the conditional VAE: the VAE's fields plus the label conditioning."""

from __future__ import annotations

from ...validation import check_choice, check_float, check_int
from ..vae.configuration_vae import VAEConfig

LABEL_EMBEDDINGS = ("one_hot", "learned")


class CVAEConfig(VAEConfig):
    r"""Configuration of a class-conditional VAE (Sohn et al. 2015) with label dropout for
    classifier-free guidance (Ho & Salimans 2022).

    Takes every field of [`VAEConfig`] (same names, defaults and checks), plus:

    Args:
        num_classes (`int`, defaults to 10): number of classes; labels are ids in `[0, num_classes)`.
            The label vocabulary has one more entry, the "null" label `num_classes`, which stands for
            "no label" (unconditional encoding and decoding).
        label_embedding (`str`, defaults to `"learned"`): `"learned"` (a trained table of
            `label_embedding_dim`-vectors) or `"one_hot"` (fixed one-hot vectors of size `num_classes + 1`).
        label_embedding_dim (`int`, defaults to 16): size of the learned label embedding; ignored by `"one_hot"`.
        label_dropout (`float`, defaults to 0.1): probability that a training example's label is replaced
            by the null label, so one model learns both p(x|z, y) and p(x|z) (needed for guidance).

    The label enters the encoder as extra input channels (its embedding broadcast over the image) and
    the decoder concatenated with z; the prior p(z) (N(0, I), or the VampPrior, whose pseudo-inputs are
    encoded with the null label) does not depend on it.
    """

    model_type = "cvae"

    num_classes: int = 10
    label_embedding: str = "learned"
    label_embedding_dim: int = 16
    label_dropout: float = 0.1

    def _check_fields(self) -> None:
        super()._check_fields()
        check_int("num_classes", self.num_classes, minimum=2)
        check_choice("label_embedding", self.label_embedding, LABEL_EMBEDDINGS)
        check_int("label_embedding_dim", self.label_embedding_dim, minimum=1)
        check_float("label_dropout", self.label_dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)

    @property
    def label_dim(self) -> int:
        """Size of the label vector fed to encoder and decoder."""
        return self.num_classes + 1 if self.label_embedding == "one_hot" else self.label_embedding_dim
