"""The VAE ablation on mnist5k (issue #17): each quality option alone, the best combination, and pythae's
IWAE and VAMP on the same architecture and budget, in one table.

Every row trains the baseline, the default recipe (`hf_vae/recipes/vae_mnist5k.yaml`) with the standard-normal
prior and an fp32 test estimate (`BASELINE`: the recipe before the VampPrior became its default, which is the
`vamp100` row), for the same `--steps` (no early stopping, no wall-clock budget; the best validation checkpoint is
kept, as in `vae_mnist5k.py`) with one change: the importance-weighted objective
(`model.config.train_importance_samples`), the VampPrior with 500 or 100 pseudo-inputs (`model.config.prior: vamp`),
weight EMA (`training.ema_decay`) or shift augmentation (`data.augment_shift`).
An option whose field this checkout's recipe does not have is skipped with a note. The combination row
takes every option whose row beat the default row (`--combination` names them instead). pythae's rows
reuse `vae_mnist5k.run_pythae` (the same modules, initial weights, optimizer and epochs, scored by
hf_vae's estimator); pythae has no EMA or augmentation.

Test NLL: the trainer's test evaluation, IWAE with the recipe's k (1000) on the statically binarized
500 test images. Its +/- is the standard error of the 500-image mean, from per-image IWAE estimates with
`--se-samples` (100) samples (the spread between images, not the estimator's noise, sets it). Training
minutes count training steps only (steps x batch / the run's training images/s).

    python benchmarks/vae_ablation.py --steps 6000                  # every row -> benchmarks/results/vae_ablation.md
    python benchmarks/vae_ablation.py --steps 1000 --only default vamp iwae5   # some rows (the table shows all run)
    python benchmarks/vae_ablation.py --part render                 # re-render from the rows' JSON
    python benchmarks/vae_ablation.py --smoke                       # tiny (the tests run it)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path

import torch
from report import command_line, machine, write_markdown, write_section
from vae_mnist5k import pythae_counterpart, run_hf_vae, run_pythae

import hf_vae  # noqa: F401  (registers the families)
from hf_vae.training import Recipe, load_data

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "hf_vae" / "recipes" / "vae_mnist5k.yaml"
SMOKE_RECIPE = HERE.parent / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"

#: name -> (label, recipe overrides, the recipe field it needs (section, field) or None).
OPTIONS = {
    # The IWAE objective worsens the ELBO while it improves the likelihood, so its runs keep the checkpoint
    # with the best validation NLL (IWAE, k = 50) rather than the best -ELBO.
    "iwae5": ("IWAE objective, k = 5", ["model.config.train_importance_samples=5",
                                        "evaluation.validation_importance_samples=50"], None),
    "vamp": ("VampPrior, 500 pseudo-inputs", ["model.config.prior=vamp", "model.config.num_pseudo_inputs=500"], None),
    "vamp100": ("VampPrior, 100 pseudo-inputs", ["model.config.prior=vamp", "model.config.num_pseudo_inputs=100"], None),
    "ema": ("weight EMA, decay 0.999", ["training.ema_decay=0.999"], ("training", "ema_decay")),
    "shift": ("shift augmentation, +-1 pixel", ["data.augment_shift=1"], ("data", "augment_shift")),
}
#: pythae rows: name -> (label, pythae model, its config options, the hf_vae option it stands beside).
PYTHAE = {
    "pythae_iwae": ("pythae 0.1.2 IWAE, k = 5", "IWAE", {"number_samples": 5}, "iwae5"),
    "pythae_vamp": ("pythae 0.1.2 VAMP, 500 components", "VAMP", {"number_components": 500}, "vamp"),
    "pythae_vamp100": ("pythae 0.1.2 VAMP, 100 components", "VAMP", {"number_components": 100}, "vamp100"),
}
ROWS = ["default", *OPTIONS, "combination", *PYTHAE]
#: The recipe overrides every row starts from (the `default` row is exactly this).
BASELINE = ["model.config.prior=standard_normal", "evaluation.decoder_precision=fp32"]


def available(name: str, recipe: Recipe) -> bool:
    """Whether this checkout's recipe has the field option `name` sets."""
    needs = OPTIONS[name][2]
    return needs is None or any(f.name == needs[1] for f in dataclasses.fields(getattr(recipe, needs[0])))


