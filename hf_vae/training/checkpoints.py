"""Checkpoints and saves that survive a kill at any moment.

`accelerator.save_state` writes model, optimizer, scheduler, RNG and sampler state, but `load_state`
restores neither the step counter nor the position inside the epoch: `TrainState` carries those (and
the early-stopping bookkeeping), registered with `accelerator.register_for_checkpointing`. Every save
goes to a `.tmp` sibling first and is renamed into place, so a SIGKILL never leaves a partial folder.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers.utils import logging as transformers_logging

__all__ = ["TrainState", "atomic_save_pretrained", "latest_checkpoint", "save_checkpoint", "save_pretrained_quietly"]


@dataclass
class TrainState:
    """Registered with `accelerator.register_for_checkpointing`, so a resume restores the position."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    best_metric: float = math.inf  # lowest validation -ELBO (or loss) so far
    best_step: int = -1
    evals_without_improvement: int = 0
    elapsed_seconds: float = 0.0
    step_seconds: float = 0.0  # time inside training steps only (no evaluation or checkpointing)
    images_seen: int = 0  # training images over all processes

    def state_dict(self) -> dict:
        """All fields, for `accelerator.save_state`."""
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore the fields saved by `state_dict`."""
        for key, value in state.items():
            setattr(self, key, value)


def save_pretrained_quietly(model, target: Path) -> None:
    """`save_pretrained` without transformers' "Writing model shards" bar, which would break the training bar."""
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model.save_pretrained(target)
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def atomic_save_pretrained(model, target: Path) -> None:
    """`save_pretrained` into `target.tmp`, then replace `target` by it."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained_quietly(model, tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete `checkpoint-<step>` folder, or None."""
    done = sorted(p for p in checkpoints_dir.glob("checkpoint-*") if p.is_dir() and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def save_checkpoint(accelerator, checkpoints_dir: Path, state: TrainState, keep: int) -> None:
    """save_state into `checkpoint-N.tmp`, then rename, then drop all but the newest `keep` checkpoints.

    Every process calls it (save_state is collective); only the main process touches the folders.
    """
    target = checkpoints_dir / f"checkpoint-{state.step:08d}"
    tmp = target.with_name(target.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        for old in sorted(p for p in checkpoints_dir.glob("checkpoint-*") if not p.name.endswith(".tmp"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
