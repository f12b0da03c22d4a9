"""What a finished run leaves beside its weights: `metrics.json`, `samples.png`, `reconstructions.png`,
and optionally the push of the whole folder to the Hub. The other pictures (training curves, latent
space, codebook) are drawn by `pictures`.

Which PNGs are written follows the family's `capabilities` ("sample", "reconstruct").
"""

from __future__ import annotations

import json
import os
import math
from pathlib import Path

import torch

from ..images import image_grid
from .pictures import plot_training_curves  # (it lived here: `hf_vae.training.artifacts` still has it)

__all__ = ["plot_training_curves", "push_to_hub", "save_pngs", "write_metrics"]


def write_metrics(run_dir: Path, recipe, state, metrics: dict, num_processes: int, data: dict | None = None,
                  ema: dict | None = None) -> None:
    """`metrics.json`: the recipe, the run's position and speed, every test metric (`Metric.to_dict`), under
    `"data"` the data read (`hf_vae.data.splitting.data_record`: dataset, config, revision asked and the commit it
    resolved to, rows per split), which the card prints, and under `"ema"` (weight-EMA runs only) the decay,
    start step, updates and which weights were evaluated and saved (`"weights"`: `"ema"` or `"trained"`)."""
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"`data` must be a dict (see hf_vae.data.splitting.data_record) or None, got {type(data).__name__}")
    summary = {
        "recipe": recipe.to_dict(),
        "steps": state.step,
        "best_step": state.best_step,
        "train_seconds": round(state.elapsed_seconds, 1),
        "train_images_per_second": round(state.images_seen / max(state.step_seconds, 1e-9), 1),
        "num_processes": num_processes,
        "nonfinite_skips": state.nonfinite_skips,
        "skipped_images": state.skipped_images,
        "seconds_to_first_step": None if state.seconds_to_first_step is None else round(state.seconds_to_first_step, 2),
        "test": {name: m.to_dict() for name, m in metrics.items()},
    }
    if data is not None:
        summary["data"] = data
    if ema is not None:
        summary["ema"] = ema
    tmp = run_dir / "metrics.json.tmp"  # written whole, then renamed: a kill never leaves half a file
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, run_dir / "metrics.json")


def save_pngs(model, test, run_dir: Path, num_samples: int = 64, seed: int = 0) -> None:
    """samples.png (`num_samples` images drawn with a generator seeded by `seed`; a conditional model
    cycles through its classes) and reconstructions.png (up to 16 test images above their reconstructions)."""
    capabilities = type(model).capabilities
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_samples) % model.config.num_classes if model.is_conditional else None
    nrow = int(math.sqrt(num_samples)) or 1
    if "sample" in capabilities:
        with torch.no_grad():
            if type(model).input_kind == "tokens":
                # Token grids become images through the pixel levels or the prior's VQ-VAE.
                from ..generation import generate_images

                samples = generate_images(model, num_samples, labels=labels, generator=generator, progress=False)
            else:
                label_kwargs = {"labels": labels} if labels is not None else {}
                samples = model.sample(num_samples, generator=generator, **label_kwargs)
        image_grid(samples, nrow=nrow, scale=2).save(run_dir / "samples.png")
    if "reconstruct" in capabilities:
        from ..data import first_examples

        first = first_examples(test, 16)  # the test split's first 16 examples (fewer if it is smaller)
        originals = first["pixel_values"]
        count = len(originals)
        label_kwargs = {"labels": first["labels"]} if model.is_conditional else {}
        with torch.no_grad():
            recon = model.reconstruct(originals.to(model.device), **label_kwargs).cpu()
        image_grid(torch.cat([originals, recon]), nrow=count, scale=2).save(run_dir / "reconstructions.png")


def push_to_hub(run_dir: Path, hub_args) -> str:
    """Push the run folder to `hub_args.hub_model_id` in one commit; returns the commit URL."""
    from ..hub import push_run

    commit = push_run(run_dir, hub_args.hub_model_id, private=hub_args.private)
    return commit.commit_url
