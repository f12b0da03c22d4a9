"""A Gated PixelCNN prior over token grids as a Hugging Face model (van den Oord et al. 2016,
"Conditional Image Generation with PixelCNN Decoders").

Read top-down: the shifts that make a convolution causal -> one gated layer of the vertical and
horizontal stacks -> `PixelCNNPriorModel` (forward = exact NLL per token, then `log_likelihood` and the logits
function `sample` draws with; `sample`, `bits_per_token` and `bits_per_dim` come from
`TokenPriorPreTrainedModel`). Sampling runs through `hf_vae/sampling.py`.

Causality without a blind spot (paper section 2.2): the vertical stack at row i sees only rows < i
(a shift down before the first layer, kernels that never look below their own row after it); the
horizontal stack at (i, j) sees row i left of j (a shift right before the first layer, kernels that
never look right of their own column after it) plus the vertical stack of the same row. So the logits
at (i, j) depend on exactly the tokens before (i, j) in raster order, within the receptive field.

Colour (paper section 2.1, `num_channels=3`): a pixel is three tokens drawn R -> G -> B. Every layer's channels
split into three groups, one per colour, and only the convolutions that read the current pixel are masked
(`MaskedConv2d`): the first layer's `current` 1x1 convolution lets G read R and B read R and G (mask A, no
colour reads itself); the current column of the later horizontal kernels, the residual, skip and head
convolutions let each colour read its own group and the ones before it (mask B). The vertical stack and
the columns left of the current one see whole pixels, unmasked. With one channel nothing is masked and the
network is the one above, weight for weight.

Fast generation (Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive Models"):
the same causality means a new token changes only O(kernel) activations per layer. `PixelCNNCache`
keeps every layer's inputs and computes the vertical stack once per row (row i sees only rows < i)
and the horizontal stack at one position per layer per token (a window of the current row): 784
steps of O(layers) small matrix products instead of 784 passes over the image. `sample(...,
use_cache=False)` keeps the naive loop (one pass over the rows drawn so far per token) as the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ...likelihoods import DiscretizedLogisticMixtureLikelihood
from ...modeling_outputs import TokenPriorOutput
from ...modeling_utils import TokenPriorPreTrainedModel
from ...sampling import LogitsFn
from ...validation import check_bool, check_generator, check_indices
from .configuration_pixelcnn_prior import PixelCNNPriorConfig


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) moved one row down (zeros on top): row i now holds row i - 1."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) moved one column right (zeros on the left): column j now holds column j - 1."""
    return F.pad(x, (1, 0, 0, 0))[:, :, :, :-1]


def gate(x: torch.Tensor) -> torch.Tensor:
    """Gated activation tanh(a) * sigmoid(b) of the two halves of the channels (paper eq. 2)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def colour_mask(out_channels: int, in_channels: int, num_colours: int, own: bool, out_chunks: int = 1) -> torch.Tensor:
    """(out, in, 1, 1) 0/1 mask over the colour groups of a convolution that reads the current pixel.

    Channels are laid out colour-major (group g = channels [g * n / G, (g + 1) * n / G)), repeated in
    `out_chunks` blocks on the output side (the two halves a gate splits). Output group g reads input
    groups < g, and group g itself when `own` (mask B; mask A without).
    """
    # On the CPU explicitly: `from_pretrained` builds models under a meta-device context, and a mask is no weight to load.
    out_block = out_channels // out_chunks
    out_group = torch.arange(out_channels, device="cpu") % out_block // (out_block // num_colours)
    in_group = torch.arange(in_channels, device="cpu") // (in_channels // num_colours)
    allowed = (in_group[None, :] < out_group[:, None]) | (own & (in_group[None, :] == out_group[:, None]))
    return allowed.float()[:, :, None, None]


class MaskedConv2d(nn.Conv2d):
    """A convolution whose weight is multiplied by a fixed 0/1 `mask` (broadcast over (out, in, kh, kw));
    `mask=None` is a plain convolution. The mask is a plain attribute, not a buffer: checkpoints keep
    `nn.Conv2d`'s keys, and loading (which builds models on the meta device) never has to restore it."""

    def __init__(self, *args, mask: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mask = mask

    @property
    def masked_weight(self) -> torch.Tensor:
        if self.mask is None:
            return self.weight
        if self.mask.device != self.weight.device or self.mask.dtype != self.weight.dtype:
            self.mask = self.mask.to(self.weight.device, self.weight.dtype)
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.masked_weight, self.bias)


