"""hf_vae vs pythae on the same VAE, measured in one run.

Both train the identical encoder/decoder (hf_vae's modules, the same initial weights), latent size,
optimizer (AdamW, same learning rate and weight decay, cosine schedule), batch size, number of
epochs, training images (the mnist5k train split minus the same 500-image validation split) and
model selection on that validation split. Both are then scored by the same estimator on the same
statically binarized mnist5k test split: the importance-weighted NLL with k samples.

Training data: hf_vae draws a fresh binarization of each batch (dynamic binarization). pythae has no
per-batch transform, so it gets the grey-level images with its BCE loss, whose gradient is the
expectation of the dynamically binarized one: the closest pythae offers. pythae's VAE has no KL
warm-up and its trainer no gradient clipping, and it steps the cosine schedule once per epoch (hf_vae
once per step): the recipe's `kl_warmup_steps` and `max_grad_norm` act on the hf_vae side only.

Throughput counts training steps only (forward, backward, optimizer, data loading), not evaluation
or checkpoints, in images per second on this machine's threads.

Data parallelism (`--part two_process`, run after the comparison): the same recipe under
`accelerate launch --multi_gpu --num_processes 2` (gloo on CPU, `split_batches`: the same global batch split over
two processes), one thread per process; its test NLL is shown next to the one-process hf_vae run.

    pip install -e .[bench]
    python benchmarks/vae_mnist5k.py                      # writes benchmarks/results/vae_mnist5k.md
    python benchmarks/vae_mnist5k.py --part two_process   # adds the 2-process run to the same markdown
    python benchmarks/vae_mnist5k.py --part throughput    # throughput ratio only (a few minutes)

`--part throughput` trains the same two setups (same recipe, same model) for one epoch each, in ONE
process, interleaved (hf_vae, pythae, hf_vae, pythae, ... `--rounds` times), without the IWAE
evaluations, and prints each round's images/s and the median ratio (also written to
`results/vae_mnist5k_throughput.md`): the throughput target re-measured in minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from report import command_line, processor, write_markdown, write_section

import hf_vae  # noqa: F401
from hf_vae.evaluation import evaluate
from hf_vae.training import Recipe, build_model, load_data, train

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "hf_vae" / "recipes" / "vae_mnist5k.yaml"


def run_hf_vae(recipe: Recipe, output_dir: Path) -> dict:
    run_dir = train(recipe)
    summary = json.loads((run_dir / "metrics.json").read_text())
    test = summary["test"]
    nll = test.get("nll", {})  # absent when the run scores no IWAE (`--part throughput`)
    return {
        "nll": nll.get("value"),
        "estimator": nll.get("estimator"),
        "elbo": test["elbo"]["value"],
        "bits_per_dim": test.get("bits_per_dim", {}).get("value"),
        "active_units": test["active_units"]["value"],
        "num_examples": test["num_examples"]["value"],
        "images_per_second": summary["train_images_per_second"],
        "steps": summary["steps"],
        "best_step": summary["best_step"],
    }


def pythae_counterpart(recipe: Recipe, splits: dict) -> tuple[str, dict]:
    """pythae's model for the recipe's VAE: `VAE`, or `VAMP` with as many components as pseudo-inputs and the
    recipe's KL warm-up in pythae's unit (epochs)."""
    config = recipe.model.config
    if config.get("prior", "standard_normal") != "vamp":
        return "VAE", {}
    steps_per_epoch = len(splits["train"]["pixel_values"]) // recipe.training.batch_size
    return "VAMP", {"number_components": config.get("num_pseudo_inputs", 500),
                    "linear_scheduling_steps": round(config.get("kl_warmup_steps", 0) / steps_per_epoch)}


def run_pythae(recipe: Recipe, splits: dict, output_dir: Path, model_name: str | None = None,
               model_options: dict | None = None) -> dict:
    """pythae's `model_name` (VAE, IWAE, VAMP: `pythae.models.<name>` with `<name>Config(**model_options)`;
    None: `pythae_counterpart` of the recipe) on the recipe's architecture, initial weights and budget, scored by
    hf_vae's estimator; the scored model is saved in `output_dir / "scored"`."""
    if model_name is None:
        model_name, model_options = pythae_counterpart(recipe, splits)
    import pythae.models
    from pythae.data.datasets import BaseDataset
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    t = recipe.training
    torch.manual_seed(t.seed)
    reference = build_model(recipe)  # same architecture and initial weights as hf_vae's run
    config = reference.config

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = reference.encoder

        def forward(self, x):
            mean, logvar = self.net(x).chunk(2, dim=1)
            return ModelOutput(embedding=mean, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = reference.decoder

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    model = getattr(pythae.models, model_name)(
        getattr(pythae.models, f"{model_name}Config")(input_dim=(config.num_channels, config.image_size, config.image_size),
                                                      latent_dim=config.latent_dim, reconstruction_loss="bce", **(model_options or {})),
        encoder=Encoder(), decoder=Decoder(),
    )
    num_train = len(splits["train"]["pixel_values"])
    steps_per_epoch = num_train // t.batch_size
    epochs = math.ceil(t.max_steps / steps_per_epoch)
    trainer_config = BaseTrainerConfig(
        output_dir=str(output_dir), num_epochs=epochs, learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=recipe.evaluation.batch_size,
        optimizer_cls="AdamW", optimizer_params={"weight_decay": t.weight_decay, "betas": (t.adam_beta1, t.adam_beta2)},
        scheduler_cls="CosineAnnealingLR", scheduler_params={"T_max": epochs},
        steps_saving=None, seed=t.seed, no_cuda=True,
    )
    def dataset(split):
        images = splits[split]["pixel_values"]
        return BaseDataset(data=images, labels=torch.zeros(len(images)))

    trainer = BaseTrainer(model=model, train_dataset=dataset("train"), eval_dataset=dataset("validation"),
                          training_config=trainer_config)
    step_seconds = 0.0
    train_step = trainer.train_step

    def timed_train_step(epoch):
        nonlocal step_seconds
        start = time.perf_counter()
        loss = train_step(epoch)
        step_seconds += time.perf_counter() - start
        return loss

    trainer.train_step = timed_train_step
    trainer.train()
    best = trainer._best_model
    # Score pythae's best model with the very same estimator: load its modules into an hf_vae model.
    reference.encoder.load_state_dict(best.encoder.net.state_dict())
    reference.decoder.load_state_dict(best.decoder.net.state_dict())
    if model_name == "VAMP":  # pythae's u_k = hardtanh(W e_k + b); hf_vae's (recipe `prior: vamp`) = hardtanh(w_k)
        linear = best.pseudo_inputs[0]
        reference.pseudo_inputs.weight.data.copy_((linear.weight.T + linear.bias).view_as(reference.pseudo_inputs.weight))
    reference.save_pretrained(output_dir / "scored")
    metrics = evaluate(reference, splits["test"], batch_size=recipe.evaluation.batch_size,
                       num_importance_samples=recipe.evaluation.num_importance_samples, seed=t.seed,
                       max_examples=recipe.evaluation.max_examples, progress=False,
                       decoder_precision=recipe.evaluation.decoder_precision)  # the estimator of hf_vae's own run
    nll = metrics.get("nll")  # absent when the run scores no IWAE (`--part throughput`)
    return {
        "nll": None if nll is None else nll.value,
        "estimator": None if nll is None else nll.estimator,
        "elbo": metrics["elbo"].value,
        "bits_per_dim": metrics["bits_per_dim"].value if "bits_per_dim" in metrics else None,
        "active_units": metrics["active_units"].value,
        "images_per_second": epochs * steps_per_epoch * t.batch_size / step_seconds,
        "steps": epochs * steps_per_epoch,
        "best_step": "best epoch (pythae)",
    }


def run_two_process(args, output_dir: Path) -> dict:
    """The same recipe (same overrides, no time budget or early stopping) on 2 processes x 1 thread."""
    run_dir = output_dir / "two_process"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--dynamo_backend", "no", str(HERE.parent / "training" / "train.py"), args.recipe,
               "--output_dir", str(run_dir), "--set", "training.progress=false"]
    for item in args.set:
        command += ["--set", item]
    # Last, so they win over `--set` exactly as on the one-process side.
    command += ["--set", "training.early_stopping_patience=null", "--set", "training.max_time_minutes=null"]
    start = time.time()
    subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    summary = json.loads((run_dir / "metrics.json").read_text())
    return {"nll": summary["test"]["nll"]["value"], "estimator": summary["test"]["nll"]["estimator"],
            "elbo": summary["test"]["elbo"]["value"], "steps": summary["steps"],
            "images_per_second": summary["train_images_per_second"], "wall_minutes": (time.time() - start) / 60,
            "command": command_line()}