def combination(args, recipe: Recipe, output_dir: Path) -> list[str]:
    """The options of the combination row: `--combination`, else those whose row beat the default row
    (all available options when those rows are missing)."""
    if args.combination:
        return args.combination.split(",")
    rows = {name: json.loads((output_dir / f"{name}.json").read_text()) for name in ["default", *OPTIONS]
            if (output_dir / f"{name}.json").exists()}
    options = [name for name in OPTIONS if available(name, recipe)]
    if "default" in rows and all(name in rows for name in options):
        options = [name for name in options if rows[name]["nll"] < rows["default"]["nll"]]
    # Options that set the same fields (vamp, vamp100) are alternatives: the better one (else the first) stays.
    chosen = {}
    for name in options:
        key = frozenset(item.split("=")[0] for item in OPTIONS[name][1])
        if key not in chosen or (name in rows and chosen[key] in rows and rows[name]["nll"] < rows[chosen[key]]["nll"]):
            chosen[key] = name
    return [name for name in options if name in chosen.values()]


def option_overrides(options: list[str], smoke: bool = False) -> list[str]:
    """The recipe overrides of `options` (the smoke run shrinks the VampPrior to 5 pseudo-inputs)."""
    items = [item for option in options for item in OPTIONS[option][1]]
    return [re.sub(r"num_pseudo_inputs=\d+", "num_pseudo_inputs=5", item) for item in items] if smoke else items


def overrides(name: str, args, recipe: Recipe, output_dir: Path) -> list[str]:
    """The recipe overrides of row `name`; a pythae row takes its hf_vae option's architecture (pythae's VAMP
    is scored as a VampPrior model)."""
    if name == "default":
        return []
    if name == "combination":
        return option_overrides(combination(args, recipe, output_dir), args.smoke)
    return option_overrides([PYTHAE[name][3] if name in PYTHAE else name], args.smoke)


