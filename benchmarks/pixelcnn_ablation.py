"""The gated PixelCNN quality harness (issue #17): `pixelcnn_mnist5k.yaml` and its regularised variants, each
trained by the one training loop on the same budget, scored exactly on the same 500 test images.

Variants (`--variants`, in this order):

- `as_is`: the recipe unchanged (apart from the budget).
- `ema`: + weight EMA for evaluation (`training.ema_decay`, `--ema-decay`; `--ema-start-step`).
- `dropout`: + dropout on the gated outputs in training (`model.config.dropout`, `--dropout`).
- `larger`: deeper and wider (`model.config.num_layers` `--larger-layers`, the width `--larger-width`).
- `combined`: every option above whose test NLL beat `as_is` in this run (all of them when none did, and the
  table says so); it needs the single-option runs, stored or run now.

Budget (`--steps` and/or `--minutes`, the same for every variant): `--steps N` sets `training.max_steps` (the
cosine schedule then ends at N; evaluation and checkpoints at most every N/4 steps); `--minutes M` sets
`training.max_time_minutes` (the schedule keeps the recipe's length and stops early).

Each variant's test NLL is exact (the PixelCNN's own likelihood), per image, on the trainer's own test split
(mnist5k test, static binarization seed 0), so the table gives the mean +/- the standard error of the
500-image mean and, against `as_is`, the paired difference +/- its standard error (same images: much
tighter than either mean's). Training minutes, steps, torch threads and the 1-minute load average before and
after each run stand beside it: times on a shared machine are indicative only; NLLs are not affected.

    OMP_NUM_THREADS=1 python benchmarks/pixelcnn_ablation.py --minutes 40        # the full ablation
    OMP_NUM_THREADS=1 python benchmarks/pixelcnn_ablation.py --steps 400 --variants as_is ema
    python benchmarks/pixelcnn_ablation.py --render                              # the markdown from stored JSON
    python benchmarks/pixelcnn_ablation.py --smoke                               # seconds: the tiny digits recipe
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import torch
from report import command_line, machine, write_markdown, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = ROOT / "hf_vae" / "recipes"
VARIANTS = ("as_is", "ema", "dropout", "larger", "combined")
SINGLE = VARIANTS[1:-1]  # the options `combined` may take
TITLE = "# Gated PixelCNN ablation on binarized mnist5k"


def _width_key(config: dict) -> str:
    """The recipe's name for the stacks' width (`hidden_size`; recipes may still say `hidden_channels`)."""
    return "hidden_channels" if "hidden_channels" in config else "hidden_size"


def option_overrides(args, config: dict) -> dict[str, list[str]]:
    """`--set`-style overrides of each single option."""
    return {
        "ema": [f"training.ema_decay={args.ema_decay}", *([f"training.ema_start_step={args.ema_start_step}"] if args.ema_start_step else [])],
        "dropout": [f"model.config.dropout={args.dropout}"],
        "larger": [f"model.config.num_layers={args.larger_layers}", f"model.config.{_width_key(config)}={args.larger_width}"],
    }


def budget_overrides(args, recipe) -> list[str]:
    """The same budget for every variant: steps (with evaluation, checkpoints and warm-up fitted into
    them) and/or wall-clock minutes."""
    t = recipe.training
    items = []
    if args.steps is not None:
        cadence = max(1, min(t.eval_every, args.steps // 4))
        items += [f"training.max_steps={args.steps}", f"training.eval_every={cadence}", f"training.save_every={cadence}",
                  f"training.warmup_steps={min(t.warmup_steps, args.steps // 10)}"]
    if args.minutes is not None:
        items.append(f"training.max_time_minutes={args.minutes}")
    return items


def per_image_nll(run_dir: Path, recipe) -> list[float]:
    """Exact -log p(x) in nats of every test image, by the saved model, on the trainer's own test split."""
    from transformers import AutoModel

    from hf_vae.data import make_eval_loader
    from hf_vae.training import load_data

    model = AutoModel.from_pretrained(run_dir).eval()
    nlls = []
    with torch.no_grad():
        for batch in make_eval_loader(load_data(recipe)["test"], 100):
            nlls += model.score(batch["pixel_values"]).score.tolist()
    return nlls


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """The mean and the standard error of the mean (sample standard deviation / sqrt(n))."""
    n = len(values)
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(variance / n)