def run_part(part: str, recipe: Recipe, output_dir: Path, fp32_steps: int) -> dict:
    """One side of the comparison, in this process (the driver runs the sides as parallel processes)."""
    if part == "hf_vae":
        return run_hf_vae(recipe, output_dir / "hf_vae")
    if part == "hf_vae_fp32":
        # The same loop in plain fp32 for a like-for-like throughput figure (a short run: speed only).
        fp32 = Recipe.from_dict({**recipe.to_dict(), "training": {
            **recipe.to_dict()["training"], "mixed_precision": "no", "channels_last": False,
            "max_steps": fp32_steps, "output_dir": str(output_dir / "hf_vae_fp32"), "eval_every": 10**9,
            "save_every": 10**9}, "evaluation": {**recipe.to_dict()["evaluation"], "num_importance_samples": 0}})
        summary = json.loads((train(fp32) / "metrics.json").read_text())
        return {"images_per_second": summary["train_images_per_second"], "steps": summary["steps"]}
    if part == "pythae":
        return run_pythae(recipe, load_data(recipe), output_dir / "pythae")
    raise ValueError(f"`--part` must be one of hf_vae, hf_vae_fp32, pythae, all; got {part!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--output_dir", default=str(HERE / "runs" / "vae_mnist5k"))
    parser.add_argument("--results", default=str(HERE / "results" / "vae_mnist5k.md"))
    parser.add_argument("--skip-pythae", action="store_true")
    parser.add_argument("--fp32-steps", type=int, default=300, help="length of the fp32 throughput-only run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each side (they run side by side)")
    parser.add_argument("--part", default="all", help="all (default), throughput (interleaved one-epoch rounds, ratio printed), two_process, "
                        "or render: rewrite the markdown from an earlier run's JSON")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one epoch each side) of --part throughput")
    parser.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    output_dir = Path(args.output_dir)
    recipe = Recipe.from_yaml(args.recipe, [f"training.output_dir={output_dir / 'hf_vae'}", "training.progress=false", *args.set])
    # Both sides run the same budget to the end and keep their best validation checkpoint: no early
    # stopping and no wall-clock budget, which would end them at different points.
    recipe.training.early_stopping_patience = None
    recipe.training.max_time_minutes = None
    if args.part == "throughput":
        run_throughput(args, recipe, output_dir / "throughput")
        return
    if args.part == "two_process":
        (output_dir / "two_process.json").write_text(json.dumps(run_two_process(args, output_dir)))
        args.part = "render"
    if args.part == "render":
        # Re-render the markdown from the JSON results of an earlier run (no training).
        parts = [p for p in ("hf_vae", "pythae", "hf_vae_fp32", "two_process") if (output_dir / f"{p}.json").exists()]
        write_results(args, recipe, output_dir, {p: json.loads((output_dir / f"{p}.json").read_text()) for p in parts})
        return
    if args.part != "all":
        torch.set_num_threads(args.threads)
        Path(args.json).write_text(json.dumps(run_part(args.part, recipe, output_dir, args.fp32_steps)))
        return

    # The sides train at the same time, one process each with the same number of threads, so they
    # share the machine's conditions and the throughput ratio compares like with like.
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    def launch(part):
        command = [sys.executable, __file__, "--part", part, "--json", str(output_dir / f"{part}.json"),
                   "--recipe", args.recipe, "--output_dir", str(output_dir), "--fp32-steps", str(args.fp32_steps),
                   "--threads", str(args.threads)] + [f"--set={item}" for item in args.set]
        return subprocess.Popen(command, env=env)

    processes = {"hf_vae": launch("hf_vae")}
    if not args.skip_pythae:
        processes["pythae"] = launch("pythae")
    if processes["hf_vae"].wait() != 0:
        raise SystemExit("the hf_vae side failed")
    if recipe.training.mixed_precision != "no" or recipe.training.channels_last:
        processes["hf_vae_fp32"] = launch("hf_vae_fp32")
    for part, process in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"the {part} side failed")
    results = {part: json.loads((output_dir / f"{part}.json").read_text()) for part in processes}
    write_results(args, recipe, output_dir, results)


