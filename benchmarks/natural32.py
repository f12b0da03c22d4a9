"""natural32: learned likelihoods of 8-bit colour photographs against the lossless codecs, in bits/dim.

Every model is trained by the package trainer from its shipped recipe (`hf_vae/recipes/`, with this
script's budget and size overrides) on the natural32 train split (3,679 32x32 RGB patches; 500 held out for
validation) and measured on the test split (646 patches of other photographs), 8-bit convention:
-log2 p(x) / (C*H*W) with x on the 256-level grid.

- `vae`: `vae_natural32.yaml` (discretized logistic mixture); the IWAE bound at k=1000 (`--iwae-k`) on
  `--iwae-examples` test patches, evenly spaced over the split so every test photograph is in (0: all 646),
  and the 1-sample ELBO on all 646.
- `pixelcnn`: `pixelcnn_natural32.yaml`, the gated PixelCNN over 256-level RGB pixels (R->G->B channel
  masks): exact bits/dim on all 646.
- `vq_prior`: `vqvae_natural32.yaml`, then `transformer_prior_vqvae_natural32.yaml` on its codes: the bound
  -log2 p(codes) - log2 p(x|z_q) in bits/dim (`evaluate` of the prior on the test images), the code rate in
  bits per pixel under the prior, and PSNR / SSIM of the VQ-VAE's mean reconstructions (scikit-image).
- the codecs: PNG and lossless WebP on the same test patches, from `natural32_codecs.py`'s functions.

Each model's budget is a flag: `--<model>-steps` (the recipe's schedule is fitted to it) and
`--<model>-minutes` (a wall-clock cap: the trainer stops and keeps the best validation checkpoint, evaluated
every 100 steps). The defaults are sized, from the CPU seconds of a step, for under 50 minutes on 2 idle
cores: the VAE is shrunk (`VAE_SIZE`, IWAE on 128 test patches; `--set-vae` and `--iwae-examples` change
that), and training runs in fp32. Per run the markdown records the steps, the wall and CPU minutes of
training and evaluation, the torch threads and the load average. Grids of samples and reconstructions go
to `benchmarks/results/natural32/`.

    OMP_NUM_THREADS=2 python benchmarks/natural32.py                # benchmarks/results/natural32.md
    python benchmarks/natural32.py --smoke --output_dir /tmp/n32    # tiny models, seconds: does it all run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch
from report import command_line, machine, write_markdown

import hf_vae  # noqa: F401  (registers the families with AutoModel)
import natural32_codecs
from hf_vae.images import image_grid
from hf_vae.training import Recipe, train

HERE = Path(__file__).resolve().parent
RECIPES = HERE.parent / "hf_vae" / "recipes"
MODELS = ("vae", "pixelcnn", "vq_prior")
# model -> the runs it trains, in order: (run name, recipe file)
RUNS = {"vae": [("vae", "vae_natural32.yaml")], "pixelcnn": [("pixelcnn", "pixelcnn_natural32.yaml")],
        "vq_prior": [("vqvae", "vqvae_natural32.yaml"), ("prior", "transformer_prior_vqvae_natural32.yaml")]}
# Default budgets per run: steps (the schedule's length) and a wall-clock cap in minutes.
# A training step (batch 64, fp32) of the VAE or VQ-VAE costs ~3 CPU s on this benchmark's 2-core machine, so the
# minutes bind first; the steps fit the cosine schedule to about what they allow. bf16 autocast is off: it
# doubled the CPU time of a step here.
STEPS = {"vae": 500, "pixelcnn": 400, "vqvae": 400, "prior": 1500}
MINUTES = {"vae": 10.0, "pixelcnn": 14.0, "vqvae": 8.0, "prior": 4.0}
# The recipe's VAE (9.2M parameters) needs hours on 2 cores for IWAE k=1000 over the test split: a smaller one (1.5M).
# Its KL warm-up is shortened to fit the steps (the recipe's 2,000 would outlast the run).
VAE_SIZE = ["model.config.hidden_channels=[32, 64, 128]", "model.config.num_res_blocks=1", "model.config.latent_dim=64",
            "model.config.kl_warmup_steps=200"]
EVERY = ["training.eval_every=100", "training.save_every=100", "training.log_every=25", "training.warmup_steps=50",
         "training.mixed_precision='no'",
         "training.early_stopping_patience=null", "training.progress=false", "training.trackers=[jsonl]", "data.num_workers=0"]
SMOKE = {  # tiny models: the whole script in seconds
    "vae": ["model.config.hidden_channels=[8, 16]", "model.config.num_res_blocks=0", "model.config.latent_dim=4",
            "model.config.num_mixtures=2", "model.config.kl_warmup_steps=0"],
    "pixelcnn": ["model.config.hidden_size=6", "model.config.num_layers=2", "model.config.output_channels=6"],
    "vqvae": ["model.config.hidden_channels=[8, 16]", "model.config.num_res_blocks=0", "model.config.codebook_size=16",
              "model.config.embedding_dim=4", "model.config.num_mixtures=2"],
    "prior": ["model.config.vocab_size=16", "model.config.num_layers=1", "model.config.num_heads=2", "model.config.hidden_size=16"],
}
SMOKE_RUN = ["training.eval_every=2", "training.save_every=2", "training.log_every=1", "training.warmup_steps=0",
             "data.validation_size=16", "training.batch_size=8", "evaluation.max_examples=16", "evaluation.batch_size=8",
             "evaluation.num_samples=1"]


class Clock:
    """Wall and CPU seconds (this process, every thread) of a block, and the load average around it."""

    def __enter__(self):
        self.wall, self.cpu, self.load_before = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        self.load_after = os.getloadavg()[0]

    def record(self) -> dict:
        return {"wall_minutes": self.wall / 60, "cpu_minutes": self.cpu / 60, "threads": torch.get_num_threads(),
                "load_before": self.load_before, "load_after": self.load_after}


def train_run(args, name: str, recipe_file: str, overrides: list[str]) -> tuple[Path, dict]:
    """Train one run of a model from its shipped recipe; returns its folder and its record."""
    output_dir = Path(args.output_dir) / name
    budget = [f"training.max_steps={args.steps[name]}", f"training.max_time_minutes={args.minutes[name]}"]
    extra = SMOKE[name] + SMOKE_RUN if args.smoke else []
    size = VAE_SIZE if name == "vae" and not args.smoke else []
    recipe = Recipe.from_yaml(RECIPES / recipe_file, [f"training.output_dir={output_dir}", *EVERY, *size,
                                                      *args.set.get(name, []), *budget, *overrides, *extra])
    shutil.rmtree(output_dir, ignore_errors=True)  # a fresh run, not a resume of an old one
    with Clock() as clock:
        train(recipe)
    summary = json.loads((output_dir / "metrics.json").read_text())
    return output_dir, {"recipe": recipe_file, "overrides": [*size, *args.set.get(name, []), *budget], "steps": summary["steps"],
                        "best_step": summary["best_step"], "model": recipe.model.config, "training": clock.record(),
                        "test": summary["test"]}


def evenly_spaced(count: int, total: int) -> list[int]:
    """`count` indices spread over range(total) (all of them when count is 0 or >= total)."""
    if not count or count >= total:
        return list(range(total))
    return [round(i * (total - 1) / (count - 1)) if count > 1 else 0 for i in range(count)]


def save_grid(images: torch.Tensor, name: str, args, nrow: int | None = None) -> str:
    path = Path(args.pictures) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images.float().cpu(), nrow=nrow, scale=2).save(path)
    return str(path)


def originals(test) -> torch.Tensor:
    """16 test patches spread over the split (every test photograph), the top rows of the reconstruction grids."""
    return torch.stack([test[i]["pixel_values"] for i in evenly_spaced(16, len(test))])


def part_vae(args, test) -> dict:
    from transformers import AutoModel

    from hf_vae.evaluation import evaluate

    run_dir, record = train_run(args, "vae", "vae_natural32.yaml", ["evaluation.num_importance_samples=0"])
    model = AutoModel.from_pretrained(run_dir).eval()
    subset = torch.utils.data.Subset(test, evenly_spaced(args.iwae_examples, len(test)))
    with Clock() as clock:
        metrics = evaluate(model, subset, num_importance_samples=args.iwae_k, batch_size=10, progress=False,
                           decoder_precision=args.decoder_precision)
    x = originals(test)
    with torch.no_grad():
        samples, recon = model.sample(64, generator=torch.Generator().manual_seed(0)), model.reconstruct(x)
    return {**record, "evaluation": clock.record(), "bits_per_dim": metrics["bits_per_dim"].value,
            "estimator": metrics["bits_per_dim"].estimator, "num_examples": len(subset),
            "elbo_bits_per_dim": record["test"]["elbo_bits_per_dim"]["value"],
            "pictures": [save_grid(samples, "vae_samples.png", args), save_grid(torch.cat([x, recon]), "vae_reconstructions.png", args, 16)]}


def part_pixelcnn(args, test) -> dict:
    from transformers import AutoModel

    from hf_vae.generation import generate_images

    run_dir, record = train_run(args, "pixelcnn", "pixelcnn_natural32.yaml", ["evaluation.num_samples=4"])
    model = AutoModel.from_pretrained(run_dir).eval()
    with Clock() as clock:
        samples = generate_images(model, args.pixelcnn_samples, generator=torch.Generator().manual_seed(0), progress=False)
    return {**record, "sampling": clock.record(), "bits_per_dim": record["test"]["bits_per_dim"]["value"],
            "estimator": record["test"]["bits_per_dim"]["estimator"], "num_examples": record["test"]["num_examples"]["value"],
            "pictures": [save_grid(samples, "pixelcnn_samples.png", args)]}


def part_vq_prior(args, test) -> dict:
    from transformers import AutoModel

    from hf_vae.evaluation import evaluate
    from hf_vae.generation import generate_images

    vq_dir, vq_record = train_run(args, "vqvae", "vqvae_natural32.yaml", [])
    prior_dir, prior_record = train_run(args, "prior", "transformer_prior_vqvae_natural32.yaml",
                                        [f"model.config.vqvae_name_or_path={vq_dir}"])
    vqvae, prior = AutoModel.from_pretrained(vq_dir).eval(), AutoModel.from_pretrained(prior_dir).eval()
    with Clock() as clock:
        metrics = evaluate(prior, test, vqvae=vqvae, batch_size=50, max_examples=args.max_examples, progress=False)
    x = originals(test)
    with torch.no_grad():
        samples = generate_images(prior, 64, vqvae=vqvae, generator=torch.Generator().manual_seed(0), progress=False)
        recon = vqvae.reconstruct(x)
    vq_test = vq_record["test"]
    return {"vqvae": vq_record, "prior": prior_record, "evaluation": clock.record(),
            "bits_per_dim": metrics["bits_per_dim"].value, "estimator": metrics["bits_per_dim"].estimator,
            "num_examples": metrics["num_examples"].value,
            **{name: metrics[name].value for name in ("reconstruction_bits_per_dim", "code_bits_per_dim", "code_bits_per_pixel",
                                                      "bits_per_token")},
            "psnr": vq_test["psnr"]["value"], "ssim": vq_test["ssim"]["value"], "perplexity": vq_test["perplexity"]["value"],
            "uniform_code_bits_per_dim": vq_test["code_bits_per_dim"]["value"],
            "pictures": [save_grid(samples, "vq_prior_samples.png", args),
                         save_grid(torch.cat([x, recon]), "vqvae_reconstructions.png", args, 16)]}


def budget_line(name: str, r: dict) -> str:
    t = r["training"]
    return (f"| {name} | `{r['recipe']}` | {r['steps']} ({r['best_step']}) | {t['wall_minutes']:.1f} | {t['cpu_minutes']:.1f} | "
            f"{t['threads']} | {t['load_before']:.1f} -> {t['load_after']:.1f} |")


def render(args, results: dict, codecs: dict, num_patches: int) -> list[str]:
    best = min(codecs, key=lambda name: codecs[name]["mosaic"])
    target = codecs[best]["mosaic"]
    lines = [
        "# natural32 test split: learned models against the lossless codecs, bits/dim",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end"
        + (" (SMOKE RUN: tiny models and budgets, the numbers mean nothing)" if args.smoke else "") + ".  ",
        "8-bit convention: -log2 p(x) / (C*H*W) with x on the 256-level grid (C*H*W = 3,072 per 32x32 patch); codecs: "
        "8 * bytes / dimensions.",
        "",
        "| model | test bits/dim | estimator | test patches |",
        "|---|---|---|---|",
    ]
    names = {"vae": "VAE (discretized logistic mixture)", "pixelcnn": "Gated PixelCNN (256-level RGB, R->G->B masks)",
             "vq_prior": "VQ-VAE + transformer prior"}
    for model, r in results.items():
        lines.append(f"| {names[model]} | **{r['bits_per_dim']:.3f}** | {r['estimator']} | {r['num_examples']} |")
    if "vae" in results:
        lines.append(f"| VAE, 1-sample ELBO | {results['vae']['elbo_bits_per_dim']:.3f} | ELBO, 1 sample | {results['vae']['test']['num_examples']['value']} |")
    for name, c in codecs.items():
        lines.append(f"| {name}, mosaic | {c['mosaic']:.3f} | lossless file size | {num_patches} |")
        lines.append(f"| {name}, per patch | {c['per_patch']:.3f} | lossless file size, headers included | {num_patches} |")
    lines += ["", f"Best lossless codec: {best}, mosaic, **{target:.3f} bits/dim**.", "", "Targets:"]
    for model, r in results.items():
        lines.append(f"- {names[model]} below the best codec: **{'met' if r['bits_per_dim'] < target else 'NOT met'}** "
                     f"({r['bits_per_dim']:.3f} vs {target:.3f}, {100 * (r['bits_per_dim'] / target - 1):+.1f}%).")
    if "pixelcnn" in results:
        bits = results["pixelcnn"]["bits_per_dim"]
        lines.append(f"- Gated PixelCNN at least 15% below it (<= {0.85 * target:.3f}): **{'met' if bits <= 0.85 * target else 'NOT met'}**.")
    if "vq_prior" in results:
        r = results["vq_prior"]
        lines += ["", "## VQ-VAE + prior", "",
                  f"Bound {r['bits_per_dim']:.3f} bits/dim = -log2 p(x|z_q) {r['reconstruction_bits_per_dim']:.3f} + -log2 p(codes) "
                  f"{r['code_bits_per_dim']:.3f} (the codes under the prior: **{r['code_bits_per_pixel']:.3f} bits per pixel**, "
                  f"{r['bits_per_token']:.2f} bits/token; a uniform prior: {r['uniform_code_bits_per_dim']:.3f} bits/dim).  ",
                  f"Reconstructions (mean of p(x|z_q) at the nearest codes, {r['vqvae']['test']['num_examples']['value']} test patches): **PSNR {r['psnr']:.2f} dB, "
                  f"SSIM {r['ssim']:.3f}** (scikit-image); codebook perplexity {r['perplexity']:.1f}."]
    lines += ["", "Each model's command (a model not run by this command is read from its earlier run's JSON):", "",
              *[f"- {names[model]}: `{r['command']}`" for model, r in results.items()]]
    lines += ["", "## Budgets", "", "Training of each run (the trainer's loop; CPU minutes of this process, all threads; load average "
              "before -> after, 1 minute):", "",
              "| run | recipe | steps (best) | wall min | CPU min | threads | load |", "|---|---|---|---|---|---|---|"]
    runs = {"vae": results.get("vae"), "pixelcnn": results.get("pixelcnn")}
    if "vq_prior" in results:
        runs.update(vqvae=results["vq_prior"]["vqvae"], prior=results["vq_prior"]["prior"])
    lines += [budget_line(name, r) for name, r in runs.items() if r]
    for name, r in runs.items():
        if r:
            lines.append(f"\n{name}: `{' '.join(r['overrides'])}`" if r["overrides"] else "")
    for model, key in (("vae", "evaluation"), ("vq_prior", "evaluation"), ("pixelcnn", "sampling")):
        if model in results:
            c = results[model][key]
            lines.append(f"\n{names[model]} {key}: {c['wall_minutes']:.1f} wall min, {c['cpu_minutes']:.1f} CPU min.")
    pictures = [p for r in results.values() for p in r["pictures"]]
    lines += ["", "## Pictures", "", "Reconstruction grids: 16 test patches spread over the split (top) above their reconstructions.", ""]
    lines += [f"![{Path(p).stem}]({os.path.relpath(p, Path(args.results).parent)})" for p in pictures]
    return lines


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    for name in STEPS:
        parser.add_argument(f"--{name}-steps", type=int, default=STEPS[name], help=f"optimizer steps of the {name} run")
        parser.add_argument(f"--{name}-minutes", type=float, default=MINUTES[name], help=f"wall-clock cap of the {name} run")
        parser.add_argument(f"--set-{name}", nargs="*", default=[], help=f"recipe overrides of the {name} run (KEY=VALUE)")
    parser.add_argument("--iwae-k", type=int, default=1000)
    parser.add_argument("--iwae-examples", type=int, default=128, help="test patches of the VAE's IWAE bound (0: all 646)")
    parser.add_argument("--decoder-precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--pixelcnn-samples", type=int, default=16)
    parser.add_argument("--output_dir", default=str(HERE / "runs" / "natural32"))
    parser.add_argument("--results", default=str(HERE / "results" / "natural32.md"))
    parser.add_argument("--pictures", default=None, help="folder of the PNG grids (default: beside --results, natural32/)")
    parser.add_argument("--smoke", action="store_true", help="tiny models and budgets: checks that everything runs")
    args = parser.parse_args(argv)
    args.steps = {name: getattr(args, f"{name}_steps") for name in STEPS}
    args.minutes = {name: getattr(args, f"{name}_minutes") for name in STEPS}
    args.set = {name: getattr(args, f"set_{name}") for name in STEPS}
    if args.smoke:
        args.steps = dict.fromkeys(STEPS, 2)
        args.iwae_k, args.iwae_examples, args.pixelcnn_samples, args.max_examples = 2, 8, 1, 16
    args.max_examples = args.max_examples if args.smoke else None  # the smoke run scores 16 test patches
    args.pictures = args.pictures or str(Path(args.results).parent / "natural32")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    from hf_vae.data import load_split

    test = load_split("natural32", "test")
    patches = natural32_codecs.load_patches("test")
    patches = patches[evenly_spaced(args.max_examples or 0, len(patches))]
    codecs = natural32_codecs.codec_bits_per_dim(patches)
    parts = {"vae": part_vae, "pixelcnn": part_pixelcnn, "vq_prior": part_vq_prior}
    results = {}
    for model in MODELS:  # the models asked for are run; the others come from an earlier run's JSON, if any
        stored = Path(args.output_dir) / f"{model}.json"
        if model in args.models:
            results[model] = {**parts[model](args, test), "command": command_line()}
            stored.write_text(json.dumps(results[model], indent=2, default=str))
        elif stored.is_file():
            results[model] = json.loads(stored.read_text())
    write_markdown(args.results, render(args, results, codecs, len(patches)))
    return {"models": results, "codecs": codecs}


if __name__ == "__main__":
    main()
