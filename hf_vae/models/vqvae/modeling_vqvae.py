"""A convolutional VQ-VAE as a Hugging Face model (van den Oord et al. 2017).

Read top-down: `VQVAEModel` builds its encoder (image -> grid of vectors z_e) and decoder (code
vectors -> parameters of p(x|z_q)) from the shared convolutional core (`models/modeling_autoencoder.py`),
with a `VectorQuantizer` (nearest codes, in `hf_vae/quantization.py`) between them; then forward =
reconstruction + codebook + commitment terms, and the public methods `encode` / `decode` (vectors, as
diffusers' `VQModel`), `encode_to_indices` / `decode_from_indices` (code ids), `reconstruct`. The code grids (B, h, w) are the tokens a PixelCNN / transformer prior models; the
VQ-VAE has no prior of its own.
"""

from __future__ import annotations

import torch

from ...likelihoods import get_likelihood, warn_if_not_a_likelihood
from ...modeling_outputs import ScoreOutput, VQEncoderOutput, VQVAEOutput
from ...quantization import VectorQuantizer
from ...validation import check_indices, check_latents
from ..modeling_autoencoder import AutoencoderPreTrainedModel, ConvDecoder, ConvEncoder
from .configuration_vqvae import VQVAEConfig


class VQVAEPreTrainedModel(AutoencoderPreTrainedModel):
    config_class = VQVAEConfig


