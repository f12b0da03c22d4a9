"""A convolutional VQ-VAE as a Hugging Face model (van den Oord et al. 2017).

Read top-down: encoder (image -> grid of vectors) -> `VectorQuantizer` (nearest codes, in
`hf_vae/quantization.py`) -> decoder (codes -> parameters of p(x|z_q)) -> `VQVAEModel` (forward =
reconstruction + codebook + commitment terms, then `encode_to_indices`, `decode_from_indices`,
`reconstruct`). The code grids (B, h, w) are the tokens a PixelCNN / transformer prior models; the
VQ-VAE has no prior of its own.
"""

from __future__ import annotations

import torch
from torch import nn

from ...distributions import get_likelihood
from ...modeling_outputs import VQVAEOutput
from ...modeling_utils import HfVaePreTrainedModel
from ...validation import check_generator, check_indices, check_pixel_values
from ...quantization import VectorQuantizer
from ..vae.modeling_vae import ACTIVATIONS, ResidualBlock
from .configuration_vqvae import VQVAEConfig


class VQVAEEncoder(nn.Module):
    """(B, C, H, W) -> (B, embedding_dim, h, w) encoder outputs z_e, h = H / 2 ** len(hidden_channels)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        layers, width = [], config.num_channels
        for out_width in config.hidden_channels:
            # Each stage halves the resolution: a 4x4 stride-2 conv, then residual blocks.
            layers += [nn.Conv2d(width, out_width, 4, stride=2, padding=1), ACTIVATIONS[config.activation]()]
            layers += [ResidualBlock(out_width, config.activation, config.dropout) for _ in range(config.num_res_blocks)]
            width = out_width
        # A 1x1 projection to the code size, with no non-linearity after it: z_e lives where the codes live.
        layers += [ACTIVATIONS[config.activation](), nn.Conv2d(width, config.embedding_dim, 1)]
        self.convs = nn.Sequential(*layers)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.convs(pixel_values)


class VQVAEDecoder(nn.Module):
    """(B, embedding_dim, h, w) codes -> (B, C * num_params, H, W): the parameters of p(x|z_q)."""

    def __init__(self, config: VQVAEConfig, num_params: int):
        super().__init__()
        widths = list(reversed(config.hidden_channels))
        layers = [nn.Conv2d(config.embedding_dim, widths[0], 3, padding=1)]
        for i, width in enumerate(widths):
            out_width = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            layers += [ResidualBlock(width, config.activation, config.dropout) for _ in range(config.num_res_blocks)]
            # Mirror of the encoder stage: a 4x4 stride-2 transposed conv doubles the resolution.
            layers += [ACTIVATIONS[config.activation](), nn.ConvTranspose2d(width, out_width, 4, stride=2, padding=1)]
        layers += [ACTIVATIONS[config.activation](), nn.Conv2d(widths[-1], config.num_channels * num_params, 3, padding=1)]
        self.convs = nn.Sequential(*layers)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.convs(codes).float()  # the likelihood sums C*H*W terms: keep it in fp32 under autocast


class VQVAEPreTrainedModel(HfVaePreTrainedModel):
    config_class = VQVAEConfig


class VQVAEModel(VQVAEPreTrainedModel):
    """VQ-VAE: deterministic encoder, nearest-code bottleneck, decoder with a configurable p(x|z_q).

    `forward(pixel_values)` returns `loss` = -log p(x|z_q) + codebook term + commitment term and the
    codebook's health (perplexity, fraction of codes used, dead codes). In training mode it also
    maintains the codebook (EMA, k-means initialisation, dead-code restarts, as configured); in eval
    mode it changes nothing.
    """

    input_kind = "images"
    evaluator = "vqvae"
    card_template = "vqvae.md.j2"
    capabilities = frozenset({"encode", "reconstruct", "score"})

    def __init__(self, config: VQVAEConfig):
        super().__init__(config)
        self.likelihood = get_likelihood(config.likelihood, config.likelihood_scale)
        self.encoder = VQVAEEncoder(config)
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
        self.decoder = VQVAEDecoder(config, self.likelihood.num_params)
        self.post_init()

    @property
    def code_grid_size(self) -> int:
        """Side of the square code grid: indices are (B, code_grid_size, code_grid_size)."""
        return self.config.code_grid_size

    # -- checks -----------------------------------------------------------------------------------

    def _check_pixel_values(self, pixel_values, name: str = "pixel_values") -> None:
        check_pixel_values(pixel_values, self.config.num_channels, self.config.image_size, name)

    def _check_indices(self, indices) -> None:
        check_indices(indices, self.config.codebook_size, self.code_grid_size, name="indices")

    # -- the objective ------------------------------------------------------------------------------

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        global_step: int | None = None,
        return_dict: bool = True,
    ) -> VQVAEOutput | tuple:
        """The VQ-VAE objective for `pixel_values` (B, C, H, W) in [0, 1].

        Args:
            pixel_values: images in [0, 1]; binary for the Bernoulli likelihood, 8-bit for the discretized one.
            labels: ignored (the VQ-VAE is unconditional); accepted so every family takes the same batch.
            generator: drives the random picks of k-means initialisation and dead-code restarts
                (training mode); eval-mode outputs are deterministic.
            global_step: ignored; accepted so every family takes the same trainer call.
            return_dict: return a `VQVAEOutput` (default) or a tuple.
        """
        self._check_pixel_values(pixel_values)
        check_generator(generator)
        quantized = self.quantizer(self.encoder(pixel_values), generator=generator)
        params = self.decoder(quantized.quantized)
        reconstruction_loss = -self.likelihood.log_prob(params, pixel_values).mean()
        loss = reconstruction_loss + quantized.codebook_loss + quantized.commitment_loss
        output = VQVAEOutput(
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
        return output if return_dict else output.to_tuple()

    # -- public methods -------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_to_indices(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Code ids (B, h, w) long of images (B, C, H, W) in [0, 1]; never changes the codebook."""
        self._check_pixel_values(pixel_values)
        return self.quantizer.encode(self.encoder(pixel_values))

    def decode_from_indices(
        self, indices: torch.Tensor, generator: torch.Generator | None = None, output: str = "mean"
    ) -> torch.Tensor:
        """Images (B, C, H, W) from code ids (B, h, w): the mean of p(x|z_q), or a draw from it.

        Args:
            indices: integer code ids in [0, codebook_size), grid (code_grid_size, code_grid_size).
            output: `"mean"` (probabilities for Bernoulli) or `"sample"` (pixels drawn with `generator`).
        """
        self._check_indices(indices)
        if output not in ("mean", "sample"):
            raise ValueError(f"`output` must be one of ('mean', 'sample'), got {output!r}")
        check_generator(generator)
        codes = self.quantizer.embed(indices.to(self.device)).to(self.dtype)
        params = self.decoder(codes)
        if output == "mean":
            return self.likelihood.mean(params)
        return self.likelihood.sample(params, generator)

    @torch.no_grad()
    def reconstruct(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z_q) for the nearest codes of the images: `decode_from_indices(encode_to_indices(x))`."""
        return self.decode_from_indices(self.encode_to_indices(pixel_values))

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
