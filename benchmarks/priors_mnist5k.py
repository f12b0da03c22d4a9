"""Autoregressive token priors on mnist5k: key/value-cache speed, a Gated PixelCNN over binarized pixels,
and a class-conditional prior over VQ-VAE codes with two-stage, classifier-judged samples.

Three parts, each run on its own (`--parts`) and stored as JSON under `--output_dir`, so one markdown
(`--results`) collects them with the exact command that produced each:

- `kv_cache`: a transformer prior (`--kv-*` sizes, random weights: speed does not depend on them)
  samples the same grids with and without its key/value cache from the same seeded generator; the
  outputs must be identical (`torch.equal`, asserted) and tokens/second are timed in this one process.
- `pixelcnn`: `hf_vae/recipes/pixelcnn_mnist5k.yaml` (vocab 2, 28x28, dynamic binarization, the VAE
  recipe's validation split and static test binarization, seed 0), trained by the one training loop;
  exact test NLL in nats and bits/dim, shown next to the VAE's importance-weighted test NLL read from
  the VAE run's `metrics.json` when one exists.
- `vq_prior`: `hf_vae/recipes/transformer_prior_vqvae_mnist5k.yaml`, a class-conditional prior over
  the codes of the VQ-VAE in `benchmarks/runs/vqvae_mnist5k/restarts_on` (the trainer caches the codes);
  exact test bits/token vs the uniform bound log2(codebook_size); then `generate_images` (prior ->
  VQ-VAE decoder, mean image) for N samples per label at each guidance scale, judged by the reference
  classifier (`benchmarks/reference_classifier`) through `hf_vae.fidelity.conditional_fidelity`.
- `pixelcnn_sampling`: fast PixelCNN generation (`sample(use_cache=True)`, the default) against the
  naive loop (`use_cache=False`) on the `pixelcnn_mnist5k.yaml` network at 28x28: the same seeded
  generator, identical samples (`torch.equal`, asserted), tokens/second in this one process (the
  trained model of the `pixelcnn` part when there is one, else random weights: speed does not depend on them).
- `two_stage`: 64 images from the transformer prior + VQ-VAE of the mnist5k recipes' sizes (random
  weights), `generate_images` timed end to end, without and with classifier-free guidance.

    pip install -e .[bench]
    OMP_NUM_THREADS=1 python benchmarks/priors_mnist5k.py --parts kv_cache pixelcnn vq_prior pixelcnn_sampling two_stage
    python benchmarks/priors_mnist5k.py --parts          # re-render the markdown from the stored JSON
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import torch
from report import command_line, machine, write_markdown

import hf_vae  # noqa: F401  (registers the families with AutoModel)
from hf_vae import PixelCNNPriorConfig, PixelCNNPriorModel, TransformerPriorConfig, TransformerPriorModel, VQVAEConfig, VQVAEModel
from hf_vae.training import Recipe, train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = ROOT / "hf_vae" / "recipes"
PARTS = ("kv_cache", "pixelcnn", "vq_prior", "pixelcnn_sampling", "two_stage")
# Where the VAE benchmark / `make demo` leave the VAE's metrics (first one found wins: the benchmark's
# run, the figure the README reports, before the main job's).
VAE_METRICS = (HERE / "runs" / "vae_mnist5k" / "hf_vae" / "metrics.json", ROOT / "runs" / "vae_mnist5k" / "metrics.json")


def relative(path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def train_recipe(recipe_path: Path, output_dir: Path, overrides: list[str], skip_training: bool) -> tuple[Recipe, dict]:
    recipe = Recipe.from_yaml(recipe_path, [f"training.output_dir={output_dir}", "training.progress=false", *overrides])
    if not skip_training:
        shutil.rmtree(output_dir, ignore_errors=True)  # a fresh run, not a resume of an old one
        train(recipe)
    return recipe, json.loads((output_dir / "metrics.json").read_text())


# ---------------------------------------------------------------------------------------------
# Part 1: key/value cache
# ---------------------------------------------------------------------------------------------


def timed_sample(model, num_samples: int, use_cache: bool) -> tuple[torch.Tensor, float]:
    """A token prior's seeded samples (after a 2-sample warm-up) and the seconds they took."""
    model.sample(2, generator=torch.Generator().manual_seed(1), use_cache=use_cache, progress=False)
    start = time.perf_counter()
    tokens = model.sample(num_samples, generator=torch.Generator().manual_seed(0), use_cache=use_cache, progress=False)
    return tokens, time.perf_counter() - start