def run_variant(name: str, budget: list[str], options: list[str], args, store: Path, note: str | None = None) -> dict:
    """Train one variant (the recipe + `budget` + `options` overrides) from scratch, score it, store and
    return its record."""
    from hf_vae.training import Recipe, train

    run_dir = Path(args.output_dir) / name
    recipe = Recipe.from_yaml(args.recipe, [f"training.output_dir={run_dir}", "training.progress=false", *budget, *options])
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resume of an old one
    load_before, cpu_start = os.getloadavg()[0], time.process_time()
    train(recipe)
    load_after, cpu_minutes = os.getloadavg()[0], (time.process_time() - cpu_start) / 60  # training + test NLL
    summary = json.loads((run_dir / "metrics.json").read_text())
    nlls = per_image_nll(run_dir, recipe)
    mean, se = mean_and_se(nlls)
    recorded = summary["test"]["nll"]["value"]
    if abs(mean - recorded) > 1e-2:  # the per-image scores are the trainer's own test NLL, image by image
        raise RuntimeError(f"per-image NLL mean {mean:.4f} must match metrics.json's {recorded:.4f} for {name}")
    record = {"variant": name, "budget": budget, "options": options, "note": note, "nll": mean, "se": se, "per_image": nlls,
              "estimator": summary["test"]["nll"]["estimator"], "steps": summary["steps"], "best_step": summary["best_step"],
              "train_minutes": summary["train_seconds"] / 60, "cpu_minutes": cpu_minutes, "threads": torch.get_num_threads(),
              "load": [round(load_before, 2), round(load_after, 2)], "cpus": os.cpu_count(),
              "ema": summary.get("ema"), "recipe": Path(args.recipe).name, "command": command_line("OMP_NUM_THREADS=1 python"),
              "machine": machine(), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (store / f"{name}.json").write_text(json.dumps(record, indent=1))
    return record


def combined_overrides(records: dict, singles: dict[str, list[str]]) -> tuple[list[str], str]:
    """The overrides of every single option that beat `as_is`, and a note on how they were chosen."""
    if "as_is" not in records or not any(o in records for o in singles):
        raise ValueError("`--variants combined` must follow stored or run `as_is` and single-option runs, got none")
    base = records["as_is"]["nll"]
    better = [o for o in singles if o in records and records[o]["nll"] < base]
    chosen = better or [o for o in singles if o in records]
    note = (f"options that beat as_is here: {', '.join(better)}" if better
            else f"no single option beat as_is here; all run ones combined: {', '.join(chosen)}")
    return [item for o in chosen for item in singles[o]], note


def _cpu_minutes(record: dict) -> str:
    """The record's process CPU minutes; records stored before they were kept show the per-step estimate their
    note gives, else nothing."""
    return f"{record['cpu_minutes']:.1f}" if "cpu_minutes" in record else record.get("cpu_minutes_note", "")


def paired(record: dict, base: dict) -> tuple[float, float]:
    """The mean per-image difference to `base` and its standard error (same test images, same order)."""
    return mean_and_se([a - b for a, b in zip(record["per_image"], base["per_image"])])


def render(store: Path) -> list[str]:
    """The markdown table from every stored variant."""
    records = {n: json.loads((store / f"{n}.json").read_text()) for n in VARIANTS if (store / f"{n}.json").is_file()}
    lines = [TITLE, "", "Written by `benchmarks/pixelcnn_ablation.py` (results stored as JSON beside the runs, "
             f"`{store.relative_to(ROOT) if store.is_relative_to(ROOT) else store}`). Test NLL: exact, nats per image, "
             "mean +/- standard error of the test-set mean; the difference to `as_is` is paired over the same images. "
             "Times were measured on a machine shared with other jobs unless the load says otherwise.", ""]
    if not records:
        return lines + ["No variant has been run yet."]
    first = next(iter(records.values()))
    commands: dict[str, list[str]] = {}  # each command and the variants it ran (stored runs may come from several)
    for name, r in records.items():
        commands.setdefault(r["command"], []).append(name)
    lines += [f"Recipe: `{first['recipe']}`  ", f"Machine: {first['machine']}, {first['cpus']} CPUs  ",
              *[f"Command ({', '.join(names)}): `{command}`  " for command, names in commands.items()], "",
              "| variant | overrides | test NLL (nats) | vs as_is (paired) | estimator | steps (best) | train min | CPU min (training + test) | threads | load (1-min avg, before -> after) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    base = records.get("as_is")
    for name, r in records.items():
        delta = "" if base is None or name == "as_is" else "{:+.2f} +/- {:.2f}".format(*paired(r, base))
        lines.append(f"| {name} | {' '.join(f'`{o}`' for o in r['options']) or '(recipe)'} "
                     f"| {r['nll']:.2f} +/- {r['se']:.2f} | {delta} | {r['estimator']} | {r['steps']} ({r['best_step']}) "
                     f"| {r['train_minutes']:.1f} | {_cpu_minutes(r)} | {r['threads']} | {r['load'][0]:.1f} -> {r['load'][1]:.1f} |")
    notes = [f"`{name}`: {r['note']}." for name, r in records.items() if r.get("note")]
    if notes:
        lines += ["", *notes]
    lines += ["", f"Budget per variant: {' '.join(f'`{o}`' for o in first['budget'])}. Target (issue #17): <= 85.0 nats exact."]
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per variant")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock minutes per variant")
    parser.add_argument("--recipe", default=str(CONFIGS / "pixelcnn_mnist5k.yaml"))
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--ema-start-step", type=int, default=0, help="first optimizer step the EMA averages")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--larger-layers", type=int, default=10)
    parser.add_argument("--larger-width", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--output_dir", default=str(HERE / "runs" / "pixelcnn_ablation"))
    parser.add_argument("--results", default=str(HERE / "results" / "pixelcnn_ablation.md"))
    parser.add_argument("--render", action="store_true", help="only re-render the markdown from the stored JSON")
    parser.add_argument("--smoke", action="store_true", help="the tiny digits recipe, 4 steps per variant, small options")
    args = parser.parse_args(argv)
    if args.smoke:
        args.recipe, args.steps = str(CONFIGS / "pixelcnn_digits_tiny.yaml"), args.steps or 4
        args.larger_layers, args.larger_width, args.ema_decay = 5, 24, 0.5
    if not args.render and args.steps is None and args.minutes is None:
        parser.error("`--steps` or `--minutes` must be given (the same budget for every variant), got neither")
    return args


def main(argv=None) -> dict:
    """Run the asked variants, re-render the markdown; returns {variant: record} of the stored runs."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    store = Path(args.output_dir)
    store.mkdir(parents=True, exist_ok=True)
    if not args.render:
        import hf_vae  # noqa: F401  (registers the families with AutoModel)
        from hf_vae.training import Recipe

        recipe = Recipe.from_yaml(args.recipe)
        singles = option_overrides(args, recipe.model.config)
        budget = budget_overrides(args, recipe)
        records = {}
        for name in [v for v in VARIANTS if v in args.variants]:
            note, options = None, singles.get(name, [])
            if name == "combined":
                stored = {n: json.loads((store / f"{n}.json").read_text()) for n in ("as_is", *SINGLE) if (store / f"{n}.json").is_file()}
                options, note = combined_overrides({**stored, **records}, singles)
            records[name] = run_variant(name, budget, options, args, store, note)
    lines = render(store)
    write_markdown(args.results, lines)
    # The table also stands in the priors results file beside it (issue #17), under its own heading.
    write_section(Path(args.results).with_name("priors_mnist5k.md"), "ablation",
                  ["## Gated PixelCNN ablation (issue #17), written by `benchmarks/pixelcnn_ablation.py`", "", *lines[2:]])
    return {n: json.loads((store / f"{n}.json").read_text()) for n in VARIANTS if (store / f"{n}.json").is_file()}


if __name__ == "__main__":
    main()
