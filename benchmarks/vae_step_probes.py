"""Where a training step of the default VAE goes, and what did not make it faster (issue #15, item 2).

`vae_mnist5k.py --part throughput` measures hf_vae's training images/s against pythae's on the identical model;
the target is 2.0x and the measured ratio is 1.64x (VampPrior) / 1.68x (N(0, I)). This script says why, on one
torch thread, in CPU seconds of this process (process time, so another process's load counts less than in wall
time), every comparison INTERLEAVED (A, B, A, B, ...: a load that changes during the run slows each alike),
medians of `--rounds` rounds:

- `layers`: every convolution of the recipe's model at the shapes a training step runs it (the batch through
  encoder and decoder, the VampPrior's pseudo-inputs through the encoder), forward + backward, in fp32 or bf16
  autocast and NCHW or channels-last: pythae's setting (fp32, NCHW) against the recipe's (bf16, channels-last);
- `alternatives`: the same numbers computed another way, for the layers that run slowest per multiply: the 4x4
  stride-2 transposed convolutions as a 3x3 convolution + pixel shuffle, or as four 2x2 convolutions (one per
  output phase); the one-output-channel last convolution as a matrix product plus shifted sums (the IWAE
  evaluation's `_single_channel_conv`); one encoder pass over the batch and the pseudo-inputs instead of two;
  each checked against the layer it replaces (max |difference|, fp32);
- `step`: the whole training step (forward under the recipe's autocast, backward, fused AdamW), the model as the
  trainer runs it against the decoder's in-place NHWC evaluation path (`ConvDecoder._forward_nhwc`) and, with
  `--compile`, `torch.compile` of the model (its compile time printed, not counted).

The table is a section (`step_probes`) of `results/vae_mnist5k_throughput.md`.

    OMP_NUM_THREADS=1 python benchmarks/vae_step_probes.py                 # under a minute on an idle core
    OMP_NUM_THREADS=1 python benchmarks/vae_step_probes.py --compile       # + torch.compile (about a minute to compile, cold)
    python benchmarks/vae_step_probes.py --smoke --results /tmp/probes.md  # tiny (the tests run it)
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from report import command_line, machine, write_section

from hf_vae.models.modeling_autoencoder import ConvDecoder, _single_channel_conv
from hf_vae.training import Recipe
from hf_vae.training.recipe import build_model

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "hf_vae" / "recipes" / "vae_mnist5k.yaml"
SMOKE_RECIPE = HERE.parent / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
# (precision, channels_last) of `layers`: pythae's setting first, the recipe's last.
SETTINGS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def interleaved(calls: dict, rounds: int, repeats: int) -> dict[str, float]:
    """Median CPU milliseconds per call of each of `calls` (name -> no-argument function), run in turn."""
    for call in calls.values():  # warm-up: oneDNN picks and caches its kernels on a shape's first call
        call(), call()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.process_time()
            for _ in range(repeats):
                call()
            times[name].append((time.process_time() - start) / repeats * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def training_convolutions(model, batch: torch.Tensor) -> list[tuple[torch.nn.Module, tuple, bool]]:
    """(layer, input shape, whether its input needs a gradient) of every convolution one training forward runs."""
    calls = []

    def record(module, inputs, output):
        calls.append((module, tuple(inputs[0].shape), inputs[0].requires_grad))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    model(pixel_values=batch, generator=torch.Generator().manual_seed(0))
    for hook in hooks:
        hook.remove()
    return calls


def layer_call(layer, shape, needs_grad: bool, precision: str, channels_last: bool):
    layer = copy.deepcopy(layer).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def call():
        inputs = x.detach().requires_grad_(needs_grad)
        with autocast(precision):
            y = layer(inputs)
        y.backward(torch.ones_like(y))
    return call


def probe_layers(convs, rounds, repeats) -> tuple[list[str], dict]:
    rows, totals = [], dict.fromkeys(SETTINGS, 0.0)
    for layer, shape, needs_grad in convs:
        calls = {setting: layer_call(layer, shape, needs_grad, *setting) for setting in SETTINGS}
        ms = interleaved(calls, rounds, repeats)
        for setting in SETTINGS:
            totals[setting] += ms[setting]
        kind = "transposed " if isinstance(layer, torch.nn.ConvTranspose2d) else ""
        name = f"{kind}{layer.in_channels}->{layer.out_channels} {layer.kernel_size[0]}x{layer.kernel_size[1]}/{layer.stride[0]}"
        rows.append(f"| {name} | {'x'.join(map(str, shape))} | " + " | ".join(f"{ms[s]:.2f}" for s in SETTINGS) + " |")
    rows.append("| **all convolutions** | | " + " | ".join(f"**{totals[s]:.1f}**" for s in SETTINGS) + " |")
    return rows, totals


def transposed_as_subpixel(x, weight, bias):
    """ConvTranspose2d(k=4, s=2, p=1) as conv3x3 to 4 * C_out channels + pixel shuffle. Output row 2i + a reads
    input rows i - 1, i, i + 1 with kernel rows (3, 1, -) for a = 0 and (-, 2, 0) for a = 1 ('-': zero)."""
    c_in, c_out = weight.shape[:2]
    taps = torch.tensor([[3, 1, 4], [4, 2, 0]])  # index 4 reads the zero padding added below
    padded = F.pad(weight, (0, 1, 0, 1))
    kernel = padded[:, :, taps[:, :, None, None], taps[None, None]]  # (C_in, C_out, 2, 3, 2, 3)
    kernel = kernel.permute(1, 2, 4, 0, 3, 5).reshape(4 * c_out, c_in, 3, 3)
    y = F.conv2d(x, kernel.contiguous(memory_format=torch.channels_last), bias.repeat_interleave(4), padding=1)
    return F.pixel_shuffle(y, 2)


def transposed_as_phases(x, weight, bias):
    """ConvTranspose2d(k=4, s=2, p=1) as four 2x2 convolutions, one per output phase (a, b), interleaved."""
    taps, pads = ((3, 1), (2, 0)), ((1, 0), (0, 1))
    b, _, h, w = x.shape
    rows = []
    for a in range(2):
        phases = [F.conv2d(F.pad(x, (*pads[c], *pads[a])), weight[:, :, taps[a], :][:, :, :, taps[c]].transpose(0, 1), bias)
                  for c in range(2)]
        rows.append(torch.stack(phases, -1))  # (B, C_out, h, w, 2)
    return torch.stack(rows, 3).reshape(b, -1, 2 * h, 2 * w)  # (B, C_out, h, 2, w, 2) -> (B, C_out, 2h, 2w)


def probe_alternatives(model, batch, convs, rounds, repeats) -> list[str]:
    rows = []
    for layer, shape, _ in convs:
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            candidates = {"oneDNN transposed convolution": layer, "3x3 convolution + pixel shuffle": transposed_as_subpixel,
                          "four 2x2 phase convolutions": transposed_as_phases}
        elif layer.out_channels == 1 and layer.kernel_size == (3, 3):
            candidates = {"oneDNN convolution": layer, "matrix product + shifted sums": _single_channel_conv}
        else:
            continue
        layer = copy.deepcopy(layer).to(memory_format=torch.channels_last)
        reference = layer(x)

        def call_of(f):
            def call():
                inputs = x.detach().requires_grad_()
                with autocast("bf16"):
                    y = f(inputs) if isinstance(f, torch.nn.Module) else f(inputs, layer.weight, layer.bias)
                y.backward(torch.ones_like(y))
            return call
        ms = interleaved({name: call_of(f) for name, f in candidates.items()}, rounds, repeats)
        for name, f in candidates.items():
            error = 0.0 if isinstance(f, torch.nn.Module) else (f(x, layer.weight, layer.bias) - reference).abs().max().item()
            rows.append(f"| {layer.in_channels}->{layer.out_channels} at {'x'.join(map(str, shape))} | {name} | {ms[name]:.2f} | {error:.1e} |")
    if getattr(model, "pseudo_inputs", None) is not None:
        encoder, u = model.encoder, model.pseudo_inputs().detach()
        x = batch.contiguous(memory_format=torch.channels_last)

        def encoder_call(one_pass: bool):
            def call():
                pseudo = u.clone().requires_grad_()
                with autocast("bf16"):
                    out = encoder(torch.cat([x, pseudo])).sum() if one_pass else encoder(x).sum() + encoder(pseudo).sum()
                out.backward()
            return call
        ms = interleaved({"two": encoder_call(False), "one": encoder_call(True)}, rounds, repeats)
        size = f"{len(x)} + {len(u)} pseudo-inputs"
        rows.append(f"| encoder, {size} | two passes (the model's) | {ms['two']:.2f} | 0 |")
        rows.append(f"| encoder, {size} | one pass over both | {ms['one']:.2f} | 0 |")
    return rows


def probe_step(model, batch, recipe, rounds, repeats, compile_model: bool) -> tuple[list[str], dict]:
    precision = recipe.training.mixed_precision if recipe.training.mixed_precision != "no" else "fp32"
    original = ConvDecoder.forward

    def nhwc_forward(self, latents, memory_format=None):
        return original(self, latents, torch.channels_last)

    def step_call(variant):
        trained = copy.deepcopy(model)
        forward = torch.compile(trained) if variant == "torch.compile" else trained
        optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-3, fused=True)
        generator = torch.Generator().manual_seed(0)

        def call():
            ConvDecoder.forward = nhwc_forward if variant == "in-place NHWC decoder" else original
            try:
                with autocast(precision):
                    loss = forward(pixel_values=batch, generator=generator, global_step=10**6).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            finally:
                ConvDecoder.forward = original
        return call
    variants = ["the trainer's step", "in-place NHWC decoder"] + (["torch.compile"] if compile_model else [])
    calls = {}
    for variant in variants:
        calls[variant] = step_call(variant)
        if variant == "torch.compile":
            start = time.perf_counter()
            calls[variant]()
            print(f"torch.compile: first step {time.perf_counter() - start:.0f} s")
    ms = interleaved(calls, rounds, repeats)
    return [f"| {variant} | {ms[variant]:.1f} | {len(batch) / ms[variant] * 1000:.0f} |" for variant in variants], ms


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    parser.add_argument("--repeats", type=int, default=5, help="calls per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the model")
    parser.add_argument("--results", default=str(HERE / "results" / "vae_mnist5k_throughput.md"))
    parser.add_argument("--smoke", action="store_true", help="the tiny digits recipe, one round of one call")
    args = parser.parse_args(argv)
    if args.smoke:
        args.recipe, args.rounds, args.repeats = str(SMOKE_RECIPE), 1, 1
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    recipe = Recipe.from_yaml(args.recipe)
    torch.manual_seed(recipe.training.seed)
    model = build_model(recipe)
    if recipe.training.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    c, size = recipe.model.config["num_channels"], recipe.model.config["image_size"]
    batch = (torch.rand(recipe.training.batch_size, c, size, size, generator=torch.Generator().manual_seed(0)) > 0.5).float()

    convs = training_convolutions(model, batch)  # (layer, input shape, input needs a gradient), in call order
    layer_rows, totals = probe_layers(convs, args.rounds, args.repeats)
    alternative_rows = probe_alternatives(model, batch, convs, args.rounds, args.repeats)
    step_rows, steps = probe_step(model, batch, recipe, args.rounds, args.repeats, args.compile)
    pythae_setting, recipe_setting = SETTINGS[0], SETTINGS[-1]
    trainer_step = steps["the trainer's step"]
    lines = [
        "## Where the training step goes (`vae_step_probes.py`)", "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}; {os.cpu_count()} cores, load average {load:.1f} when it started; CPU milliseconds "
        f"(process time) per call, medians of {args.rounds} interleaved rounds of {args.repeats} calls.  ",
        f"Recipe: `{Path(args.recipe).name}`, batch {len(batch)}.", "",
        "Every convolution of one training step, forward + backward:", "",
        "| layer | input | fp32 NCHW (pythae) | fp32 channels-last | bf16 NCHW | bf16 channels-last (recipe) |",
        "|---|---|---|---|---|---|", *layer_rows, "",
        f"The recipe's setting runs the convolutions in {totals[recipe_setting] / totals[pythae_setting]:.2f} of pythae's time; "
        f"they are {totals[recipe_setting] / trainer_step:.0%} of the recipe's whole step "
        f"({trainer_step:.1f} ms, below). A 2.0x ratio needs the step at half of pythae's.", "",
        "Other ways to compute the slowest layers (bf16 channels-last, forward + backward; error: max |difference| "
        "from the layer in fp32):", "",
        "| layer | computed as | ms | error |", "|---|---|---|---|", *alternative_rows, "",
        "The whole training step (forward, backward, fused AdamW):", "",
        "| step | ms | images/s |", "|---|---|---|", *step_rows,
    ]
    write_section(args.results, "step_probes", lines)
    print("\n".join(lines))
    return {"totals": {f"{p} {'channels_last' if cl else 'nchw'}": v for (p, cl), v in totals.items()}, "steps": steps,
            "alternatives": alternative_rows}


if __name__ == "__main__":
    main()
