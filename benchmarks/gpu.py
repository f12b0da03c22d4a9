"""The GPU benchmark, in one go (issue 15, item 5): run it whenever a CUDA GPU is available.

Four parts, written to `--results` (default `benchmarks/results/gpu.md`) with the command and the device:

1. `families`: every family (VAE, CVAE, VQ-VAE, PixelCNN prior, transformer prior) on the device in
   bf16 autocast: forward, backward (finite gradients), sampling where the family samples, and
   save/load (the reloaded model gives the same output, `torch.equal`).
2. `training`: optimizer steps/s and images/s of the VAE, the VQ-VAE and the transformer prior at
   their mnist5k recipe sizes (synthetic batches: model throughput, not the data path), bf16 autocast,
   AdamW, with and without `torch.compile`.
3. `decoding`: the transformer prior's key/value cache and the fast PixelCNN (`use_cache`) against
   their naive loops on the device, same seed, identical samples asserted.
4. `mfu`: the transformer prior's training model FLOPs utilisation (6 N + 12 L T d FLOPs per token,
   Chinchilla/PaLM accounting) against the GPU's dense bf16 peak, for the largest configuration of
   `MFU_CONFIGS` that fits.

On a CPU, `--smoke` runs every part at tiny sizes for a couple of steps (no `torch.compile`, which
would spend a minute compiling), so `tests/test_gpu.py` runs the script and it cannot rot. The full run
is sized for under 8 minutes on one H100/H200-class GPU.

    python benchmarks/gpu.py                 # CUDA: writes benchmarks/results/gpu.md
    python benchmarks/gpu.py --smoke --results /tmp/gpu_smoke.md   # CPU, seconds
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from report import command_line, write_markdown

from hf_vae import (
    CVAEConfig,
    CVAEModel,
    PixelCNNPriorConfig,
    PixelCNNPriorModel,
    TransformerPriorConfig,
    TransformerPriorModel,
    VAEConfig,
    VAEModel,
    VQVAEConfig,
    VQVAEModel,
)
from hf_vae.training import Recipe

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "hf_vae" / "recipes"
# Dense bf16 peak TFLOP/s (no sparsity) by device-name fragment, from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "4090": 165.0}
# Transformer priors for the MFU part, largest first: (n_layer, n_head, n_embd, grid_size, vocab_size, batch).
MFU_CONFIGS = [(24, 16, 1024, 32, 1024, 32), (12, 12, 768, 32, 1024, 32), (6, 8, 512, 16, 512, 64)]


def recipe_config(name: str) -> dict:
    config = dict(Recipe.from_yaml(CONFIGS / name).model.config)
    config.pop("vqvae_name_or_path", None)  # random weights: nothing to load
    return config


def family_configs(smoke: bool) -> dict:
    """(model class, config, batch maker) per family: the mnist5k recipes' sizes, or tiny ones for --smoke."""
    if smoke:
        image = dict(image_size=8, num_channels=1, hidden_channels=[4, 8], num_res_blocks=1)
        vae, vq = dict(image, latent_dim=4), dict(image, codebook_size=8, embedding_dim=4)
        pixel = dict(vocab_size=2, grid_size=4, token_source="pixels", hidden_size=8, num_layers=2, output_channels=8)
        codes = dict(vocab_size=8, grid_size=2, num_classes=3, label_dropout=0.1, n_layer=1, n_head=2, n_embd=16)
    else:
        vae, vq = recipe_config("vae_mnist5k.yaml"), recipe_config("vqvae_mnist5k.yaml")
        pixel, codes = recipe_config("pixelcnn_mnist5k.yaml"), recipe_config("transformer_prior_vqvae_mnist5k.yaml")
    return {
        "vae": (VAEModel, VAEConfig(**vae)),
        "cvae": (CVAEModel, CVAEConfig(**vae, num_classes=10)),
        "vqvae": (VQVAEModel, VQVAEConfig(**vq)),
        "pixelcnn_prior": (PixelCNNPriorModel, PixelCNNPriorConfig(**pixel)),
        "transformer_prior": (TransformerPriorModel, TransformerPriorConfig(**codes)),
    }