class VQVAEModel(VQVAEPreTrainedModel):
    """VQ-VAE: deterministic encoder, nearest-code bottleneck, decoder with a configurable p(x|z_q).

    `forward(pixel_values)` returns `loss` = -log p(x|z_q) + codebook term + commitment term and the
    codebook's health (perplexity, fraction of codes used, dead codes). In training mode it also
    maintains the codebook (EMA, k-means initialisation, dead-code restarts, as configured); in eval
    mode it changes nothing.
    """

    evaluator = "vqvae"
    card_template = "vqvae.md.j2"
    capabilities = frozenset({"encode", "reconstruct", "score"})
    # A logistic mixture sharp from the first step pushed the encoder's outputs off the codebook on natural32
    # (commitment loss 0.005 -> 0.14, perplexity 225 -> 37 by step 240, NaN gradients at 208 in a longer run).
    init_likelihood_bias = False

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        self.likelihood = get_likelihood(config.likelihood, config.likelihood_scale, config.num_mixtures)
        # z_e: a 1x1 projection to the code size after the stages, so z_e lives where the codes live.
        self.encoder = ConvEncoder(config, config.num_channels, out_channels=config.embedding_dim)
        self.quantizer = VectorQuantizer(
            codebook_size=config.codebook_size,
            embedding_dim=config.embedding_dim,
            commitment_cost=config.commitment_cost,
            use_ema=config.use_ema,
            ema_decay=config.ema_decay,
            ema_epsilon=config.ema_epsilon,
            kmeans_init=config.kmeans_init,
            restart_dead_codes=config.restart_dead_codes,
            dead_code_threshold=config.dead_code_threshold,
            dead_code_window=config.dead_code_window,
        )
        # From the (B, embedding_dim, h, w) code vectors, a 3x3 conv to the widest stage, then the stages.
        self.decoder = ConvDecoder(config, self.likelihood.num_outputs(config.num_channels), in_channels=config.embedding_dim)
        self.post_init()

    @property
    def code_grid_size(self) -> int:
        """Side of the square code grid: indices are (B, code_grid_size, code_grid_size)."""
        return self.config.code_grid_size

    # -- checks -----------------------------------------------------------------------------------

    def _check_indices(self, indices) -> None:
        check_indices(indices, self.config.codebook_size, self.code_grid_size, name="indices")

    # -- the objective ------------------------------------------------------------------------------

    def _objective(self, pixel_values, labels, generator, global_step) -> VQVAEOutput:
        """`forward`: reconstruction + codebook + commitment terms. `labels` and `global_step` are ignored;
        `generator` drives the random picks of k-means initialisation and dead-code restarts (training
        mode); eval-mode outputs are deterministic."""
        quantized = self.quantizer(self.encoder(pixel_values), generator=generator)
        params = self.decoder(quantized.quantized)
        reconstruction_loss = -self.likelihood.log_prob(params, pixel_values).mean()
        loss = reconstruction_loss + quantized.codebook_loss + quantized.commitment_loss
        return VQVAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            codebook_loss=quantized.codebook_loss,
            commitment_loss=quantized.commitment_loss,
            perplexity=quantized.perplexity,
            codes_used_fraction=quantized.codes_used_fraction,
            dead_codes=quantized.dead_codes,
            restarted_codes=quantized.restarted_codes,
            indices=quantized.indices,
            reconstruction=self.likelihood.mean(params),
        )

    # -- public methods -------------------------------------------------------------------------------

    def encode(self, pixel_values: torch.Tensor, return_dict: bool = True):
        """Encoder outputs and their nearest codes for images (B, C, H, W) in [0, 1]; never changes the codebook.

        Returns `VQEncoderOutput(latents=z_e (B, embedding_dim, h, w), indices=(B, h, w) long)` (or the
        tuple `(latents, indices)`).
        """
        self._check_pixel_values(pixel_values)
        latents = self.encoder(pixel_values)
        indices = self.quantizer.encode(latents)
        return VQEncoderOutput(latents=latents, indices=indices) if return_dict else (latents, indices)

    def decode(
        self,
        latents: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        output: str = "mean",
        return_dict: bool = True,
    ):
        """Images from vectors (B, embedding_dim, h, w): each is replaced by its nearest code (as in
        diffusers' `VQModel.decode`), then decoded; `DecoderOutput(sample=(B, C, H, W))`.

        `decode(encode(x).latents)` is `reconstruct(x)`; code vectors (`quantizer.embed(indices)`) decode
        as their own ids. `output` and `generator` as in `decode_from_indices`.
        """
        expected = (self.config.embedding_dim, self.code_grid_size, self.code_grid_size)
        check_latents(latents, expected, dtype=self.dtype)
        self._check_decode_args(output, generator)
        return self._images(self._decode_indices(self.quantizer.encode(latents)), output, generator, return_dict)

    @torch.no_grad()
    def encode_to_indices(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Code ids (B, h, w) long of images (B, C, H, W) in [0, 1]: `encode(pixel_values).indices`."""
        return self.encode(pixel_values).indices

    def decode_from_indices(
        self, indices: torch.Tensor, *, generator: torch.Generator | None = None, output: str = "mean"
    ) -> torch.Tensor:
        """Images (B, C, H, W) from code ids (B, h, w): the mean of p(x|z_q), or a draw from it.

        Args:
            indices: integer code ids in [0, codebook_size), grid (code_grid_size, code_grid_size).
            output: `"mean"` (probabilities for Bernoulli) or `"sample"` (pixels drawn with `generator`).
        """
        self._check_indices(indices)
        self._check_decode_args(output, generator)
        return self._images(self._decode_indices(indices), output, generator, return_dict=True).sample

    def _decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """The parameters of p(x|z_q) for code ids (B, h, w): their code vectors (B, D, h, w), decoded."""
        return self.decoder(self.quantizer.embed(indices.to(self.device)).to(self.dtype))

    @torch.no_grad()
    def reconstruct(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z_q) for the nearest codes of the images: `decode_from_indices(encode_to_indices(x))`."""
        return self.decode_from_indices(self.encode_to_indices(pixel_values))

    @torch.no_grad()
    def score(self, pixel_values: torch.Tensor) -> ScoreOutput:
        """The reconstruction error -log p(x|z_q) per image in nats at the nearest codes: a VQ-VAE has no
        prior, so no likelihood of x; this is the stand-in its `score` capability offers."""
        indices = self.encode_to_indices(pixel_values)  # checks pixel_values
        warn_if_not_a_likelihood(self.likelihood, pixel_values)  # e.g. Bernoulli on grey pixels
        score = -self.likelihood.log_prob(self._decode_indices(indices), pixel_values)
        return ScoreOutput(score=score, estimator="reconstruction -log p(x|z_q) at the nearest codes (a VQ-VAE has no likelihood of x)",
                           num_dims=pixel_values[0].numel())

    def codebook_usage(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Perplexity, fraction of codes used and dead codes of code ids (any shape), e.g. a whole test set's."""
        if not isinstance(indices, torch.Tensor) or indices.is_floating_point() or indices.dtype == torch.bool:
            got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"`indices` must be an integer tensor of code ids, got {got}")
        if indices.numel() > 0 and (int(indices.min()) < 0 or int(indices.max()) >= self.config.codebook_size):
            raise ValueError(
                f"`indices` must hold code ids in [0, {self.config.codebook_size}), "
                f"got ids in [{int(indices.min())}, {int(indices.max())}]"
            )
        counts = torch.bincount(indices.flatten().long(), minlength=self.config.codebook_size)
        return self.quantizer.usage_statistics(counts)