def run_throughput(args, recipe: Recipe, output_dir: Path) -> None:
    """Both sides in THIS process, interleaved: hf_vae's `train()` for one epoch of steps, then pythae's
    trainer for one epoch, `--rounds` times (A, B, A, B, ...), so a load that changes during the run slows
    both alike; each round's images/s counts training steps only. Prints and writes the median ratio."""
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    splits = load_data(recipe)
    steps = len(splits["train"]["pixel_values"]) // recipe.training.batch_size  # one epoch, both sides
    short = recipe.to_dict()
    short["training"].update(max_steps=steps, eval_every=10**9, save_every=10**9, progress=False)
    short["evaluation"]["num_importance_samples"] = 0  # a test ELBO only: no IWAE after each round
    speeds = {"hf_vae": [], "pythae": []}
    for i in range(args.rounds):
        run_dir = output_dir / f"hf_vae_{i}"
        shutil.rmtree(run_dir, ignore_errors=True)  # scratch: an earlier run's checkpoints would stop train()
        short["training"]["output_dir"] = str(run_dir)
        speeds["hf_vae"].append(run_hf_vae(Recipe.from_dict(short), output_dir)["images_per_second"])
        speeds["pythae"].append(run_pythae(Recipe.from_dict(short), splits, output_dir / f"pythae_{i}")["images_per_second"])
        print(f"round {i + 1}: hf_vae {speeds['hf_vae'][-1]:.0f} images/s, pythae {speeds['pythae'][-1]:.0f} images/s")
    ratios = [a / b for a, b in zip(speeds["hf_vae"], speeds["pythae"])]
    ratio = statistics.median(ratios)
    counterpart = pythae_counterpart(recipe, splits)[0]
    # One section per pythae model (VAE for the N(0, I) prior, VAMP for the VampPrior): both stay in the file.
    lines = [
        f"## Training throughput, hf_vae vs pythae's {counterpart}", "",
        f"Command: `{command_line()}`  ",
        f"Machine: {processor()}, {os.cpu_count()} cores, load average {load:.1f} when it started; "
        f"{args.threads} torch thread(s); torch {torch.__version__}  ",
        f"Recipe: `{Path(args.recipe).name}` {' '.join(args.set)}; both sides in one process, interleaved: "
        f"{args.rounds} rounds of one epoch ({steps} steps) of hf_vae's `train()` then one of pythae's trainer; "
        "step time only (no evaluation or checkpoints).", "",
        f"| round | hf_vae images/s | pythae 0.1.2 {counterpart} (fp32) images/s | ratio |",
        "|---|---|---|---|",
        *[f"| {i + 1} | {a:.0f} | {b:.0f} | {a / b:.2f}x |" for i, (a, b) in enumerate(zip(speeds["hf_vae"], speeds["pythae"]))],
        "", f"Median ratio hf_vae / pythae: {ratio:.2f}x (target >= 2.0x: {'met' if ratio >= 2.0 else 'missed'}).",
    ]
    path = Path(args.results).with_name("vae_mnist5k_throughput.md")
    if not path.is_file():
        write_markdown(path, ["# VAE on mnist5k: training throughput, hf_vae vs pythae"])
    write_section(path, f"throughput_{counterpart}", lines)
    print("\n".join(lines))