def make_batch(config, batch_size: int, device, generator: torch.Generator) -> dict:
    """A synthetic training batch for `config`'s family: binary images, or token grids (and labels)."""
    batch = {}
    if hasattr(config, "image_size"):
        shape = (batch_size, config.num_channels, config.image_size, config.image_size)
        batch["pixel_values"] = (torch.rand(shape, generator=generator) < 0.3).float().to(device)
    else:
        shape = (batch_size, config.grid_size, config.grid_size)
        batch["indices"] = torch.randint(0, config.vocab_size, shape, generator=generator).to(device)
    if getattr(config, "num_classes", None):
        batch["labels"] = torch.randint(0, config.num_classes, (batch_size,), generator=generator).to(device)
    return batch


def autocast(device):
    return torch.autocast(device.type, dtype=torch.bfloat16)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------


def part_families(args, device) -> list[str]:
    rows = []
    for name, (model_class, config) in family_configs(args.smoke).items():
        torch.manual_seed(0)
        model = model_class(config).to(device)
        batch = make_batch(config, 4, device, torch.Generator().manual_seed(0))
        start = time.perf_counter()
        with autocast(device):
            loss = model(**batch).loss
        loss.backward()
        grads_finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.eval()
        sampled = "-"
        if "sample" in model.capabilities:
            labels = {"labels": batch["labels"][:2]} if "labels" in batch else {}
            options = {"progress": False} if "progress" in model.sample_options else {}
            with autocast(device):
                samples = model.sample(2, generator=torch.Generator().manual_seed(0), **labels, **options)
            sampled = f"{tuple(samples.shape)}"
        with tempfile.TemporaryDirectory() as folder, torch.no_grad(), autocast(device):
            model.save_pretrained(folder)
            reloaded = model_class.from_pretrained(folder).to(device).eval()
            same = torch.equal(model(**batch, generator=torch.Generator().manual_seed(0)).loss,
                               reloaded(**batch, generator=torch.Generator().manual_seed(0)).loss)
        sync(device)
        rows.append(f"| {name} | {loss.item():.4f} | {'yes' if grads_finite else 'NO'} | {sampled} | {'yes' if same else 'NO'} | "
                    f"{time.perf_counter() - start:.2f} |")
        assert torch.isfinite(loss) and grads_finite and same, f"{name}: bf16 forward/backward/save-load failed"
    return ["## 1. Every family in bf16 autocast", "",
            "| family | loss | finite gradients | samples | save/load same output | seconds |", "|---|---|---|---|---|---|", *rows]