class GatedLayer(GradientCheckpointingLayer):
    """One layer of both stacks (paper Fig. 2): (vertical, horizontal) -> (vertical, horizontal, skip).

    The unit `gradient_checkpointing_enable()` recomputes in the backward pass (transformers'
    `GradientCheckpointingLayer`). Type A (`first=True`) shifts its inputs so the current token is excluded; type B keeps it (its
    inputs already exclude it). Class conditioning adds a learned per-class bias to every gate
    (`class_ids` (B,); ignored by an unconditional model, which has no bias table). With `num_colours` > 1
    the convolutions that read the current pixel are colour-masked (module docstring). `dropout` > 0 drops
    gated features (B, C, H, W) elementwise in training, before the residual and skip convolutions; an
    elementwise mask mixes no positions or colours, so causality holds.
    """

    def __init__(self, channels: int, kernel_size: int, first: bool, num_conditions: int | None, num_colours: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.first = first
        self.k = kernel_size // 2
        colour = num_colours > 1
        own_mask = colour_mask(channels, channels, num_colours, own=True) if colour else None  # mask B
        # Vertical: an (k+1) x n kernel over rows i-k..i, padded so it never sees a row below its own.
        self.vertical = nn.Conv2d(channels, 2 * channels, (self.k + 1, kernel_size))
        # Horizontal: a 1 x (k+1) kernel over columns j-k..j of the same row; in colour, tap k (column j,
        # the current pixel) is masked B in type B layers (type A reads only columns < j).
        tap_mask = None
        if colour and not first:
            tap_mask = torch.ones(2 * channels, channels, 1, self.k + 1, device="cpu")
            tap_mask[..., -1:] = colour_mask(2 * channels, channels, num_colours, own=True, out_chunks=2)
        self.horizontal = MaskedConv2d(channels, 2 * channels, (1, self.k + 1), mask=tap_mask)
        # Colour, type A: the colours drawn before each one in its own pixel (mask A, a 1x1 convolution).
        self.current = None
        if colour and first:
            mask = colour_mask(2 * channels, channels, num_colours, own=False, out_chunks=2)
            self.current = MaskedConv2d(channels, 2 * channels, 1, mask=mask)
        # The vertical pre-activations feed the horizontal stack (they only see rows above).
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.residual = MaskedConv2d(channels, channels, 1, mask=own_mask)
        self.skip = MaskedConv2d(channels, channels, 1, mask=own_mask)
        # Bias V^T h for the vertical and horizontal gates (paper eq. 4); the last class is the null label.
        self.class_bias = nn.Embedding(num_conditions, 4 * channels) if num_conditions else None
        # No parameters either way; Identity at 0 draws no random numbers, so default runs keep their RNG stream.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, vertical, horizontal, class_ids=None):
        v_in = down_shift(vertical) if self.first else vertical
        h_in = right_shift(horizontal) if self.first else horizontal
        v_pre = self.vertical(F.pad(v_in, (self.k, self.k, self.k, 0)))  # (B, 2C, H, W)
        h_pre = self.horizontal(F.pad(h_in, (self.k, 0, 0, 0))) + self.vertical_to_horizontal(v_pre)
        if self.current is not None:  # colour, type A: the unshifted input, masked within the pixel
            h_pre = h_pre + self.current(horizontal)
        if self.class_bias is not None:
            v_bias, h_bias = self.class_bias(class_ids)[:, :, None, None].chunk(2, dim=1)
            v_pre, h_pre = v_pre + v_bias, h_pre + h_bias
        gated = self.dropout(gate(h_pre))
        # Type A has no residual: its input is the embedding of the current token itself.
        horizontal_out = self.residual(gated) + (0 if self.first else horizontal)
        return gate(v_pre), horizontal_out, self.skip(gated)


class PixelCNNCache:
    """The activations fast generation reuses, for `rows` canvases sampled in raster order (one call of
    `step` per position, in order; position p = (i * grid_size + j) * num_channels + colour).

    Per layer l it keeps the *inputs* of both stacks, zero-padded exactly as `GatedLayer.forward` pads
    them, so a window of the buffer is what the convolution would read:

    - `vertical[l]`: (rows, C, k + H, k + W + k), the vertical input of every row so far (k zero rows
      on top, k zero columns each side). At the start of row i, the layer's (k + 1) x n kernel over rows
      i - k..i gives its whole output row i: computed once per row, for all layers in turn.
    - `horizontal[l]`: (rows, k + W, C), the horizontal input of the current row (k zero columns on
      the left, channels last so a window flattens without a copy). At (i, j) the 1 x (k + 1) kernel
      needs columns j - k..j: one matrix product per layer, plus the vertical term of (i, j).

    In colour every colour of a pixel recomputes the pixel's column (the colours drawn so far feed the
    first layer's masked `current` convolution); the masks make the groups of the colours not yet drawn
    irrelevant, and after the last colour the column holds what the full network computes there.

    The arithmetic is the convolutions' own (same weights, same padding), in another order, so the
    logits equal the naive ones to float rounding and the seeded draws are the same (tests/test_pixelcnn_prior.py).
    It is the eval-mode network: `config.dropout` (training only) is not applied, as the naive loop in eval
    mode does not apply it either.
    """

    def __init__(self, model: "PixelCNNPriorModel", condition_ids: torch.Tensor):
        config, first = model.config, model.layers[0]
        rows, channels, size, k = condition_ids.shape[0], config.hidden_size, config.grid_size, first.k
        self.model, self.size, self.k, self.position = model, size, k, 0
        self.colours = config.num_channels
        options = dict(device=model.device, dtype=model.token_embedding.weight.dtype)
        self.vertical = [torch.zeros(rows, channels, k + size, size + 2 * k, **options) for _ in model.layers]
        self.horizontal = [torch.zeros(rows, k + size, channels, **options) for _ in model.layers]
        # Per layer: the horizontal kernel as one (2C, (k + 1) * C) matrix over a channels-last window,
        # and the residual and skip 1x1 convolutions stacked into one (2C, C) product.
        self.horizontal_weights = [
            (layer.horizontal.masked_weight.squeeze(2).permute(0, 2, 1).flatten(1), layer.horizontal.bias)
            for layer in model.layers
        ]
        self.out_weights = [
            (torch.cat([layer.residual.masked_weight, layer.skip.masked_weight]).flatten(1),
             torch.cat([layer.residual.bias, layer.skip.bias]))
            for layer in model.layers
        ]
        self.current = None if first.current is None else (first.current.masked_weight.flatten(1), first.current.bias)
        # Class conditioning: per layer the (rows, 2C) biases of the vertical and horizontal gates.
        self.biases = [
            (None, None) if layer.class_bias is None else layer.class_bias(condition_ids).chunk(2, dim=1)
            for layer in model.layers
        ]
        self.vertical_terms = None  # per layer (W, rows, 2C): vertical_to_horizontal(v_pre) + h_bias of the row

    def _pixels(self, tokens: torch.Tensor, start: int, count: int) -> torch.Tensor:
        """The embedded pixels start..start + count - 1 of the canvas: (rows, count, C)."""
        colours = self.colours
        pixels = tokens[:, start * colours : (start + count) * colours].view(-1, count, colours)
        return self.model.embed(pixels.transpose(1, 2)[..., None])[..., 0].transpose(1, 2)

    def _start_row(self, tokens: torch.Tensor, row: int) -> None:
        """The vertical stack of `row` (every layer) from the rows above; resets the horizontal inputs."""
        k, size = self.k, self.size
        if row > 0:  # layer 0 reads the embedded row above (down_shift)
            self.vertical[0][:, :, k + row, k : k + size] = self._pixels(tokens, (row - 1) * size, size).transpose(1, 2)
        self.vertical_terms = []
        for index, (layer, (v_bias, h_bias)) in enumerate(zip(self.model.layers, self.biases)):
            window = self.vertical[index][:, :, row : row + k + 1]  # input rows row - k..row, padded
            v_pre = F.conv2d(window, layer.vertical.weight, layer.vertical.bias)  # (rows, 2C, 1, W)
            term = layer.vertical_to_horizontal(v_pre)
            if v_bias is not None:
                v_pre, term = v_pre + v_bias[:, :, None, None], term + h_bias[:, :, None, None]
            self.vertical_terms.append(term[:, :, 0].permute(2, 0, 1).contiguous())
            if index + 1 < len(self.vertical):
                self.vertical[index + 1][:, :, k + row, k : k + size] = gate(v_pre)[:, :, 0]
        for buffer in self.horizontal:
            buffer.zero_()

    def step(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """Logits (rows, vocab_size) at `position`, given the canvas (rows, num_positions) drawn before it."""
        if position != self.position:
            raise ValueError(f"`position` must be {self.position} (the cache decodes in raster order), got {position}")
        self.position += 1
        pixel, colour = divmod(position, self.colours)
        row, col = divmod(pixel, self.size)
        k, model = self.k, self.model
        if colour == 0 and col == 0:
            self._start_row(tokens, row)
        elif colour == 0:  # layer 0 reads the pixel just completed, left of (row, col) (right_shift)
            self.horizontal[0][:, k + col] = self._pixels(tokens, pixel - 1, 1)[:, 0]
        skips = 0
        for index, ((weight, bias), (out_weight, out_bias)) in enumerate(zip(self.horizontal_weights, self.out_weights)):
            window = self.horizontal[index][:, col : col + k + 1].flatten(1)  # (rows, (k + 1) * C)
            pre = F.linear(window, weight, bias) + self.vertical_terms[index][col]  # (rows, 2C)
            if index == 0 and self.current is not None:  # colour: the colours of this pixel drawn so far
                pre = pre + F.linear(self._pixels(tokens, pixel, 1)[:, 0], *self.current)
            gated = gate(pre)  # (rows, C)
            residual, skip = F.linear(gated, out_weight, out_bias).chunk(2, dim=1)
            skips = skips + skip
            if index + 1 < len(self.horizontal):  # type A (layer 0) has no residual connection
                self.horizontal[index + 1][:, k + col] = residual + (self.horizontal[index][:, k + col] if index else 0)
        _, hidden, _, out = model.head
        hidden_out = F.relu(F.linear(F.relu(skips), hidden.masked_weight.flatten(1), hidden.bias))
        outputs = F.linear(hidden_out, out.masked_weight.flatten(1), out.bias)  # (rows, num_channels * outputs per colour)
        return model.colour_logits(outputs.float(), colour)


class PixelCNNPriorPreTrainedModel(TokenPriorPreTrainedModel):
    config_class = PixelCNNPriorConfig
    supports_gradient_checkpointing = True  # each `GatedLayer`


class PixelCNNPriorModel(PixelCNNPriorPreTrainedModel):
    """Gated PixelCNN p(x) = prod_i p(x_i | x_<i, class) over a (grid_size x grid_size) token grid.

    `forward(indices)` returns the mean NLL per token (`loss`), the logits (B, vocab_size, H, W) (colour:
    (B, vocab_size, C, H, W), indices (B, C, H, W); None for the logistic-mixture head, which scores each token's
    level directly) and the exact per-example log-likelihood in nats. `sample` (from `TokenPriorPreTrainedModel`) also takes
    `use_cache` (default True: fast generation with a `PixelCNNCache`; False: the naive loop; same draws).
    """

    card_template = "pixelcnn_prior.md.j2"
    decoding_options = frozenset({"use_cache"})
    sample_options = TokenPriorPreTrainedModel.sample_options | decoding_options

    def __init__(self, config: PixelCNNPriorConfig):
        super().__init__(config)
        channels, colours = config.hidden_size, config.num_channels
        num_conditions = None if config.num_classes is None else config.num_classes + 1
        if config.input_embedding == "table":
            # One table for all colours (colour c's tokens at rows c * vocab_size + t), each filling its group.
            self.token_embedding = nn.Embedding(colours * config.vocab_size, channels // colours)
        else:  # "value": colour c's level in [-1, 1] times a learned vector, plus a bias, filling its group
            self.token_embedding = nn.Conv2d(colours, channels, 1, groups=colours)
        self.layers = nn.ModuleList(
            GatedLayer(channels, config.kernel_size, first=i == 0, num_conditions=num_conditions, num_colours=colours,
                       dropout=config.dropout)
            for i in range(config.num_layers)
        )

        def head_mask(out_channels, in_channels):
            return colour_mask(out_channels, in_channels, colours, own=True) if colours > 1 else None

        # Per colour: vocab_size logits, or the logits, centres and log-scales of a logistic mixture over the levels.
        self.mixture = None
        if config.output_distribution == "discretized_logistic_mixture":
            self.mixture = DiscretizedLogisticMixtureLikelihood(config.num_mixtures, num_bins=config.vocab_size)
        self.outputs_per_colour = config.vocab_size if self.mixture is None else 3 * config.num_mixtures
        outputs = colours * self.outputs_per_colour
        self.head = nn.Sequential(
            nn.ReLU(),
            MaskedConv2d(channels, config.output_channels, 1, mask=head_mask(config.output_channels, channels)),
            nn.ReLU(),
            # Colour-major: colour c's outputs are channels [c * outputs_per_colour, (c + 1) * outputs_per_colour).
            MaskedConv2d(config.output_channels, outputs, 1, mask=head_mask(outputs, config.output_channels)),
        )
        self.post_init()
        if self.mixture is not None:  # each colour's mixture starts at mid-grey, a dozen levels wide
            for colour in range(colours):
                self.mixture.init_output_bias(self.head[-1].bias[self._colour_channels(colour)])

    # -- the network ------------------------------------------------------------------------------

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Token grids (B, num_channels, H', W) -> features (B, hidden_size, H', W), colour-major channels."""
        if self.config.input_embedding == "value":
            levels = indices.to(self.token_embedding.weight.dtype) * (2 / (self.config.vocab_size - 1)) - 1
            return self.token_embedding(levels)
        if self.config.num_channels > 1:  # colour c reads its own rows of the table
            offsets = torch.arange(self.config.num_channels, device=indices.device) * self.config.vocab_size
            indices = indices + offsets[:, None, None]
        return self.token_embedding(indices).permute(0, 1, 4, 2, 3).flatten(1, 2)

    def _outputs(self, indices: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Token grid (B, H', W) or colour (B, C, H', W) -> the head's outputs (B, C * outputs_per_colour, H', W),
        fp32 even under bf16 autocast (the likelihood sums a log-softmax over every pixel); any number of rows H'
        (causal in rows)."""
        x = self.embed(indices.unsqueeze(1) if self.config.num_channels == 1 else indices)  # (B, hidden, H', W)
        vertical, horizontal, skips = x, x, 0
        for layer in self.layers:
            vertical, horizontal, skip = layer(vertical, horizontal, class_ids)
            skips = skips + skip
        return self.head(skips).float()

    def _logits(self, indices: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Token grid (B, H', W) -> logits (B, vocab_size, H', W), colour (B, C, H', W) -> (B, vocab_size, C, H', W)."""
        outputs = self._outputs(indices, class_ids)
        if self.config.num_channels == 1:
            return self.colour_logits(outputs, 0)
        return torch.stack([self.colour_logits(outputs, colour) for colour in range(self.config.num_channels)], dim=2)

    def colour_logits(self, outputs: torch.Tensor, colour: int) -> torch.Tensor:
        """The head's outputs (N, colours * outputs_per_colour, *spatial) -> the logits (N, vocab_size, *spatial) of
        `colour`: its slice, or for the logistic mixture the exact log-masses of the levels under it."""
        outputs = outputs[:, self._colour_channels(colour)]
        return outputs if self.mixture is None else self.mixture.level_log_probs(outputs)

    def _colour_channels(self, colour: int) -> slice:
        """Colour `colour`'s channels of the head's outputs (colour-major, `outputs_per_colour` each)."""
        return slice(colour * self.outputs_per_colour, (colour + 1) * self.outputs_per_colour)

    def _token_log_probs(self, indices: torch.Tensor, class_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log p of each token given the ones before it, same shape as `indices`; the logits, or None for the
        logistic mixture, whose log-mass at each token is computed directly: the masses of all 256 levels cost
        ten times the network and the likelihood does not need them)."""
        if self.mixture is None:
            logits = self._logits(indices, class_ids)
            return -F.cross_entropy(logits, indices, reduction="none"), logits
        outputs = self._outputs(indices, class_ids)
        grid = indices.unsqueeze(1) if self.config.num_channels == 1 else indices  # (B, C, H', W)
        per_colour = [
            self.mixture.level_log_probs(outputs[:, self._colour_channels(c)], grid[:, c])
            for c in range(grid.shape[1])
        ]
        return torch.stack(per_colour, dim=1).view(indices.shape), None

    def forward(
        self,
        indices: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> TokenPriorOutput | tuple:
        """Exact negative log-likelihood of token grids.

        Args:
            indices: (B, grid_size, grid_size) integer tokens in [0, vocab_size); colour (B, num_channels,
                grid_size, grid_size).
            labels: (B,) class ids in [0, num_classes) for a conditional prior; None = the null label
                (needs `label_dropout > 0`). Must be None for an unconditional prior.
            generator: drives label dropout in training (reproducible losses).
            return_dict: return a `TokenPriorOutput` (default) or a tuple.
        """
        check_indices(indices, self.config.vocab_size, self.config.grid_size, num_channels=self.config.num_channels)
        check_generator(generator)
        class_ids = self._condition_ids(labels, indices.shape[0], generator, drop_labels=self.training)
        indices = indices.to(self.device)
        token_log_probs, logits = self._token_log_probs(indices, class_ids)  # (B, H, W) or (B, C, H, W), in nats
        output = TokenPriorOutput(loss=-token_log_probs.mean(), logits=logits,
                                  log_likelihood=token_log_probs.flatten(1).sum(dim=1))
        return output if return_dict else output.to_tuple()

    # -- public methods (`sample`, `bits_per_token`, `bits_per_dim`: `TokenPriorPreTrainedModel`) ------

    @torch.no_grad()
    def log_likelihood(self, indices: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(indices | labels) per example in nats, shape (B,) (no label dropout)."""
        check_indices(indices, self.config.vocab_size, self.config.grid_size, num_channels=self.config.num_channels)
        class_ids = self._condition_ids(labels, indices.shape[0])
        indices = indices.to(self.device)
        return self._token_log_probs(indices, class_ids)[0].flatten(1).sum(dim=1)

    def _next_token_logits(self, condition_ids: torch.Tensor, use_cache: bool = True) -> LogitsFn:
        """`sample(..., use_cache=True)` decodes with a `PixelCNNCache` (O(layers * kernel) work per token);
        `use_cache=False` reruns the network on the rows drawn so far at every position (O(H * W) work per
        token), the reference the fast path is tested against. The draws are the same."""
        check_bool("use_cache", use_cache)
        size, colours = self.config.grid_size, self.config.num_channels

        def logits_fn(tokens, position, cache):
            if use_cache:
                cache = PixelCNNCache(self, condition_ids) if cache is None else cache
                return cache.step(tokens, position), cache
            pixel, colour = divmod(position, colours)
            row, col = divmod(pixel, size)
            # Rows below `row` cannot influence it (causal), so only rows 0..row are computed.
            if colours == 1:
                return self._logits(tokens.view(-1, size, size)[:, : row + 1], condition_ids)[:, :, row, col], cache
            grid = tokens.view(-1, size, size, colours)[:, : row + 1].permute(0, 3, 1, 2)  # (rows, C, row + 1, W)
            return self._logits(grid, condition_ids)[:, :, colour, row, col], cache

        return logits_fn
