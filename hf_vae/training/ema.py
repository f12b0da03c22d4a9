"""Weight EMA for evaluation (`training.ema_decay`, `training.ema_start_step`).

    after optimizer step s (s >= ema_start_step):  W_ema <- decay * W_ema + (1 - decay) * W
    (the first update copies W; before it the trained weights themselves are evaluated)

The average is torch's own `AveragedModel` with `get_ema_multi_avg_fn` (one fused `_foreach_lerp_` per
device and dtype), over the parameters and the floating buffers, kept on the model's device (the accelerator
when there is one). Once it has started, the validation, the choice of the best checkpoint, the test
evaluation and the saved model all use the averaged weights; `metrics.json` and the card say so. Its state
(the averaged weights and the update count) is part of every checkpoint, so a resumed run averages exactly
what an uninterrupted one would.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["WeightEMA"]


class WeightEMA:
    """An exponential moving average of a model's weights, updated after each optimizer step.

    Args:
        model: the trained (unwrapped) model; a deep copy of it holds the average.
        decay: weight of the old average at each update, in [0, 1).
        start_step: the first optimizer step (1-based count of steps done) whose weights are averaged;
            the average starts as a copy of that step's weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float, start_step: int = 0):
        self.decay, self.start_step = decay, start_step
        # use_buffers: floating buffers are averaged too, so the copy is a complete model on its own.
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> torch.nn.Module:
        """The model holding the averaged weights (a `PreTrainedModel` like the trained one)."""
        return self.averaged.module

    @property
    def num_updates(self) -> int:
        """How many optimizer steps have been averaged (0: not started)."""
        return int(self.averaged.n_averaged)

    @property
    def started(self) -> bool:
        """Whether the average holds any weights yet (else the trained model is the one to evaluate)."""
        return self.num_updates > 0

    def step(self, model: torch.nn.Module, global_step: int) -> None:
        """Average `model`'s weights in, once `global_step` (optimizer steps done) reached `start_step`."""
        if global_step >= self.start_step:
            self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """`module.<name>` averaged tensors and `n_averaged`, ready for safetensors."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `state_dict()` exactly (every key must match)."""
        self.averaged.load_state_dict(state)

    def summary(self) -> dict:
        """The settings and the update count (`metrics.json` records them under `"ema"`)."""
        return {"decay": self.decay, "start_step": self.start_step, "updates": self.num_updates}
