"""The convolutional autoencoder core that the VAE, CVAE and VQ-VAE build from (as diffusers' `vq_model.py`
builds from `vae.py`).

Read top-down: activations -> `ResidualBlock` -> `ConvEncoder` (stride-2 stages that halve the
resolution) -> `ConvDecoder` (the mirror: stages that double it, then the likelihood's parameters) ->
`AutoencoderPreTrainedModel` (what the three families' models share: `forward`'s signature and checks
around each family's `_objective`, image checks, turning decoder parameters into images, the
`DecoderOutput` they return). Each family adds its bottleneck: a Gaussian
posterior (`modeling_vae.py`) or a codebook (`modeling_vqvae.py`).

The module keeps its layers in `convs` (an `nn.Sequential`), so the weights of folders saved before this
module existed (`encoder.convs.3.block.1.weight`, ...) load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ..configuration_utils import ACTIVATIONS
from ..modeling_outputs import DecoderOutput
from ..modeling_utils import HfVaePreTrainedModel
from ..validation import check_choice, check_generator, check_pixel_values



def activation_module(name: str) -> nn.Module:
    """A fresh non-linearity by its config name (`configuration_utils.ACTIVATIONS`, which configs check)."""
    return getattr(nn, ACTIVATIONS[name])()


# What `decode` returns: the mean of p(x|z) (probabilities for Bernoulli: smooth images) or a draw from it.
DECODE_OUTPUTS = ("mean", "sample")


class ResidualBlock(GradientCheckpointingLayer):
    """x + conv3x3(act(dropout(conv3x3(act(x))))), width and resolution kept.

    The repeated unit of the encoder and decoder, so the one `gradient_checkpointing_enable()` acts on:
    in training it then keeps only its input and recomputes its activations in the backward pass
    (transformers' `GradientCheckpointingLayer`; torch restores the RNG, so dropout draws the same mask).
    """

    def __init__(self, channels: int, activation: str, dropout: float):
        super().__init__()
        self.block = nn.Sequential(
            activation_module(activation),
            nn.Conv2d(channels, channels, 3, padding=1),
            activation_module(activation),
            nn.Dropout(dropout),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ConvEncoder(nn.Module):
    """(B, in_channels, H, W) -> (B, hidden_channels[-1], H / 2**S, W / 2**S), S = len(hidden_channels).

    With `out_channels`, a final 1x1 projection (after a non-linearity, none after it) maps to
    (B, out_channels, h, w): the VQ-VAE's z_e, which lives where the codes live.
    """

    def __init__(self, config, in_channels: int, out_channels: int | None = None):
        super().__init__()
        layers, width = [], in_channels
        for out_width in config.hidden_channels:
            # Each stage halves the resolution: a 4x4 stride-2 conv, then residual blocks.
            layers += [nn.Conv2d(width, out_width, 4, stride=2, padding=1), activation_module(config.activation)]
            layers += [ResidualBlock(out_width, config.activation, config.dropout) for _ in range(config.num_res_blocks)]
            width = out_width
        if out_channels is not None:
            layers += [activation_module(config.activation), nn.Conv2d(width, out_channels, 1)]
        self.convs = nn.Sequential(*layers)
        self.bottom = config.image_size // 2 ** len(config.hidden_channels)  # h = w of the output grid

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.convs(pixel_values)


class ConvDecoder(nn.Module):
    """The mirror of `ConvEncoder`: (B, hidden_channels[-1], h, w) -> (B, num_outputs, H, W),
    the parameters of p(x|z); float32 even under bf16 autocast (the likelihood sums C*H*W terms).

    Its input enters through one of two stems: `in_features` vectors (B, in_features) through a dense
    layer reshaped to the grid (the VAE's z), or `in_channels` grids (B, in_channels, h, w) through a
    3x3 conv (the VQ-VAE's code vectors).
    """

    def __init__(self, config, num_outputs: int, *, in_features: int | None = None, in_channels: int | None = None):
        super().__init__()
        widths = list(reversed(config.hidden_channels))
        self.width = widths[0]  # channels of the (B, width, h, w) grid the stages start from
        self.bottom = config.image_size // 2 ** len(widths)
        # Built before the stages, so a seeded model initialises as before this module existed.
        self.from_latent = None if in_features is None else nn.Linear(in_features, self.width * self.bottom**2)
        layers = [] if in_channels is None else [nn.Conv2d(in_channels, self.width, 3, padding=1)]
        for i, width in enumerate(widths):
            out_width = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            layers += [ResidualBlock(width, config.activation, config.dropout) for _ in range(config.num_res_blocks)]
            # Mirror of the encoder stage: a 4x4 stride-2 transposed conv doubles the resolution.
            layers += [activation_module(config.activation), nn.ConvTranspose2d(width, out_width, 4, stride=2, padding=1)]
        layers += [activation_module(config.activation), nn.Conv2d(widths[-1], num_outputs, 3, padding=1)]
        self.convs = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor, memory_format: torch.memory_format | None = None) -> torch.Tensor:
        """`memory_format=torch.channels_last` runs the stages on NHWC grids (oneDNN's fast convolutions on
        CPU; the same numbers to float rounding) whatever the layout of the weights; None keeps the input's."""
        if self.from_latent is not None:
            latents = self.from_latent(latents).view(-1, self.width, self.bottom, self.bottom)
        if memory_format is not None:
            latents = latents.contiguous(memory_format=memory_format)
        return self.convs(latents).float()


class AutoencoderPreTrainedModel(HfVaePreTrainedModel):
    """What the image autoencoders (VAE, CVAE, VQ-VAE) share: they read `pixel_values` (B, C, H, W) in
    [0, 1], and `decode` turns the decoder's parameters of p(x|z) into images. Subclasses set
    `self.likelihood` (`hf_vae.distributions.get_likelihood`)."""

    input_kind = "images"
    main_input_name = "pixel_values"
    # `gradient_checkpointing_enable()` recomputes each `ResidualBlock` of the encoder and decoder.
    supports_gradient_checkpointing = True

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        global_step: int | None = None,
        return_dict: bool = True,
    ):
        """The family's training objective for `pixel_values` (B, C, H, W) in [0, 1]: `loss` and its named terms.

        Args:
            pixel_values: images in [0, 1]; binary for the Bernoulli likelihood, 8-bit for the discretized one.
            labels: class ids (B,) of a conditional family; ignored by an unconditional one (every family
                takes the same batch).
            generator: drives the objective's randomness (the family's `_objective` says which).
            global_step: the optimizer step, read by families with `takes_global_step` (a KL warm-up).
            return_dict: return the family's `ModelOutput` (default) or a tuple.
        """
        self._check_pixel_values(pixel_values)
        check_generator(generator)
        output = self._objective(pixel_values, labels, generator, global_step)
        return output if return_dict else output.to_tuple()

    def _objective(self, pixel_values, labels, generator, global_step):
        """The family's objective on checked inputs: its `ModelOutput` with `loss` and the named terms."""
        raise NotImplementedError

    def _check_pixel_values(self, pixel_values, name: str = "pixel_values") -> None:
        # The model's own dtype: fp16/fp64 input into fp32 weights would fail deep inside torch.
        check_pixel_values(pixel_values, self.config.num_channels, self.config.image_size, name, dtype=self.dtype)

    @staticmethod
    def _check_decode_args(output: str, generator) -> None:
        check_choice("output", output, DECODE_OUTPUTS)
        check_generator(generator)

    def _images(self, params: torch.Tensor, output: str, generator: torch.Generator | None, return_dict: bool):
        """Images (B, C, H, W) from the parameters of p(x|z): its mean, or a draw with `generator`."""
        images = self.likelihood.mean(params) if output == "mean" else self.likelihood.sample(params, generator)
        return DecoderOutput(sample=images) if return_dict else (images,)
