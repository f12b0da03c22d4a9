"""Training of every hf_vae family from a YAML recipe, on Accelerate.

    recipe.yaml ──► Recipe ──► train(): load_data ─► prepare_prior_data ─► the loop ─► run directory
                                        (splits)     (VQ-code cache)       (loop)      (artifacts)

- `recipe`: the recipe schema (five sections), its YAML loader and `--set` overrides, `build_model`.
- `splits`: the recipe's data as in-memory splits, the model/data compatibility check, `model_inputs`.
- `prior_data`: a prior over VQ-VAE codes trains on code grids (`indices`), encoded once and cached.
- `loop`: `train()`, the Accelerate loop with evaluation, early stopping and exact resume.
- `ema`: `WeightEMA`, the weight average evaluated and saved with `training.ema_decay`.
- `augmentation`: `random_shift`, the small-shift augmentation of `data.augment_shift`.
- `checkpoints`: `TrainState`, pickle-free checkpoints with a verified manifest, atomic saves.
- `tracking`: the JSONL tracker (`<run>/logs/metrics.jsonl`).
- `artifacts`: `metrics.json`, the sample / reconstruction / training-curve PNGs, the Hub push.

Run it with `hf-vae train RECIPE.yaml` or `accelerate launch training/train.py RECIPE.yaml`.
"""

from .artifacts import plot_training_curves, save_pngs, write_metrics
from .augmentation import random_shift
from .checkpoints import TrainState
from .ema import WeightEMA
from .loop import train
from .prior_data import encode_splits_to_indices, prepare_prior_data
from .recipe import DataArgs, EvaluationArgs, HubArgs, ModelArgs, Recipe, TrainingArgs, build_model
from .splits import check_compatible, load_data, model_inputs
from .tracking import JSONLTracker

__all__ = [
    "DataArgs",
    "EvaluationArgs",
    "HubArgs",
    "JSONLTracker",
    "ModelArgs",
    "Recipe",
    "TrainState",
    "TrainingArgs",
    "WeightEMA",
    "build_model",
    "check_compatible",
    "encode_splits_to_indices",
    "load_data",
    "model_inputs",
    "plot_training_curves",
    "prepare_prior_data",
    "random_shift",
    "save_pngs",
    "train",
    "write_metrics",
]
