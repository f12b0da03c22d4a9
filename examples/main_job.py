"""The main job: train the default VAE recipe on the embedded mnist5k digits, evaluate it, save it,
reload it with `AutoModel.from_pretrained` and generate a grid of samples from the reloaded model.

    make demo                       # what the README runs (builds .venv first)
    python examples/main_job.py --set training.max_steps=500   # a shorter budget
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModel

import hf_vae  # noqa: F401  (registers the families with AutoModel)
from hf_vae.images import image_grid
from hf_vae.training import Recipe, train

RECIPE = Path(__file__).resolve().parents[1] / "hf_vae" / "recipes" / "vae_mnist5k.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--output_dir", default="runs/vae_mnist5k")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args()

    start = time.time()
    recipe = Recipe.from_yaml(args.recipe, [f"training.output_dir={args.output_dir}", *args.set])
    run_dir = train(recipe, resume=args.resume)

    # Reload from disk exactly as a user would, and generate from the reloaded model.
    model = AutoModel.from_pretrained(run_dir).eval()
    samples = model.sample(64, generator=torch.Generator().manual_seed(1234))
    image_grid(samples, nrow=8, scale=3).save(run_dir / "reloaded_samples.png")

    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    print(f"\nmain job done in {(time.time() - start) / 60:.1f} min; run directory: {run_dir}")
    for name in ("nll", "bits_per_dim", "elbo", "active_units"):
        if name in test:
            m = test[name]
            print(f"  test {name:>13}: {m['value']:.4g} {m['unit']} ({m['estimator']})")
    print(f"  samples from the reloaded model: {run_dir / 'reloaded_samples.png'}")


if __name__ == "__main__":
    main()
