"""What `gradient_checkpointing_enable()` saves and costs in each family, at the shipped recipes' sizes.

For each recipe's model and batch size: the memory one training forward pass leaves allocated for the
backward pass (torch's profiler: the bytes the forward's ops allocate and do not free), the time of one
forward + backward (median of `--repeats`), and the largest gradient difference against the plain model
(same weights, same seed). The memory numbers do not depend on the load; the times do.

    python benchmarks/gradient_checkpointing.py --repeats 5 --note "idle machine"
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from hf_vae.training.recipe import Recipe, build_model
from report import command_line, machine, write_markdown

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("vae_mnist5k", "cvae_mnist5k", "vqvae_mnist5k", "pixelcnn_mnist5k", "transformer_prior_vqvae_mnist5k")


def batch_for(model, batch_size: int) -> dict:
    """A seeded batch of the model's input: binary images, or token grids, with labels when conditional."""
    g = torch.Generator().manual_seed(0)
    config = model.config
    if model.input_kind == "images":
        shape = (batch_size, config.num_channels, config.image_size, config.image_size)
        inputs = {"pixel_values": torch.rand(shape, generator=g).round()}
    else:
        inputs = {"indices": torch.randint(0, config.vocab_size, (batch_size, config.grid_size, config.grid_size), generator=g)}
    if model.is_conditional:
        inputs["labels"] = torch.randint(0, config.num_classes, (batch_size,), generator=g)
    return inputs


def training_step(model, inputs, measure_memory: bool = False):
    """One seeded forward + backward: (bytes the forward leaves for the backward or None, gradients, seconds)."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    start = time.perf_counter()
    if measure_memory:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            loss = model(**inputs, generator=torch.Generator().manual_seed(0)).loss
        retained = sum(event.self_cpu_memory_usage for event in prof.key_averages())
    else:
        loss, retained = model(**inputs, generator=torch.Generator().manual_seed(0)).loss, None
    loss.backward()
    seconds = time.perf_counter() - start
    return retained, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, seconds


def measure(recipe_name: str, repeats: int) -> dict:
    recipe = Recipe.from_yaml(REPO_ROOT / "hf_vae" / "recipes" / f"{recipe_name}.yaml")
    torch.manual_seed(0)
    plain = build_model(recipe)
    checkpointed = copy.deepcopy(plain)
    checkpointed.activation_checkpointing_enable()
    inputs = batch_for(plain, recipe.training.batch_size)
    row = {"recipe": recipe_name, "family": recipe.model.family, "batch_size": recipe.training.batch_size}
    for name, model in (("plain", plain), ("checkpointed", checkpointed)):
        row[f"{name}_mib"] = training_step(model, inputs, measure_memory=True)[0] / 2**20
        times = [training_step(model, inputs)[2] for _ in range(repeats)]
        row[f"{name}_seconds"] = statistics.median(times)
    gradients, gradients_ckpt = training_step(plain, inputs)[1], training_step(checkpointed, inputs)[1]
    row["max_gradient_difference"] = max(float((gradients_ckpt[n] - g).abs().max()) for n, g in gradients.items())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="", help="conditions of the run (machine load), written into the results")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results" / "gradient_checkpointing.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(name, args.repeats) for name in RECIPES]
    lines = [
        "# Gradient checkpointing: memory kept for the backward pass, and the time it costs",
        "",
        f"Command: `{command_line()}`",
        f"Machine: {machine()}.",
        f"Conditions: {args.note or 'not given'}.",
        "",
        "Each shipped recipe's model at its batch size, one training step. *Kept* is what the forward pass",
        "leaves allocated for the backward pass (torch profiler, deterministic); the step is one forward + backward,",
        f"median of {args.repeats}. The gradient difference is the largest absolute difference from the plain model.",
        "",
        "| recipe | family | batch | kept, plain (MiB) | kept, checkpointed (MiB) | saved | step, plain (s) | step, checkpointed (s) | max gradient difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        saved = 1 - r["checkpointed_mib"] / r["plain_mib"]
        lines.append(f"| `{r['recipe']}` | {r['family']} | {r['batch_size']} | {r['plain_mib']:.1f} | {r['checkpointed_mib']:.1f} "
                     f"| {saved:.0%} | {r['plain_seconds']:.3f} | {r['checkpointed_seconds']:.3f} | {r['max_gradient_difference']:.1e} |")
    write_markdown(args.output, lines)


if __name__ == "__main__":
    main()
