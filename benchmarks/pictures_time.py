"""How long the end-of-training pictures take (`hf_vae.training.pictures.save_pictures`) for the mnist5k
recipes' VAE, CVAE and VQ-VAE on the mnist5k test split, on the CPU.

The models are built from the recipes untrained (drawing costs the same for any weights: the pictures encode
the same test images), or loaded from `--runs <folder>` holding `vae_mnist5k/` etc. when trained there. The
evaluation whose numbers the KL picture plots is run first and not timed; the training curves are drawn from
a synthetic 6,000-step log.

    OMP_NUM_THREADS=1 python benchmarks/pictures_time.py     # writes benchmarks/results/pictures_time.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch
from report import command_line, machine, write_markdown

from hf_vae import data as hd
from hf_vae.evaluation import evaluate
from hf_vae.training import Recipe, build_model
from hf_vae.training.pictures import save_pictures

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("vae_mnist5k", "cvae_mnist5k", "vqvae_mnist5k")


def _model(name: str, runs: Path | None):
    if runs is not None and (runs / name / "config.json").is_file():
        from transformers import AutoModel

        return AutoModel.from_pretrained(runs / name).eval(), "trained"
    torch.manual_seed(0)
    return build_model(Recipe.from_yaml(REPO / "hf_vae" / "recipes" / f"{name}.yaml")).eval(), "untrained"


def _synthetic_log(path: Path, steps: int = 6000) -> None:
    path.parent.mkdir(parents=True)
    rows = [{"step": s, "train/loss": 100 + 400 / s, "train/reconstruction_loss": 90 + 400 / s, "train/kl_loss": 10.0}
            for s in range(50, steps + 1, 50)]
    rows += [{"step": s, "validation/elbo": -100 - 400 / s, "validation/reconstruction_loss": 90.0, "validation/kl": 10.0}
             for s in range(500, steps + 1, 500)]
    path.write_text("\n".join(json.dumps(row) for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=None, help="folder with trained <recipe>/ run directories")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "pictures_time.md")
    args = parser.parse_args()
    test = hd.load_split("mnist5k", "test", binarize="static", seed=0)
    lines = ["# End-of-training pictures: time on the CPU", "", f"Command: `{command_line()}`", "",
             f"Machine: {machine()}. Test split: mnist5k, {len(test)} images.", "",
             "| recipe | weights | pictures written | seconds |", "|---|---|---|---|"]
    for name in RECIPES:
        model, weights = _model(name, args.runs)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", UserWarning)  # an untrained VAE's posterior collapse
            metrics = evaluate(model, test, num_importance_samples=0, progress=False)
        with tempfile.TemporaryDirectory() as folder:
            _synthetic_log(Path(folder) / "logs" / "metrics.jsonl")
            start = time.perf_counter()
            written = save_pictures(model, test, Path(folder), metrics)
            seconds = time.perf_counter() - start
        lines.append(f"| `{name}` | {weights} | {', '.join(sorted(written))} | {seconds:.2f} |")
    write_markdown(args.output, lines)


if __name__ == "__main__":
    main()