def train_throughput(model, batch, steps: int, compile_model: bool, device) -> float:
    """Optimizer steps per second (after warm-up steps that also absorb compilation)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    step_fn = torch.compile(model) if compile_model else model
    for i in range(steps + 3):
        if i == 3:
            sync(device)
            start = time.perf_counter()
        with autocast(device):
            loss = step_fn(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    return steps / (time.perf_counter() - start)


def part_training(args, device) -> list[str]:
    configs = family_configs(args.smoke)
    rows = []
    for name in ("vae", "vqvae", "transformer_prior"):
        model_class, config = configs[name]
        batch = make_batch(config, args.batch_size, device, torch.Generator().manual_seed(0))
        cells = []
        for compile_model in (False, True) if not args.smoke else (False,):
            torch.manual_seed(0)
            rate = train_throughput(model_class(config).to(device), batch, args.train_steps, compile_model, device)
            cells.append(f"{rate:.1f} steps/s = {rate * args.batch_size:,.0f} images/s")
        rows.append(f"| {name} | {args.batch_size} | " + " | ".join(cells + ["skipped (--smoke)"] * (2 - len(cells))) + " |")
    return ["## 2. Training throughput (synthetic batches, bf16 autocast, AdamW)", "",
            f"{args.train_steps} timed steps after 3 warm-up steps (which absorb `torch.compile`'s compilation).", "",
            "| model | batch | eager | torch.compile |", "|---|---|---|---|", *rows]


def timed_sample(model, n, device, **options) -> tuple[torch.Tensor, float]:
    model.sample(1, generator=torch.Generator().manual_seed(1), progress=False, **options)  # warm-up
    sync(device)
    start = time.perf_counter()
    tokens = model.sample(n, generator=torch.Generator().manual_seed(0), progress=False, **options)
    sync(device)
    return tokens, time.perf_counter() - start


def part_decoding(args, device) -> list[str]:
    configs = family_configs(args.smoke)
    rows = []
    for name in ("transformer_prior", "pixelcnn_prior"):
        model_class, config = configs[name]
        torch.manual_seed(0)
        model = model_class(config).to(device).eval()
        labels = {"labels": 0} if getattr(config, "num_classes", None) else {}
        n = args.decode_samples
        fast, fast_seconds = timed_sample(model, n, device, use_cache=True, **labels)
        naive, naive_seconds = timed_sample(model, n, device, use_cache=False, **labels)
        tokens = n * config.grid_size**2
        rows.append(f"| {name} | {n} x {config.grid_size}x{config.grid_size} | {tokens / naive_seconds:,.0f} | "
                    f"{tokens / fast_seconds:,.0f} | {naive_seconds / fast_seconds:.1f}x | {'yes' if torch.equal(fast, naive) else 'NO'} |")
    return ["## 3. Cached decoding vs the naive loop (fp32, same seed)", "",
            "| model | samples | naive tokens/s | cached tokens/s | speed-up | identical |", "|---|---|---|---|---|---|", *rows]


def part_mfu(args, device) -> list[str]:
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name()), None)
    candidates = [(1, 2, 16, 2, 8, 4)] if args.smoke else MFU_CONFIGS
    for n_layer, n_head, n_embd, grid, vocab, batch_size in candidates:
        config = TransformerPriorConfig(vocab_size=vocab, grid_size=grid, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        model = None
        try:
            torch.manual_seed(0)
            model = TransformerPriorModel(config).to(device)
            batch = make_batch(config, batch_size, device, torch.Generator().manual_seed(0))
            rate = train_throughput(model, batch, args.train_steps, compile_model=not args.smoke, device=device)
        except torch.OutOfMemoryError:  # try the next, smaller configuration
            model = batch = None
            torch.cuda.empty_cache()
            continue
        params = sum(p.numel() for p in model.parameters() if p.requires_grad) - model.token_embedding.weight.numel()
        seq = grid * grid
        flops_per_token = 6 * params + 12 * n_layer * seq * n_embd
        achieved = rate * batch_size * seq * flops_per_token / 1e12
        mfu = f"{achieved / peak:.1%}" if peak else "unknown peak"
        return ["## 4. Transformer prior model FLOPs utilisation (bf16 autocast, torch.compile, AdamW)", "",
                f"Largest configuration that fit: {n_layer} layers, {n_head} heads, width {n_embd}, {grid}x{grid} tokens, "
                f"vocabulary {vocab}, batch {batch_size}; {params:,} non-embedding parameters; "
                f"{flops_per_token / 1e6:.1f} MFLOPs per token (6N + 12LTd).", "",
                "| tokens/s | achieved TFLOP/s | bf16 peak TFLOP/s | MFU |", "|---|---|---|---|",
                f"| {rate * batch_size * seq:,.0f} | {achieved:.1f} | {peak or '-'} | {mfu} |"]
    return ["## 4. Transformer prior model FLOPs utilisation", "", "No configuration fit in memory."]


PARTS = {"families": part_families, "training": part_training, "decoding": part_decoding, "mfu": part_mfu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU, no torch.compile (the tests' mode)")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--results", default=str(HERE / "results" / "gpu.md"))
    parser.add_argument("--train-steps", type=int, default=None, help="timed optimizer steps (default 50; 2 with --smoke)")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default 256; 4 with --smoke)")
    parser.add_argument("--decode-samples", type=int, default=None, help="samples per decoding run (default 64; 2 with --smoke)")
    args = parser.parse_args()
    args.train_steps = args.train_steps or (2 if args.smoke else 50)
    args.batch_size = args.batch_size or (4 if args.smoke else 256)
    args.decode_samples = args.decode_samples or (2 if args.smoke else 64)
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke for the CPU check")
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    started = time.perf_counter()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke mode: tiny sizes, not a measurement)"
    lines = ["# GPU benchmark", "", "Written by `benchmarks/gpu.py` (its docstring says what each part measures).", "",
             f"Command: `{command_line()}`  ", f"Device: {name}, torch {torch.__version__}  "]
    body = []
    for part in args.parts:
        body += ["", *PARTS[part](args, device)]
    lines += [f"Total time: {time.perf_counter() - started:.0f} s (target < 8 min on one GPU)", *body]
    write_markdown(args.results, lines)
    print(f"gpu.py finished in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
