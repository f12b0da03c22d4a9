"""What the seed-topic examples share: their command line, the recipes they train, and their outputs.

Every example trains its own small model with the package trainer (`hf_vae.training.train`) from a
shipped recipe plus `--set`-style overrides, so it needs nothing that another script made first. A
trained run is reused when its folder already holds the same recipe (so running the interpolation,
anomaly and IWAE examples one after another trains the VAE once).

Two sizes: the default (mnist5k, 28x28, minutes on a CPU) and `--tiny` (scikit-learn's 8x8 digits, a
few dozen steps, seconds; what CI runs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from hf_vae.data import load_split
from hf_vae.training import Recipe, train

REPO = Path(__file__).resolve().parents[1]
# Quiet, short runs: one evaluation at the end (it also picks the kept weights), no TensorBoard, no
# importance-weighted test NLL (the examples measure what they show themselves).
QUIET = ["training.trackers=[jsonl]", "training.progress=false", "training.max_time_minutes=null",
         "training.early_stopping_patience=null", "evaluation.num_importance_samples=0", "evaluation.num_samples=16"]


def parse_args(description: str, default_output_dir: str, argv=None, add_arguments=None) -> argparse.Namespace:
    """`--tiny`, `--output-dir`, `--runs-dir`, `--steps` and `--seed`, plus the example's own (`add_arguments(parser)`)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="8x8 digits and a few dozen steps: seconds, for CI")
    parser.add_argument("--output-dir", default=default_output_dir, help="where the PNGs and tables go")
    parser.add_argument("--runs-dir", default="runs/examples", help="where the trained models go (shared by the examples)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of each model (default: by size)")
    parser.add_argument("--seed", type=int, default=0)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    args.output_dir = Path(args.output_dir)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    args.runs_dir = Path(args.runs_dir)
    return args


def recipe_file(name: str) -> Path:
    """A shipped recipe by name (the YAML files of `hf_vae/recipes/`, package data of the wheel)."""
    from hf_vae.recipes import resolve_recipe

    return resolve_recipe(name)[0]


def make_recipe(family: str, args: argparse.Namespace, run_name: str, overrides: list[str], *,
                full_steps: int, tiny_steps: int) -> Recipe:
    """`<family>_mnist5k` (or `<family>_digits_tiny` with `--tiny`) with QUIET, the step budget and `overrides`."""
    name = f"{family}_digits_tiny" if args.tiny else f"{family}_mnist5k"
    steps = args.steps or (tiny_steps if args.tiny else full_steps)
    budget = [f"training.max_steps={steps}", f"training.eval_every={steps}", f"training.save_every={steps}",
              f"training.seed={args.seed}", f"training.output_dir={args.runs_dir / run_name}"]
    return Recipe.from_yaml(recipe_file(name), [*QUIET, *budget, *overrides])


def train_or_reuse(recipe: Recipe) -> Path:
    """Train `recipe` unless its output folder already holds a finished run of the same recipe; returns the run."""
    run_dir = Path(recipe.training.output_dir)
    metrics = run_dir / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text())["recipe"] == json.loads(json.dumps(recipe.to_dict())):
        print(f"reusing the trained model in {run_dir}")
        return run_dir
    if run_dir.exists():  # an older or interrupted run of another recipe: start again
        import shutil

        shutil.rmtree(run_dir)
    start = time.time()
    train(recipe)
    print(f"trained {recipe.model.family} for {recipe.training.max_steps} steps in {time.time() - start:.0f} s: {run_dir}")
    return run_dir


def small_vae_overrides(args: argparse.Namespace) -> list[str]:
    """The default VAE recipe, smaller and shorter (a CPU trains it in minutes); the tiny recipe as it is."""
    if args.tiny:
        return []
    return ["model.config.latent_dim=16", "model.config.num_res_blocks=1", "model.config.kl_warmup_steps=300"]


def test_split(args: argparse.Namespace, **view_kwargs):
    """The test images the recipes evaluate on: one static binarization (seed 0) of the test split."""
    return load_split("digits" if args.tiny else "mnist5k", "test", binarize="static", **view_kwargs)


def batch_of(dataset, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` examples (all by default) as (pixel_values (N, C, H, W), labels (N,))."""
    count = len(dataset) if count is None else min(count, len(dataset))
    examples = [dataset[i] for i in range(count)]
    return torch.stack([e["pixel_values"] for e in examples]), torch.stack([torch.as_tensor(e["labels"]) for e in examples])


def write_table(path: Path, header: list[str], rows: list[list], note: str = "") -> str:
    """A markdown table (floats to 4 significant digits) written to `path`, with an optional note above it."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}", *[f"| {' | '.join(row)} |" for row in cells]]
    text = (note + "\n\n" if note else "") + "\n".join(lines) + "\n"
    path.write_text(text)
    print(text)
    return text


def trained_vae(args: argparse.Namespace):
    """The VAE of the interpolation, anomaly and IWAE examples (trained once, then reused), in eval mode."""
    from transformers import AutoModel

    name = "digits_vae" if args.tiny else "mnist5k_vae"
    recipe = make_recipe("vae", args, name, small_vae_overrides(args), full_steps=1000, tiny_steps=60)
    return AutoModel.from_pretrained(train_or_reuse(recipe)).eval()