def write_results(args, recipe: Recipe, output_dir: Path, results: dict) -> None:
    precision = recipe.training.mixed_precision if recipe.training.mixed_precision != "no" else "fp32"
    rows = {f"hf_vae ({precision})": results["hf_vae"]}
    if "pythae" in results:
        model = "VAMP" if recipe.model.config.get("prior") == "vamp" else "VAE"  # `pythae_counterpart`
        rows[f"pythae 0.1.2 {model} (fp32)"] = results["pythae"]
    # The command that trained the models (kept beside their JSON, so a re-render shows it too).
    command_file = output_dir / "command.txt"
    if args.part != "render":
        command_file.write_text(command_line())
    command = command_file.read_text() if command_file.exists() else "(unknown)"
    lines = [
        "# VAE on mnist5k: hf_vae vs pythae",
        "",
        f"Command: `{command}`  ",
        f"Recipe: `{Path(args.recipe).name}` {' '.join(args.set)}  ",
        f"Machine: {processor()}, {os.cpu_count()} cores; each side {args.threads} torch thread(s), "
        f"run side by side; torch {torch.__version__}; speeds depend on what else runs on the machine  ",
        f"Test set: {recipe.data.dataset} test split ({results['hf_vae']['num_examples']} images), static binarization seed {recipe.data.binarize_seed}; "
        f"model selection on the same {recipe.data.validation_size} validation images.",
        "",
        "| library | test NLL (nats) | estimator | test ELBO (nats) | bits/dim | active units | train images/s | steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['nll']:.2f} | {r['estimator']} | {r['elbo']:.2f} | {r['bits_per_dim']:.4f} | "
                     f"{r['active_units']} | {r['images_per_second']:.0f} | {r['steps']} |")
    ours = rows[f"hf_vae ({precision})"]
    fp32_speed = results.get("hf_vae_fp32", {}).get("images_per_second")
    # The targets, stated against this run's figures.
    targets = [f"test NLL <= 90 nats: {'met' if ours['nll'] <= 90 else 'missed'} ({ours['nll']:.2f})"]
    if "pythae" in results:
        pythae = results["pythae"]
        ratio = ours["images_per_second"] / pythae["images_per_second"]
        lines += ["", f"Throughput ratio hf_vae / pythae, measured side by side over the whole runs: "
                      f"{ratio:.2f}x (pythae's mixed precision is CUDA-only, "
                      f"so it trains in fp32 on a CPU); NLL difference hf_vae - pythae: {ours['nll'] - pythae['nll']:+.2f} nats."]
        targets += [f"lower NLL than pythae: {'met' if ours['nll'] < pythae['nll'] else 'missed'}",
                    f"throughput >= 1.3x pythae: {'met' if ratio >= 1.3 else 'missed'} ({ratio:.2f}x)"]
    if "two_process" in results:
        gap = abs(results["two_process"]["nll"] - ours["nll"])
        targets.append(f"2 processes within 1 nat of 1 process: {'met' if gap <= 1 else 'missed'} ({gap:.2f})")
    lines += ["", "Targets: " + "; ".join(targets) + "."]
    if fp32_speed is not None:
        lines += ["", f"hf_vae in plain fp32 (same loop, {args.fp32_steps} steps, throughput only): {fp32_speed:.0f} images/s. "
                      "It runs after the hf_vae side, under whatever load the machine then has, so it is not comparable "
                      "with the side-by-side figures above."]
    if "two_process" in results:
        two = results["two_process"]
        lines += ["", "## Two processes", "",
                  f"Command: `{two['command']}`  ",
                  "The same recipe under `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo, `split_batches`: the same global "
                  "batch of " + str(recipe.training.batch_size) + " split over the processes), one torch thread per process.",
                  "",
                  "| run | test NLL (nats) | estimator | test ELBO (nats) | steps | train images/s |",
                  "|---|---|---|---|---|---|",
                  f"| 1 process (the hf_vae row above) | {ours['nll']:.2f} | {ours['estimator']} | {ours['elbo']:.2f} | {ours['steps']} | {ours['images_per_second']:.0f} |",
                  f"| 2 processes | {two['nll']:.2f} | {two['estimator']} | {two['elbo']:.2f} | {two['steps']} | {two['images_per_second']:.0f} |",
                  "", f"Difference 2 - 1 processes: {two['nll'] - ours['nll']:+.2f} nats (target: within 1 nat)."]
    write_markdown(args.results, lines)


if __name__ == "__main__":
    main()