def header(part: str, r: dict, note: str = "") -> list[str]:
    """A part's heading, command and machine lines."""
    return [TITLES[part], "", f"Command: `{r['command']}`  ", f"Machine: {r['machine']}, shared with other jobs (times are indicative{note})  "]


def part_kv_cache(args) -> dict:
    config = TransformerPriorConfig(vocab_size=args.kv_vocab, grid_size=args.kv_grid, n_layer=args.kv_layers,
                                    n_head=args.kv_heads, n_embd=args.kv_embd)
    torch.manual_seed(0)
    model = TransformerPriorModel(config).eval()
    num_positions = args.kv_grid**2

    cached, cached_seconds = timed_sample(model, args.kv_samples, use_cache=True)
    uncached, uncached_seconds = timed_sample(model, args.kv_samples, use_cache=False)
    assert torch.equal(cached, uncached), "sampling with and without the key/value cache drew different tokens"
    tokens = args.kv_samples * num_positions
    return {
        "config": {"vocab_size": args.kv_vocab, "grid_size": args.kv_grid, "n_layer": args.kv_layers,
                   "n_head": args.kv_heads, "n_embd": args.kv_embd,
                   "parameters": sum(p.numel() for p in model.parameters())},
        "num_samples": args.kv_samples,
        "identical": True,
        "cached_seconds": cached_seconds,
        "uncached_seconds": uncached_seconds,
        "cached_tokens_per_second": tokens / cached_seconds,
        "uncached_tokens_per_second": tokens / uncached_seconds,
        "speedup": uncached_seconds / cached_seconds,
    }


def render_kv_cache(r: dict) -> list[str]:
    c = r["config"]
    return [
        *header("kv_cache", r, "; both paths timed in the same process, one after the other"),
        f"Model: transformer prior, {c['n_layer']} layers, {c['n_head']} heads, width {c['n_embd']}, vocabulary {c['vocab_size']}, "
        f"{c['grid_size']}x{c['grid_size']} grid ({c['grid_size'] ** 2} positions), {c['parameters']:,} parameters, random weights "
        f"(speed does not depend on them); {r['num_samples']} grids, one batch, temperature 1, seeded generator.",
        "",
        "| sampling | seconds | tokens/s |",
        "|---|---|---|",
        f"| without cache (rerun the prefix) | {r['uncached_seconds']:.2f} | {r['uncached_tokens_per_second']:.0f} |",
        f"| with key/value cache | {r['cached_seconds']:.2f} | {r['cached_tokens_per_second']:.0f} |",
        "",
        f"Speed-up: **{r['speedup']:.1f}x** (target >= 5x). The two runs drew identical grids (`torch.equal` asserted: "
        f"{'yes' if r['identical'] else 'no'}).",
    ]


# ---------------------------------------------------------------------------------------------
# Part 2: Gated PixelCNN on binarized pixels
# ---------------------------------------------------------------------------------------------


def part_pixelcnn(args) -> dict:
    recipe, summary = train_recipe(Path(args.pixelcnn_recipe), Path(args.output_dir) / "pixelcnn_mnist5k", args.set_pixelcnn,
                                   args.skip_training)
    t = summary["test"]
    return {"recipe": Path(args.pixelcnn_recipe).name, "overrides": args.set_pixelcnn, "model": recipe.model.config,
            "data": recipe.to_dict()["data"], "training": recipe.to_dict()["training"],
            "nll": t["nll"]["value"], "estimator": t["nll"]["estimator"], "bits_per_dim": t["bits_per_dim"]["value"],
            "num_examples": t["num_examples"]["value"], "steps": summary["steps"], "best_step": summary["best_step"],
            "train_seconds": summary["train_seconds"], "images_per_second": summary["train_images_per_second"],
            "run_dir": relative(Path(args.output_dir) / "pixelcnn_mnist5k")}


def vae_figure() -> dict | None:
    for path in VAE_METRICS:
        if path.is_file():
            summary = json.loads(path.read_text())
            nll = summary.get("test", {}).get("nll")
            if nll is not None:
                data = summary.get("recipe", {}).get("data", {})
                return {"path": str(path.relative_to(ROOT)), "nll": nll["value"], "estimator": nll["estimator"],
                        "bits_per_dim": summary["test"].get("bits_per_dim", {}).get("value"), "data": data,
                        "steps": summary.get("steps"), "best_step": summary.get("best_step")}
    return None


