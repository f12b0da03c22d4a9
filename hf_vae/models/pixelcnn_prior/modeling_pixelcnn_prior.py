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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ...modeling_outputs import TokenPriorOutput
from ...modeling_utils import TokenPriorPreTrainedModel
from ...sampling import LogitsFn
from ...validation import check_generator, check_indices
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


class PixelCNNPriorPreTrainedModel(TokenPriorPreTrainedModel):
    config_class = PixelCNNPriorConfig
    supports_gradient_checkpointing = True  # each `GatedLayer`


class PixelCNNPriorModel(PixelCNNPriorPreTrainedModel):
    """Gated PixelCNN p(x) = prod_i p(x_i | x_<i, class) over a (grid_size x grid_size) token grid.

    `forward(indices)` returns the mean NLL per token (`loss`), the logits (B, vocab_size, H, W) and
    the exact per-example log-likelihood in nats.
    """

    card_template = "pixelcnn_prior.md.j2"

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

    def _next_token_logits(self, condition_ids: torch.Tensor) -> LogitsFn:
        """Each position reruns the network on the rows drawn so far (O(H * W) passes: fine for small grids
        such as VQ-VAE codes or 28 x 28 binarized digits)."""
        size = self.config.grid_size

        def logits_fn(tokens, position, state):
            row, col = divmod(position, size)
            # Rows below `row` cannot influence it (causal), so only rows 0..row are computed.
            grid = tokens.view(-1, size, size)[:, : row + 1]
            return self._logits(grid, condition_ids)[:, :, row, col], state

        return logits_fn
