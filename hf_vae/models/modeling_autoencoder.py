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
        CPU) whatever the layout of the weights, through `_forward_nhwc` (the IWAE evaluation's thousands of
        passes): the same numbers to float rounding. None runs `convs` as they are (training; for weights
        in the default layout bit-identical to older releases), on an NHWC grid if the weights are NHWC."""
        if self.from_latent is not None:
            latents = self.from_latent(latents).view(-1, self.width, self.bottom, self.bottom)
        if memory_format is None:
            if self.convs[-1].weight.is_contiguous(memory_format=torch.channels_last):
                # Weights made channels_last (`training.channels_last`) but an NCHW grid (the dense stem's
                # view): the layers would mix layouts, where ReLU's backward runs ~70x slower (profiled).
                latents = latents.contiguous(memory_format=torch.channels_last)
            return self.convs(latents).float()
        return self._forward_nhwc(latents.contiguous(memory_format=memory_format)).float()

    def _forward_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        """`convs` on an NHWC grid (B, C, h, w), written for speed (profiled on the mnist5k VAE's k=1000
        IWAE evaluation, benchmarks/iwae_speed.py): ReLUs and residual sums in place (no extra (B, C, H, W)
        buffers, which at 28x28 cost as much as a convolution), and a last convolution with one output
        channel as one matrix product plus shifted sums (`_single_channel_conv`: oneDNN runs that shape at
        a tenth of its speed). Autograd still works (no tensor it saves is overwritten)."""
        *body, last = self.convs
        for layer in body:
            if isinstance(layer, ResidualBlock):
                act1, conv1, act2, dropout, conv2 = layer.block
                h = conv1(act1(x))
                h = conv2(dropout(h.relu_() if isinstance(act2, nn.ReLU) else act2(h)))
                x = h.add_(x)
            elif isinstance(layer, nn.ReLU):
                x = x.relu_()  # x is a convolution's or a residual sum's output, needed by no one else
            else:
                x = layer(x)
        if isinstance(last, nn.Conv2d) and last.out_channels == 1 and last.kernel_size == (3, 3) and last.padding == (1, 1):
            return _single_channel_conv(x, last.weight, last.bias)
        return last(x)


def _single_channel_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv2d(x, weight, bias, padding=1) for a 3x3 kernel with ONE output channel, x (B, C, H, W) in NHWC.

    The 9 taps of every pixel in one (9, C) @ (C, B*H*W) product -> (3, 3, B, H, W), then
    out[b, i, j] = sum over taps (r, s) of taps[r, s, b, i + r - 1, j + s - 1] (zero outside the grid).
    """
    b, c, h, w = x.shape
    taps = (weight.reshape(c, 9).t() @ x.permute(0, 2, 3, 1).reshape(-1, c).t()).view(3, 3, b, h, w)
    out = taps[1, 1].clone() if bias is None else taps[1, 1] + bias
    for r in range(3):
        for s in range(3):
            if (r, s) == (1, 1):
                continue
            # Output rows [max(0, 1-r), h - max(0, r-1)) read tap rows shifted by r - 1 (columns likewise).
            out[:, max(0, 1 - r):h - max(0, r - 1), max(0, 1 - s):w - max(0, s - 1)] += \
                taps[r, s, :, max(0, r - 1):h - max(0, 1 - r), max(0, s - 1):w - max(0, 1 - s)]
    return out.unsqueeze(1)


class AutoencoderPreTrainedModel(HfVaePreTrainedModel):
    """What the image autoencoders (VAE, CVAE, VQ-VAE) share: they read `pixel_values` (B, C, H, W) in
    [0, 1], and `decode` turns the decoder's parameters of p(x|z) into images. Subclasses set
    `self.likelihood` (`hf_vae.likelihoods.get_likelihood`)."""

    input_kind = "images"
    main_input_name = "pixel_values"
    # `gradient_checkpointing_enable()` recomputes each `ResidualBlock` of the encoder and decoder.
    supports_gradient_checkpointing = True

    #: Start p(x|z)'s parameters where training should (`likelihood.init_output_bias`; the logistic mixture:
    #: mid-grey, a dozen levels wide) rather than at the decoder's default init.
    init_likelihood_bias: bool = True

    def post_init(self):
        super().post_init()
        if self.init_likelihood_bias:
            self.likelihood.init_output_bias(self.decoder.convs[-1].bias)

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