def render_pixelcnn(r: dict) -> list[str]:
    m, d, tr = r["model"], r["data"], r["training"]
    lines = [
        TITLES["pixelcnn"],
        "",
        f"Command: `{r['command']}`  ",
        f"Recipe: `{r['recipe']}` {' '.join(r['overrides'])}  ",
        f"Machine: {r['machine']}, shared with other jobs (times are indicative)  ",
        f"Model: Gated PixelCNN, vocabulary {m['vocab_size']} (binary pixels), {m['grid_size']}x{m['grid_size']}, {m['num_layers']} gated layers, "
        f"width {m['hidden_channels']}, kernel {m['kernel_size']}, head {m['output_channels']}. Training: {d['dataset']} train split minus "
        f"{d['validation_size']} stratified validation images, {d['train_binarize']} binarization, batch {tr['batch_size']}, "
        f"AdamW lr {tr['learning_rate']:g} ({tr['lr_scheduler']}), at most {tr['max_steps']} steps / {tr['max_time_minutes']} min, "
        + (f"{tr['mixed_precision']} autocast (fp32 logits and loss; the test NLL is computed in fp32), "
           if tr.get("mixed_precision", "no") != "no" else "")
        + "best validation checkpoint kept.  ",
        f"Test set: {d['dataset']} test split ({r['num_examples']} images), {d['eval_binarize']} binarization seed {d['binarize_seed']}.",
        "",
        "| model | test NLL (nats) | estimator | bits/dim | steps (best) | train time | train images/s |",
        "|---|---|---|---|---|---|---|",
        f"| Gated PixelCNN (this run) | {r['nll']:.2f} | {r['estimator']} | {r['bits_per_dim']:.4f} | {r['steps']} ({r['best_step']}) | "
        f"{r['train_seconds'] / 60:.1f} min | {r['images_per_second']:.0f} |",
    ]
    vae = vae_figure()
    if vae is None:
        lines += ["| VAE (`vae_mnist5k.yaml`) | pending | | | | | |", "",
                  "The VAE figure is pending: it will come from " + " or ".join(f"`{p.relative_to(ROOT)}`" for p in VAE_METRICS)
                  + " (keys `test.nll.value`, `test.nll.estimator`); re-render with `python benchmarks/priors_mnist5k.py --parts`."]
    else:
        same = all(vae["data"].get(k) == d[k] for k in ("dataset", "test_split", "eval_binarize", "binarize_seed")) if vae["data"] else None
        bpd = f"{vae['bits_per_dim']:.4f}" if vae["bits_per_dim"] is not None else ""
        lines += [f"| VAE (`{vae['path']}`) | {vae['nll']:.2f} | {vae['estimator']} | {bpd} | {vae['steps']} ({vae['best_step']}) | | |", "",
                  f"PixelCNN - VAE: {r['nll'] - vae['nll']:+.2f} nats "
                  f"({'PixelCNN lower' if r['nll'] < vae['nll'] else 'PixelCNN NOT lower'}). "
                  + ("Same test set (dataset, split, static binarization seed) per the VAE run's recipe." if same
                     else "WARNING: the VAE run's recipe does not show the same test set." if same is False else "")]
    lines += ["", f"Target: exact test NLL <= 90 nats: {'met' if r['nll'] <= 90 else 'NOT met'} ({r['nll']:.2f})."]
    return lines


# ---------------------------------------------------------------------------------------------
# Part 3: prior over VQ-VAE codes, two-stage class-conditional samples
# ---------------------------------------------------------------------------------------------


