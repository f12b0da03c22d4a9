"""VQ-VAE on mnist5k: reconstruction, the cost of the code and codebook health, with dead-code restarts
on and off (two runs of the same recipe, the same seed; only `restart_dead_codes` differs).

The recipe `hf_vae/recipes/vqvae_mnist5k.yaml` (7x7 code grid, 512 codes, EMA codebook, k-means
initialisation) is trained by the one training loop (best validation checkpoint kept) and scored by
`hf_vae.evaluation.evaluate` on the statically binarized mnist5k test split:

- -log p(x|z_q) in nats (Bernoulli decoder on binary pixels: a probability of the pixels);
- MSE per pixel and PSNR (dB, peak 1, per image then averaged over images) of the decoder's mean image;
- bits/dim of the code under a uniform prior, h * w * log2(K) / (C * H * W): the bound a prior must beat;
- codebook perplexity, codes used and dead codes from the code counts over the whole split (test, and
  the training split too).

The restarts-on run stays in `benchmarks/runs/vqvae_mnist5k/restarts_on`: the priors' benchmark reads
its code grids.

    pip install -e .[bench]
    OMP_NUM_THREADS=1 python benchmarks/vqvae_mnist5k.py    # writes benchmarks/results/vqvae_mnist5k.md
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from report import command_line, machine, write_markdown

import hf_vae  # noqa: F401  (registers the families with AutoModel)
from hf_vae.data import TensorDictDataset
from hf_vae.evaluation import evaluate
from hf_vae.training import Recipe, load_data, train

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "hf_vae" / "recipes" / "vqvae_mnist5k.yaml"
RUNS = {"restarts_on": "true", "restarts_off": "false"}


def run(recipe_path: str, overrides: list[str], output_dir: Path, restarts: str, skip_training: bool) -> dict:
    recipe = Recipe.from_yaml(recipe_path, [f"training.output_dir={output_dir}", "training.progress=false",
                                            f"model.config.restart_dead_codes={restarts}", *overrides])
    if not skip_training:
        shutil.rmtree(output_dir, ignore_errors=True)  # a fresh run, not a resume of an old one
        train(recipe)
    summary = json.loads((output_dir / "metrics.json").read_text())
    from transformers import AutoModel

    model = AutoModel.from_pretrained(output_dir).eval()
    train_split = load_data(recipe)["train"]
    # The stored training images are grey (the loop binarizes them per step): score one fixed binarization.
    generator = torch.Generator().manual_seed(recipe.data.binarize_seed)
    binary = torch.bernoulli(train_split["pixel_values"], generator=generator)
    on_train = evaluate(model, TensorDictDataset({**train_split.tensors, "pixel_values": binary}), progress=False)
    return {"summary": summary, "test": summary["test"], "train": {k: m.to_dict() for k, m in on_train.items()},
            "grid": model.code_grid_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--output_dir", default=str(HERE / "runs" / "vqvae_mnist5k"))
    parser.add_argument("--results", default=str(HERE / "results" / "vqvae_mnist5k.md"))
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--skip-training", action="store_true", help="score the models already in --output_dir")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = {}
    for name in args.runs:
        results[name] = run(args.recipe, args.set, Path(args.output_dir) / name, RUNS[name], args.skip_training)

    recipe = Recipe.from_yaml(args.recipe, args.set)
    config = recipe.model.config
    first = next(iter(results.values()))
    grid, k = first["grid"], config.get("codebook_size", 512)
    command = command_line()
    lines = [
        "# VQ-VAE on mnist5k: dead-code restarts on and off",
        "",
        f"Command: `OMP_NUM_THREADS=1 {command}`  ",
        f"Recipe: `{Path(args.recipe).name}` {' '.join(args.set)} (only `model.config.restart_dead_codes` differs between the rows)  ",
        f"Machine: {machine()}, "
        "shared with other jobs (times are indicative)  ",
        f"Model: {grid}x{grid} code grid, {k} codes of size {config.get('embedding_dim')}, EMA codebook (decay "
        f"{config.get('ema_decay')}), k-means initialisation, restarts of codes unused for {config.get('dead_code_window')} steps; "
        f"Bernoulli p(x|z_q), dynamic binarization for training.  ",
        f"Test set: mnist5k test split (500 images, {500 * grid * grid} code vectors), static binarization seed "
        f"{recipe.data.binarize_seed}; train split: the {4500 - recipe.data.validation_size} training images, one fixed binarization.",
        "",
        "| run | test -log p(x\\|z_q) (nats) | MSE / pixel | PSNR (dB, per image) | code bits/dim (uniform prior) | "
        "perplexity (test) | codes used (test) | dead codes (test) | codes used (train split) | steps (best) | train time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        t, tr, s = r["test"], r["train"], r["summary"]
        lines.append(
            f"| {name.replace('_', ' ')} | {t['reconstruction_loss']['value']:.2f} | {t['mse']['value']:.4f} | {t['psnr']['value']:.2f} | "
            f"{t['code_bits_per_dim']['value']:.4f} | {t['perplexity']['value']:.1f} | {t['codes_used']['value']} / {k} "
            f"({t['codes_used_fraction']['value']:.1%}) | {t['dead_codes']['value']} | {tr['codes_used']['value']} / {k} "
            f"({tr['codes_used_fraction']['value']:.1%}) | {s['steps']} ({s['best_step']}) | {s['train_seconds'] / 60:.1f} min |"
        )
    lines += [
        "",
        f"Bits per token under the uniform prior: log2({k}) = {first['test']['code_bits_per_token']['value']:.0f}; "
        f"{grid * grid} tokens per image. Codebook health is computed from the code counts over the whole split "
        "(not averaged per batch); target with restarts on: >= 95% of the codes used.",
    ]
    write_markdown(args.results, lines)


if __name__ == "__main__":
    main()
