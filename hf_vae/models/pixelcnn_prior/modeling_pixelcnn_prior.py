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


class GatedLayer(GradientCheckpointingLayer):
    """One layer of both stacks (paper Fig. 2): (vertical, horizontal) -> (vertical, horizontal, skip).

    The unit `gradient_checkpointing_enable()` recomputes in the backward pass (transformers'
    `GradientCheckpointingLayer`). Type A (`first=True`) shifts its inputs so the current token is excluded; type B keeps it (its
    inputs already exclude it). Class conditioning adds a learned per-class bias to every gate
    (`class_ids` (B,); ignored by an unconditional model, which has no bias table).
    """

    def __init__(self, channels: int, kernel_size: int, first: bool, num_conditions: int | None):
        super().__init__()
        self.first = first
        self.k = kernel_size // 2
        # Vertical: an (k+1) x n kernel over rows i-k..i, padded so it never sees a row below its own.
        self.vertical = nn.Conv2d(channels, 2 * channels, (self.k + 1, kernel_size))
        # Horizontal: a 1 x (k+1) kernel over columns j-k..j of the same row.
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, self.k + 1))
        # The vertical pre-activations feed the horizontal stack (they only see rows above).
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.residual = nn.Conv2d(channels, channels, 1)
        self.skip = nn.Conv2d(channels, channels, 1)
        # Bias V^T h for the vertical and horizontal gates (paper eq. 4); the last class is the null label.
        self.class_bias = nn.Embedding(num_conditions, 4 * channels) if num_conditions else None

    def forward(self, vertical, horizontal, class_ids=None):
        v_in = down_shift(vertical) if self.first else vertical
        h_in = right_shift(horizontal) if self.first else horizontal
        v_pre = self.vertical(F.pad(v_in, (self.k, self.k, self.k, 0)))  # (B, 2C, H, W)
        h_pre = self.horizontal(F.pad(h_in, (self.k, 0, 0, 0))) + self.vertical_to_horizontal(v_pre)
        if self.class_bias is not None:
            v_bias, h_bias = self.class_bias(class_ids)[:, :, None, None].chunk(2, dim=1)
            v_pre, h_pre = v_pre + v_bias, h_pre + h_bias
        gated = gate(h_pre)
        # Type A has no residual: its input is the embedding of the current token itself.
        horizontal_out = self.residual(gated) + (0 if self.first else horizontal)
        return gate(v_pre), horizontal_out, self.skip(gated)