def part_vq_prior(args) -> dict:
    from transformers import AutoModel

    from hf_vae.fidelity import conditional_fidelity
    from hf_vae.generation import generate_images
    from hf_vae.images import image_grid
    from hf_vae.reference_classifier import load_reference_classifier

    output_dir = Path(args.output_dir) / "vq_prior_mnist5k"
    recipe, summary = train_recipe(Path(args.vq_recipe), output_dir, args.set_vq, args.skip_training)
    config = recipe.model.config
    vqvae_dir = Path(config["vqvae_name_or_path"])
    vqvae = AutoModel.from_pretrained(vqvae_dir).eval()
    vqvae_metrics = json.loads((vqvae_dir / "metrics.json").read_text()) if (vqvae_dir / "metrics.json").is_file() else {}
    prior = AutoModel.from_pretrained(output_dir).eval()
    classifier = load_reference_classifier(args.classifier)
    t = summary["test"]

    fidelity = []
    for scale in args.guidance_scales:
        def sampler(labels, generator=None, scale=scale):
            return generate_images(prior, len(labels), vqvae=vqvae, labels=labels, guidance_scale=scale,
                                   generator=generator, progress=False)

        start = time.perf_counter()
        metric, per_label = conditional_fidelity(sampler, classifier, num_per_label=args.num_per_label,
                                                 num_classes=prior.config.num_classes,
                                                 generator=torch.Generator().manual_seed(0), per_label=True)
        fidelity.append({"guidance_scale": scale, "accuracy": float(metric.value), "per_label": [float(v) for v in per_label.value],
                         "seconds": time.perf_counter() - start})
        images = sampler(torch.arange(10).repeat_interleave(8), generator=torch.Generator().manual_seed(0))
        image_grid(images, nrow=8, scale=2).save(output_dir / f"samples_guidance_{scale:g}.png")
    weights = vqvae_dir / "model.safetensors"
    return {
        "recipe": Path(args.vq_recipe).name, "overrides": args.set_vq, "model": config, "data": recipe.to_dict()["data"],
        "training": recipe.to_dict()["training"],
        "vqvae": str(vqvae_dir), "vqvae_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()[:16],
        "vqvae_code_grid": vqvae.config.code_grid_size, "codebook_size": vqvae.config.codebook_size,
        "vqvae_uniform_bits_per_token": vqvae_metrics.get("test", {}).get("code_bits_per_token", {}).get("value"),
        "vqvae_reconstruction_nll": vqvae_metrics.get("test", {}).get("reconstruction_loss", {}).get("value"),
        "nll": t["nll"]["value"], "bits_per_token": t["bits_per_token"]["value"], "estimator": t["nll"]["estimator"],
        "num_examples": t["num_examples"]["value"], "steps": summary["steps"], "best_step": summary["best_step"],
        "train_seconds": summary["train_seconds"], "images_per_second": summary["train_images_per_second"],
        "parameters": sum(p.numel() for p in prior.parameters()),
        "classifier": args.classifier, "classifier_metadata": classifier.metadata,
        "num_per_label": args.num_per_label, "fidelity": fidelity, "run_dir": relative(output_dir),
    }


