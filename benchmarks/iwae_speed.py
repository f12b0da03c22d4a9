"""The k=1000 importance-weighted (IWAE) test evaluation of the mnist5k VAE: how fast, and how exact.

`VAEModel.log_likelihood` runs the encoder once per batch and the decoder k times; the decoder passes
are nearly all of the time. This script times the same seeded estimate (the recipe's evaluation
batches of 100 images, one generator seeded 0 across batches, as `evaluate` draws them) four ways, one
after the other in this one process:

- `reference`: the implementation before issue 15 (`channels_last=False`), the model in the default
  (NCHW) layout, as `from_pretrained` loads it;
- `channels_last`: today's default on CPU (NHWC decoder grids; the same numbers to float rounding);
- `trainer layout`: the reference path on a model whose weights are channels_last, as the training loop
  leaves them with `channels_last: true` (the recipe's test evaluation at the end of training);
- `bf16 decoder`: `decoder_precision="bf16"` (opt-in): its error against the reference is printed.

The model: `--model` (a trained VAE folder), else a short run of `hf_vae/recipes/vae_mnist5k.yaml`
(`--train-steps`, no test evaluation) so the estimates are those of a trained decoder.

    OMP_NUM_THREADS=1 python benchmarks/iwae_speed.py --num-images 500      # the full test split
    OMP_NUM_THREADS=1 python benchmarks/iwae_speed.py --model benchmarks/runs/vae_mnist5k/hf_vae
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from report import command_line, machine, write_markdown

from hf_vae import VAEModel
from hf_vae.data import load_split
from hf_vae.training import Recipe, train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RECIPE = ROOT / "hf_vae" / "recipes" / "vae_mnist5k.yaml"


def trained_model(args) -> tuple[VAEModel, str]:
    """The VAE to score and a line saying where it came from."""
    if args.model:
        return VAEModel.from_pretrained(args.model).eval(), f"`{args.model}`"
    run_dir = Path(args.output_dir) / "vae"
    if not (run_dir / "model.safetensors").is_file():
        recipe = Recipe.from_yaml(RECIPE, [f"training.output_dir={run_dir}", f"training.max_steps={args.train_steps}",
                                           "training.progress=false", "training.eval_every=100000",
                                           "training.save_every=100000", "evaluation.num_importance_samples=0"])
        train(recipe)
    return VAEModel.from_pretrained(run_dir).eval(), f"`{RECIPE.name}` trained {args.train_steps} steps (`{run_dir.relative_to(ROOT)}`)"


def timed_estimate(model, images, args, **options) -> tuple[torch.Tensor, float, float]:
    """log p(x) of every image (N,) with one seeded generator across batches, and the wall-clock and CPU
    seconds it took (this process's own CPU time, which other jobs on the machine inflate less)."""
    generator = torch.Generator().manual_seed(0)
    start, cpu_start = time.perf_counter(), time.process_time()
    estimates = [model.log_likelihood(images[i : i + args.batch_size], num_samples=args.k, generator=generator, **options)
                 for i in range(0, len(images), args.batch_size)]
    return torch.cat(estimates), time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a trained VAE folder (default: train --train-steps)")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--num-images", type=int, default=500, help="first N images of the mnist5k test split")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output_dir", default=str(HERE / "runs" / "iwae_speed"))
    parser.add_argument("--results", default=str(HERE / "results" / "iwae_speed.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, source = trained_model(args)
    test = load_split("mnist5k", "test", binarize="static", seed=0)  # the recipe's test set
    images = torch.stack([test[i]["pixel_values"] for i in range(min(args.num_images, len(test)))])
    trainer_layout = copy.deepcopy(model).to(memory_format=torch.channels_last)

    runs = {}
    with torch.no_grad():
        runs["reference"] = timed_estimate(model, images, args, channels_last=False)
        runs["channels_last"] = timed_estimate(model, images, args)
        runs["trainer layout"] = timed_estimate(trainer_layout, images, args, channels_last=False)
        runs["bf16 decoder"] = timed_estimate(model, images, args, decoder_precision="bf16")
    reference, reference_seconds, reference_cpu = runs["reference"]
    rows = []
    for name, (estimate, seconds, cpu_seconds) in runs.items():
        diff = estimate - reference
        rows.append({"path": name, "seconds": seconds, "speedup": reference_seconds / seconds, "cpu_seconds": cpu_seconds,
                     "cpu_speedup": reference_cpu / cpu_seconds,
                     "nll": -estimate.mean().item(), "mean_diff": -diff.mean().item(), "max_abs_diff": diff.abs().max().item()})
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "iwae_speed.json").write_text(json.dumps(rows, indent=2))

    lines = [
        "# IWAE test evaluation speed (k=1000, mnist5k VAE)", "",
        "Written by `benchmarks/iwae_speed.py` (its docstring says what each path is).", "",
        f"Command: `{command_line('OMP_NUM_THREADS=1 python')}`  ",
        f"Machine: {machine()}, shared with other jobs when run: times are indicative, ratios are in one process  ",
        f"Model: {source}; {len(images)} images of the mnist5k test split (static binarization, seed 0), batches of "
        f"{args.batch_size}, k={args.k}, one generator seeded 0: every path draws the same importance samples.", "",
        "| path | seconds | CPU seconds | speed-up vs reference (wall / CPU) | test NLL (nats) | NLL - reference (mean) | "
        "max abs per image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['path']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | {r['speedup']:.2f}x / {r['cpu_speedup']:.2f}x | "
                     f"{r['nll']:.4f} | {r['mean_diff']:+.5f} | "
                     f"{r['max_abs_diff']:.5f} |")
    lines += ["", "The fp32 paths agree to float rounding (target: 0.01 nats). The bf16 decoder's error is the last "
              "row's two difference columns; it is opt-in (`decoder_precision=\"bf16\"`), never the default."]
    write_markdown(args.results, lines)


if __name__ == "__main__":
    main()