class PixelCNNCache:
    """The activations fast generation reuses, for `rows` canvases sampled in raster order (one call of
    `step` per position, in order; position (i, j) = `i * grid_size + j`).

    Per layer l it keeps the *inputs* of both stacks, zero-padded exactly as `GatedLayer.forward` pads
    them, so a window of the buffer is what the convolution would read:

    - `vertical[l]`: (rows, C, k + H, k + W + k), the vertical input of every row so far (k zero rows
      on top, k zero columns each side). At the start of row i, the layer's (k + 1) x n kernel over rows
      i - k..i gives its whole output row i: computed once per row, for all layers in turn.
    - `horizontal[l]`: (rows, k + W, C), the horizontal input of the current row (k zero columns on
      the left, channels last so a window flattens without a copy). At (i, j) the 1 x (k + 1) kernel
      needs columns j - k..j: one matrix product per layer, plus the vertical term of (i, j).

    The arithmetic is the convolutions' own (same weights, same padding), in another order, so the
    logits equal the naive ones to float rounding and the seeded draws are the same (tests/test_pixelcnn_prior.py).
    """

    def __init__(self, model: "PixelCNNPriorModel", condition_ids: torch.Tensor):
        config, first = model.config, model.layers[0]
        rows, channels, size, k = condition_ids.shape[0], config.hidden_size, config.grid_size, first.k
        self.model, self.size, self.k, self.position = model, size, k, 0
        options = dict(device=model.device, dtype=model.token_embedding.weight.dtype)
        self.vertical = [torch.zeros(rows, channels, k + size, size + 2 * k, **options) for _ in model.layers]
        self.horizontal = [torch.zeros(rows, k + size, channels, **options) for _ in model.layers]
        # Per layer: the horizontal kernel as one (2C, (k + 1) * C) matrix over a channels-last window,
        # and the residual and skip 1x1 convolutions stacked into one (2C, C) product.
        self.horizontal_weights = [
            (layer.horizontal.weight.squeeze(2).permute(0, 2, 1).flatten(1), layer.horizontal.bias) for layer in model.layers
        ]
        self.out_weights = [
            (torch.cat([layer.residual.weight, layer.skip.weight]).flatten(1), torch.cat([layer.residual.bias, layer.skip.bias]))
            for layer in model.layers
        ]
        # Class conditioning: per layer the (rows, 2C) biases of the vertical and horizontal gates.
        self.biases = [
            (None, None) if layer.class_bias is None else layer.class_bias(condition_ids).chunk(2, dim=1)
            for layer in model.layers
        ]
        self.vertical_terms = None  # per layer (W, rows, 2C): vertical_to_horizontal(v_pre) + h_bias of the row

    def _start_row(self, tokens: torch.Tensor, row: int) -> None:
        """The vertical stack of `row` (every layer) from the rows above; resets the horizontal inputs."""
        k, size = self.k, self.size
        if row > 0:  # layer 0 reads the embedded row above (down_shift)
            above = self.model.token_embedding(tokens[:, (row - 1) * size : row * size])  # (rows, W, C)
            self.vertical[0][:, :, k + row, k : k + size] = above.transpose(1, 2)
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
        """Logits (rows, vocab_size) at `position`, given the canvas (rows, H * W) drawn before it."""
        if position != self.position:
            raise ValueError(f"`position` must be {self.position} (the cache decodes in raster order), got {position}")
        self.position += 1
        row, col = divmod(position, self.size)
        k, model = self.k, self.model
        if col == 0:
            self._start_row(tokens, row)
        else:  # layer 0 reads the token just drawn, left of (row, col) (right_shift)
            self.horizontal[0][:, k + col] = model.token_embedding(tokens[:, position - 1])
        skips = 0
        for index, ((weight, bias), (out_weight, out_bias)) in enumerate(zip(self.horizontal_weights, self.out_weights)):
            window = self.horizontal[index][:, col : col + k + 1].flatten(1)  # (rows, (k + 1) * C)
            gated = gate(F.linear(window, weight, bias) + self.vertical_terms[index][col])  # (rows, C)
            residual, skip = F.linear(gated, out_weight, out_bias).chunk(2, dim=1)
            skips = skips + skip
            if index + 1 < len(self.horizontal):  # type A (layer 0) has no residual connection
                self.horizontal[index + 1][:, k + col] = residual + (self.horizontal[index][:, k + col] if index else 0)
        _, hidden, _, out = model.head
        logits = F.linear(F.relu(F.linear(F.relu(skips), hidden.weight.flatten(1), hidden.bias)), out.weight.flatten(1), out.bias)
        return logits.float()


class PixelCNNPriorPreTrainedModel(TokenPriorPreTrainedModel):
    config_class = PixelCNNPriorConfig
    supports_gradient_checkpointing = True  # each `GatedLayer`