def render_vq_prior(r: dict) -> list[str]:
    m, d, tr = r["model"], r["data"], r["training"]
    k, grid = r["codebook_size"], r["vqvae_code_grid"]
    uniform = math.log2(k)
    arch = (f"transformer prior, {m.get('n_layer')} layers, width {m.get('n_embd')}, dropout {m.get('dropout')}"
            if "n_layer" in m else f"Gated PixelCNN prior, {m.get('num_layers')} layers, width {m.get('hidden_channels')}")
    cm = r["classifier_metadata"]
    lines = [
        TITLES["vq_prior"],
        "",
        f"Command: `{r['command']}`  ",
        f"Recipe: `{r['recipe']}` {' '.join(r['overrides'])}  ",
        f"Machine: {r['machine']}, shared with other jobs (times are indicative)  ",
        f"VQ-VAE: `{r['vqvae']}` (model.safetensors sha256 {r['vqvae_sha256']}...), {grid}x{grid} codes, {k}-code codebook"
        + (f", test -log p(x|z_q) {r['vqvae_reconstruction_nll']:.2f} nats" if r["vqvae_reconstruction_nll"] is not None else "") + ".  ",
        f"Prior: {arch}, {r['parameters']:,} parameters, {m.get('num_classes')} classes + null class, label dropout "
        f"{m.get('label_dropout')}; codes of one {d['train_binarize']} binarization of the training images, batch {tr['batch_size']}, "
        f"AdamW lr {tr['learning_rate']:g}, weight decay {tr['weight_decay']:g}, at most {tr['max_steps']} steps, best validation checkpoint kept.  ",
        f"Test set: codes of the {d['dataset']} test split ({r['num_examples']} images), {d['eval_binarize']} binarization seed {d['binarize_seed']} "
        "(the VQ-VAE benchmark's test set).",
        "",
        "| prior | test NLL (nats / image) | estimator | test bits/token | uniform prior bits/token | steps (best) | train time |",
        "|---|---|---|---|---|---|---|",
        f"| class-conditional (true labels) | {r['nll']:.2f} | {r['estimator']} | {r['bits_per_token']:.3f} | {uniform:.0f} (log2 {k})"
        + (f"; VQ-VAE benchmark: {r['vqvae_uniform_bits_per_token']:g}" if r["vqvae_uniform_bits_per_token"] is not None else "")
        + f" | {r['steps']} ({r['best_step']}) | {r['train_seconds'] / 60:.1f} min |",
        "",
        f"The prior spends {r['bits_per_token']:.3f} of the uniform {uniform:.0f} bits per token ({r['bits_per_token'] / uniform:.1%}); "
        f"per image {r['bits_per_token'] * grid * grid:.0f} bits instead of {uniform * grid * grid:.0f}.",
        "",
        f"Two-stage samples: `generate_images(prior, labels=..., guidance_scale=s)` (prior samples a code grid at temperature 1, "
        f"the VQ-VAE decodes its mean image), {r['num_per_label']} per label (labels 0-9: {10 * r['num_per_label']} images per scale), "
        f"seeded generator; judged by the reference classifier `{r['classifier']}` (test accuracy {cm.get('test_accuracy', float('nan')):.3f}, "
        f"{cm.get('test_accuracy_binarized', float('nan')):.3f} on binarized test images) via `conditional_fidelity`.",
        "",
        "| guidance scale | classifier accuracy | worst label | sampling + classifying time |",
        "|---|---|---|---|",
    ]
    for f in r["fidelity"]:
        worst = min(range(len(f["per_label"])), key=lambda i: f["per_label"][i])
        name = f"{f['guidance_scale']:g}" + (" (no guidance)" if f["guidance_scale"] == 1 else "")
        lines.append(f"| {name} | {f['accuracy']:.1%} | {worst}: {f['per_label'][worst]:.0%} | {f['seconds']:.0f} s |")
    best = max(r["fidelity"], key=lambda f: f["accuracy"])
    lines += ["", f"Target >= 90% with guidance: {'met' if best['accuracy'] >= 0.9 else 'NOT met'} (best {best['accuracy']:.1%} at scale "
                  f"{best['guidance_scale']:g}). Sample grids (8 per label, one row per label): `{relative(r['run_dir'])}/samples_guidance_<s>.png`."]
    return lines


# ---------------------------------------------------------------------------------------------
# Part 4: fast PixelCNN generation against the naive loop
# ---------------------------------------------------------------------------------------------


def part_pixelcnn_sampling(args) -> dict:
    trained = Path(args.output_dir) / "pixelcnn_mnist5k"
    if (trained / "model.safetensors").is_file():
        model, weights = PixelCNNPriorModel.from_pretrained(trained).eval(), f"trained (`{relative(trained)}`)"
    else:
        config = Recipe.from_yaml(Path(args.pixelcnn_recipe)).model.config
        torch.manual_seed(0)
        model, weights = PixelCNNPriorModel(PixelCNNPriorConfig(**config)).eval(), "random (speed does not depend on them)"
    fast, fast_seconds = timed_sample(model, args.sampling_samples, use_cache=True)
    naive, naive_seconds = timed_sample(model, args.sampling_samples, use_cache=False)
    assert torch.equal(fast, naive), "fast and naive PixelCNN sampling drew different grids"
    c, tokens = model.config, args.sampling_samples * model.config.grid_size**2
    return {
        "config": {"vocab_size": c.vocab_size, "grid_size": c.grid_size, "num_layers": c.num_layers, "hidden_size": c.hidden_size,
                   "kernel_size": c.kernel_size, "output_channels": c.output_channels,
                   "parameters": sum(p.numel() for p in model.parameters())},
        "weights": weights, "num_samples": args.sampling_samples, "identical": True,
        "fast_seconds": fast_seconds, "naive_seconds": naive_seconds,
        "fast_tokens_per_second": tokens / fast_seconds, "naive_tokens_per_second": tokens / naive_seconds,
        "speedup": naive_seconds / fast_seconds,
    }