def standard_error(model_dir: Path, recipe: Recipe, num_samples: int) -> tuple[float, int]:
    """Standard error of the test split's mean NLL (nats) from per-image IWAE estimates; and the image count."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir).eval()
    test = load_data(recipe)["test"]
    generator = torch.Generator().manual_seed(recipe.training.seed)
    loader = torch.utils.data.DataLoader(test, batch_size=recipe.evaluation.batch_size)
    nll = []
    for batch in loader:
        x = batch["pixel_values"].to(model.dtype)
        nll.append(model.score(x, num_importance_samples=num_samples, generator=generator).score)
        if recipe.evaluation.max_examples and sum(map(len, nll)) >= recipe.evaluation.max_examples:
            break
    nll = torch.cat(nll)[: recipe.evaluation.max_examples or None].double()
    return float(nll.std() / math.sqrt(len(nll))), len(nll)


def run_row(name: str, args, base: Recipe, output_dir: Path) -> dict:
    """Train and score row `name`; its JSON lands in `output_dir / f"{name}.json"`."""
    run_dir = output_dir / name
    items = overrides(name, args, base, output_dir)
    recipe = Recipe.from_yaml(args.recipe, [*args.base_overrides, *items, f"training.output_dir={run_dir}"])
    recipe.training.early_stopping_patience = None  # every row runs the same budget to the end
    recipe.training.max_time_minutes = None
    start, cpu_start = time.perf_counter(), time.process_time()
    if name in PYTHAE:
        label, model_name, options, _ = PYTHAE[name]
        splits = load_data(recipe)
        if model_name == "VAMP":  # the row's pseudo-input count and KL warm-up (in pythae's unit, epochs)
            options = pythae_counterpart(recipe, splits)[1]
        result = run_pythae(recipe, splits, run_dir, model_name, options)
        model_dir, items = run_dir / "scored", [f"{model_name}Config({', '.join(f'{k}={v}' for k, v in options.items())})"]
    else:
        result = run_hf_vae(recipe, run_dir)
        model_dir = run_dir
    result["wall_minutes"] = (time.perf_counter() - start) / 60
    result["cpu_minutes"] = (time.process_time() - cpu_start) / 60  # training and the test evaluation, this process
    result["train_minutes"] = result["steps"] * recipe.training.batch_size / result["images_per_second"] / 60
    result["nll_se"], result["num_examples"] = standard_error(model_dir, recipe, args.se_samples)
    result.update(name=name, label=label if name in PYTHAE else name, overrides=items, load=os.getloadavg()[0],
                  threads=torch.get_num_threads(), command=command_line())
    (output_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result


def write_results(args, base: Recipe, output_dir: Path) -> list[dict]:
    rows = [json.loads((output_dir / f"{name}.json").read_text()) for name in ROWS if (output_dir / f"{name}.json").exists()]
    default = next((row for row in rows if row["name"] == "default"), None)
    lines = [
        "# VAE ablation on mnist5k: objective, prior and regularisation options",
        "",
        "Commands that trained the rows: " + ", ".join(f"`{c}`" for c in dict.fromkeys(row["command"] for row in rows)) + "  ",
        f"Recipe: `{Path(args.recipe).name}` {' '.join(args.base_overrides)}; every row the same steps, no early stopping, best "
        "validation checkpoint kept (-ELBO; rows with the IWAE objective: the validation NLL, IWAE k = 50)  ",
        f"Machine: {machine()}, {os.cpu_count()} cores; load average when each row finished in its JSON; training minutes depend on "
        "that load  ",
        f"Test NLL: IWAE on the {base.data.dataset} test split (static binarization seed {base.data.binarize_seed}); +/- the standard "
        f"error of the per-image mean (per-image IWAE, k = {args.se_samples}).",
        "",
        "| row | recipe overrides | test NLL (nats) | estimator | vs baseline | active units | training minutes | CPU minutes (training + test) | steps | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        delta = f"{row['nll'] - default['nll']:+.2f}" if default else ""
        label = OPTIONS[row["name"]][0] if row["name"] in OPTIONS else "baseline: N(0, I) prior" if row["name"] == "default" else row["label"]
        lines.append(f"| {label} | {' '.join(f'`{o}`' for o in row['overrides']) or '(none)'} | {row['nll']:.2f} +/- {row['nll_se']:.2f} | "
                     f"{row['estimator']} | {delta} | {row['active_units']} | {row['train_minutes']:.1f} | {row.get('cpu_minutes', float('nan')):.1f} | {row['steps']} | {row['load']:.1f} |")
    not_run = [name for name in ROWS if not (output_dir / f"{name}.json").exists() and (name not in OPTIONS or available(name, base))]
    if not_run:
        lines += ["", "Rows not run (no stored result): " + ", ".join(not_run) + "."]
    skipped = [OPTIONS[name][0] for name in OPTIONS if not available(name, base)]
    if skipped:
        lines += ["", "Skipped (their recipe fields do not exist in this checkout): " + "; ".join(skipped) + "."]
    combined = next((row for row in rows if row["name"] == "combination"), None)
    if combined is not None:  # what the stored row trained, not what the rule would pick now
        options = [name for name in OPTIONS if set(option_overrides([name], args.smoke)) <= set(combined["overrides"])]
        how = ("named by `--combination` in its command" if "--combination" in combined["command"]
               else "the options whose own row beat the baseline")
        lines += ["", f"The combination row combines {', '.join(options) or 'nothing'} ({how})."]
    lines += ["", "pythae's rows train its IWAE / VAMP with "
              "the same modules and budget (`vae_mnist5k.run_pythae`) and are scored as hf_vae models (VAMP's pseudo-inputs "
              "carried over: both are hardtanh(w) in pixel space); pythae steps the cosine schedule per epoch and counts "
              "VAMP's warm-up in epochs."]
    write_markdown(args.results, lines)
    # The table also stands in the main VAE results file beside it (issue #17), under its own heading.
    write_section(Path(args.results).with_name("vae_mnist5k.md"), "ablation",
                  ["## Ablation (issue #17), written by `benchmarks/vae_ablation.py`", "", *lines[2:]])
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--set", dest="base_overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--steps", type=int, default=6000, help="optimizer steps of every row")
    parser.add_argument("--only", nargs="+", choices=ROWS, default=None, help="run these rows (default: all)")
    parser.add_argument("--combination", default=None, help="comma-separated options of the combination row")
    parser.add_argument("--se-samples", type=int, default=100, help="k of the per-image estimates behind the standard error")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-pythae", action="store_true")
    parser.add_argument("--part", default="all", help="all, or render: rewrite the markdown from the rows' JSON")
    parser.add_argument("--output_dir", default=str(HERE / "runs" / "vae_ablation"))
    parser.add_argument("--results", default=str(HERE / "results" / "vae_ablation.md"))
    parser.add_argument("--smoke", action="store_true", help="tiny: the digits recipe, a few steps, small k")
    args = parser.parse_args(argv)
    if args.smoke:
        args.recipe = str(SMOKE_RECIPE)
        args.se_samples = 2
        args.base_overrides = ["evaluation.num_importance_samples=3", "evaluation.max_examples=20", "training.eval_every=2",
                               "training.save_every=1000", "training.trackers=jsonl", *args.base_overrides]
        args.steps = min(args.steps, 3)
    args.base_overrides = ["training.progress=false", f"training.max_steps={args.steps}", *BASELINE, *args.base_overrides]
    torch.set_num_threads(args.threads)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base = Recipe.from_yaml(args.recipe, args.base_overrides)
    if args.part == "all":
        names = args.only or [name for name in ROWS if not (args.skip_pythae and name in PYTHAE)]
        for name in names:
            if name in OPTIONS and not available(name, base):
                print(f"skipping {name}: the recipe has no {'.'.join(OPTIONS[name][2])} field in this checkout")
                continue
            run_row(name, args, base, output_dir)
    return write_results(args, base, output_dir)


if __name__ == "__main__":
    main()