class PixelCNNPriorModel(PixelCNNPriorPreTrainedModel):
    """Gated PixelCNN p(x) = prod_i p(x_i | x_<i, class) over a (grid_size x grid_size) token grid.

    `forward(indices)` returns the mean NLL per token (`loss`), the logits (B, vocab_size, H, W) and
    the exact per-example log-likelihood in nats. `sample` (from `TokenPriorPreTrainedModel`) also takes
    `use_cache` (default True: fast generation with a `PixelCNNCache`; False: the naive loop; same draws).
    """

    card_template = "pixelcnn_prior.md.j2"
    decoding_options = frozenset({"use_cache"})
    sample_options = TokenPriorPreTrainedModel.sample_options | decoding_options

    def __init__(self, config: PixelCNNPriorConfig):
        super().__init__(config)
        channels = config.hidden_size
        num_conditions = None if config.num_classes is None else config.num_classes + 1
        self.token_embedding = nn.Embedding(config.vocab_size, channels)
        self.layers = nn.ModuleList(
            GatedLayer(channels, config.kernel_size, first=i == 0, num_conditions=num_conditions)
            for i in range(config.num_layers)
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, config.output_channels, 1),
            nn.ReLU(),
            nn.Conv2d(config.output_channels, config.vocab_size, 1),
        )
        self.post_init()

    # -- the network ------------------------------------------------------------------------------

    def _logits(self, indices: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Token grid (B, H', W) -> logits (B, vocab_size, H', W); any number of rows H' (causal in rows)."""
        x = self.token_embedding(indices).permute(0, 3, 1, 2)  # (B, C, H', W)
        vertical, horizontal, skips = x, x, 0
        for layer in self.layers:
            vertical, horizontal, skip = layer(vertical, horizontal, class_ids)
            skips = skips + skip
        # fp32 logits even under bf16 autocast: the likelihood sums a log-softmax over every pixel.
        return self.head(skips).float()

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
            indices: (B, grid_size, grid_size) integer tokens in [0, vocab_size).
            labels: (B,) class ids in [0, num_classes) for a conditional prior; None = the null label
                (needs `label_dropout > 0`). Must be None for an unconditional prior.
            generator: drives label dropout in training (reproducible losses).
            return_dict: return a `TokenPriorOutput` (default) or a tuple.
        """
        check_indices(indices, self.config.vocab_size, self.config.grid_size)
        check_generator(generator)
        class_ids = self._condition_ids(labels, indices.shape[0], generator, drop_labels=self.training)
        indices = indices.to(self.device)
        logits = self._logits(indices, class_ids)
        token_nll = F.cross_entropy(logits, indices, reduction="none")  # (B, H, W) in nats
        output = TokenPriorOutput(loss=token_nll.mean(), logits=logits, log_likelihood=-token_nll.sum(dim=(1, 2)))
        return output if return_dict else output.to_tuple()

    # -- public methods (`sample`, `bits_per_token`, `bits_per_dim`: `TokenPriorPreTrainedModel`) ------

    @torch.no_grad()
    def log_likelihood(self, indices: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(indices | labels) per example in nats, shape (B,) (no label dropout)."""
        check_indices(indices, self.config.vocab_size, self.config.grid_size)
        class_ids = self._condition_ids(labels, indices.shape[0])
        indices = indices.to(self.device)
        return -F.cross_entropy(self._logits(indices, class_ids), indices, reduction="none").sum(dim=(1, 2))

    def _next_token_logits(self, condition_ids: torch.Tensor, use_cache: bool = True) -> LogitsFn:
        """`sample(..., use_cache=True)` decodes with a `PixelCNNCache` (O(layers * kernel) work per token);
        `use_cache=False` reruns the network on the rows drawn so far at every position (O(H * W) work per
        token), the reference the fast path is tested against. The draws are the same."""
        check_bool("use_cache", use_cache)
        size = self.config.grid_size

        def logits_fn(tokens, position, cache):
            if use_cache:
                cache = PixelCNNCache(self, condition_ids) if cache is None else cache
                return cache.step(tokens, position), cache
            row, col = divmod(position, size)
            # Rows below `row` cannot influence it (causal), so only rows 0..row are computed.
            grid = tokens.view(-1, size, size)[:, : row + 1]
            return self._logits(grid, condition_ids)[:, :, row, col], cache

        return logits_fn