def render_pixelcnn_sampling(r: dict) -> list[str]:
    c = r["config"]
    return [
        *header("pixelcnn_sampling", r, "; both paths timed in the same process, one after the other"),
        f"Model: `pixelcnn_mnist5k.yaml`'s Gated PixelCNN, vocabulary {c['vocab_size']}, {c['grid_size']}x{c['grid_size']} "
        f"({c['grid_size'] ** 2} positions), {c['num_layers']} layers, width {c['hidden_size']}, kernel {c['kernel_size']}, "
        f"head {c['output_channels']}, {c['parameters']:,} parameters; weights {r['weights']}; {r['num_samples']} images, one batch, "
        "temperature 1, seeded generator.",
        "",
        "| sampling | seconds | tokens/s |",
        "|---|---|---|",
        f"| naive (`use_cache=False`: the network over the rows drawn so far, per token) | {r['naive_seconds']:.2f} | "
        f"{r['naive_tokens_per_second']:.0f} |",
        f"| fast (`use_cache=True`, the default: `PixelCNNCache`) | {r['fast_seconds']:.2f} | {r['fast_tokens_per_second']:.0f} |",
        "",
        f"Speed-up: **{r['speedup']:.1f}x** (target >= 20x). The two runs drew identical images (`torch.equal` asserted: "
        f"{'yes' if r['identical'] else 'no'}). The tests check the same for every configuration they build "
        "(`tests/test_pixelcnn_prior.py`, `test_fast_sampling_*`).",
    ]


# ---------------------------------------------------------------------------------------------
# Part 5: two-stage generation speed (transformer prior + VQ-VAE)
# ---------------------------------------------------------------------------------------------


def part_two_stage(args) -> dict:
    from hf_vae.generation import generate_images

    vq_config = Recipe.from_yaml(CONFIGS / "vqvae_mnist5k.yaml").model.config
    prior_config = dict(Recipe.from_yaml(Path(args.vq_recipe)).model.config)
    prior_config.pop("vqvae_name_or_path", None)  # random weights: the VQ-VAE is passed, not loaded
    torch.manual_seed(0)
    vqvae = VQVAEModel(VQVAEConfig(**vq_config)).eval()
    prior = TransformerPriorModel(TransformerPriorConfig(**prior_config)).eval()
    n = args.two_stage_images
    labels = torch.arange(n) % prior.config.num_classes
    rows = []
    for scale in (1.0, 3.0):
        def run(scale=scale):
            return generate_images(prior, n, vqvae=vqvae, labels=labels, guidance_scale=scale,
                                   generator=torch.Generator().manual_seed(0), progress=False)

        run()  # warm-up
        times, cpu_times = [], []
        for _ in range(args.two_stage_repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        start = time.perf_counter()
        prior.sample(n, labels=labels, guidance_scale=scale, generator=torch.Generator().manual_seed(0), progress=False)
        prior_seconds = time.perf_counter() - start
        rows.append({"guidance_scale": scale, "seconds": min(times), "median_seconds": sorted(times)[len(times) // 2],
                     "prior_seconds": prior_seconds, "tokens_per_second": n * prior.config.grid_size**2 / prior_seconds,
                     "images_per_second": n / min(times), "cpu_seconds": min(cpu_times)})
    return {"num_images": n, "repeats": args.two_stage_repeats, "rows": rows, "grid_size": prior.config.grid_size,
            "prior_parameters": sum(p.numel() for p in prior.parameters()),
            "vqvae_parameters": sum(p.numel() for p in vqvae.parameters()),
            "prior": {k: prior_config[k] for k in ("n_layer", "n_head", "n_embd", "vocab_size", "num_classes")}}


def render_two_stage(r: dict) -> list[str]:
    p, n = r["prior"], r["num_images"]
    lines = [
        *header("two_stage", r),
        f"Models: transformer prior of `transformer_prior_vqvae_mnist5k.yaml` ({p['n_layer']} layers, {p['n_head']} heads, width "
        f"{p['n_embd']}, vocabulary {p['vocab_size']}, {r['grid_size']}x{r['grid_size']} codes, {p['num_classes']} classes; "
        f"{r['prior_parameters']:,} parameters) and VQ-VAE of `vqvae_mnist5k.yaml` ({r['vqvae_parameters']:,} parameters), "
        f"random weights (speed does not depend on them). `generate_images(prior, {n}, vqvae=..., labels=...)`: the prior samples "
        f"{n} code grids with its key/value cache, the VQ-VAE decodes them; best and median of {r['repeats']} runs after a warm-up; "
        "prior tokens/s from one `prior.sample` run alone; CPU seconds are this process's own (best run), which other "
        "jobs on the machine inflate less than the wall-clock time.",
        "",
        f"| guidance scale | seconds for {n} images (best / median) | CPU seconds | images/s | prior tokens/s | target < 1 s |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        name = f"{row['guidance_scale']:g}" + (" (no guidance)" if row["guidance_scale"] == 1 else " (2 rows per image)")
        lines.append(f"| {name} | {row['seconds']:.3f} / {row['median_seconds']:.3f} | {row.get('cpu_seconds', float('nan')):.3f} | "
                     f"{row['images_per_second']:.0f} | "
                     f"{row['tokens_per_second']:.0f} | {'met' if row['seconds'] < 1 else 'NOT met'} |")
    return lines


RENDER = {"kv_cache": render_kv_cache, "pixelcnn": render_pixelcnn, "vq_prior": render_vq_prior,
          "pixelcnn_sampling": render_pixelcnn_sampling, "two_stage": render_two_stage}
RUN = {"kv_cache": part_kv_cache, "pixelcnn": part_pixelcnn, "vq_prior": part_vq_prior,
       "pixelcnn_sampling": part_pixelcnn_sampling, "two_stage": part_two_stage}
TITLES = {
    "kv_cache": "## 1. Key/value cache: transformer prior sampling",
    "pixelcnn": "## 2. Gated PixelCNN on binarized mnist5k pixels",
    "vq_prior": "## 3. Class-conditional prior over VQ-VAE codes, two-stage samples",
    "pixelcnn_sampling": "## 4. Fast PixelCNN generation (Ramachandran et al. 2017) vs the naive loop",
    "two_stage": "## 5. Two-stage generation speed: transformer prior + VQ-VAE",
}


def existing_sections(path: Path) -> dict[str, list[str]]:
    """The results markdown's sections by heading line, so that a part whose JSON is not stored here keeps its
    published figures when another part re-renders the file."""
    sections, heading = {}, None
    for line in (path.read_text().splitlines() if path.is_file() else []):
        if line.startswith("## "):
            heading = line
            sections[heading] = []
        if heading is not None:
            sections[heading].append(line)
    return {heading: lines[:-1] if lines and lines[-1] == "" else lines for heading, lines in sections.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="*", choices=PARTS, default=list(PARTS),
                        help="parts to run; none re-renders the markdown from the stored JSON")
    parser.add_argument("--output_dir", default=str(HERE / "runs" / "priors_mnist5k"))
    parser.add_argument("--results", default=str(HERE / "results" / "priors_mnist5k.md"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--skip-training", action="store_true", help="score the models already in --output_dir")
    parser.add_argument("--kv-samples", type=int, default=32)
    parser.add_argument("--kv-grid", type=int, default=14)
    parser.add_argument("--kv-vocab", type=int, default=512)
    parser.add_argument("--kv-layers", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--kv-embd", type=int, default=128)
    parser.add_argument("--pixelcnn-recipe", default=str(CONFIGS / "pixelcnn_mnist5k.yaml"))
    parser.add_argument("--set-pixelcnn", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--vq-recipe", default=str(CONFIGS / "transformer_prior_vqvae_mnist5k.yaml"))
    parser.add_argument("--set-vq", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--classifier", default="benchmarks/reference_classifier")
    parser.add_argument("--num-per-label", type=int, default=100)
    parser.add_argument("--guidance-scales", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--sampling-samples", type=int, default=16, help="pixelcnn_sampling: images per run")
    parser.add_argument("--two-stage-images", type=int, default=64)
    parser.add_argument("--two-stage-repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    store = Path(args.output_dir)
    store.mkdir(parents=True, exist_ok=True)
    for part in args.parts:
        result = RUN[part](args)
        result.update(command=command_line("OMP_NUM_THREADS=1 python"), machine=machine(), finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        (store / f"{part}.json").write_text(json.dumps(result, indent=2, default=str))

    lines = ["# Autoregressive token priors on mnist5k", "",
             "Written by `benchmarks/priors_mnist5k.py`; every figure below comes from the run whose command is shown "
             "(results stored as JSON under `benchmarks/runs/priors_mnist5k/`)."]
    published = existing_sections(Path(args.results))
    for part in PARTS:
        path = store / f"{part}.json"
        lines.append("")
        if path.is_file():
            lines += RENDER[part](json.loads(path.read_text()))
        elif TITLES[part] in published:
            lines += published[TITLES[part]]
        else:
            lines += [f"## {part}", "", f"Not run yet: `OMP_NUM_THREADS=1 python benchmarks/priors_mnist5k.py --parts {part}`."]
    write_markdown(args.results, lines)


if __name__ == "__main__":
    main()
