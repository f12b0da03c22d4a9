"""`hf-vae evaluate` (a dataset split's metrics) and `hf-vae score` (per-image NLL, and anomaly detection).

    hf-vae score RUN_DIR digit.png more_digits/ [--output scores.csv]
    hf-vae score RUN_DIR --dataset mnist5k --split test --max-images 100
    hf-vae score RUN_DIR --reference mnist5k:test --outliers inverted_digits/   # AUROC and a threshold
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..validation import check_int
from .common import (add_image_inputs, check_output, check_suffix, image_processor, image_set, input_labels, load,
                     read_images, require)


def _evaluate(args) -> None:
    import torch

    from .. import data
    from ..evaluation import evaluate
    from ..families import check_decoder_precision
    from ..hub import load_model

    check_output(args.output)
    model = load_model(args.model)  # strict, safetensors only; a mistyped path fails at once
    config = model.config
    # An image model reads images of its own size and channels; a pixel prior reads the dataset's own images.
    images = type(model).input_kind == "images"
    view = data.load_split(args.dataset, args.split, binarize=args.binarize, seed=args.seed, streaming=args.streaming,
                           revision=args.revision, config_name=args.config_name,
                           image_size=config.image_size if images else None, num_channels=config.num_channels if images else None)
    check_decoder_precision("--decoder-precision", args.decoder_precision, config.model_type)
    torch.manual_seed(args.seed)
    metrics = evaluate(model, view, batch_size=args.batch_size, num_importance_samples=args.num_importance_samples,
                       seed=args.seed, max_examples=args.max_examples, decoder_precision=args.decoder_precision)
    for metric in metrics.values():
        if not isinstance(metric.value, list):
            print(metric)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({name: m.to_dict() for name, m in metrics.items()}, f, indent=2)


def score_images(model, pixel_values, labels=None, *, vqvae=None, num_importance_samples: int = 100, seed: int = 0,
                 batch_size: int = 100):
    """(scores (N,) in nats, estimator, dims per image or None): `model.score` batch by batch, with only the
    options its family takes (`score_options`), the labels of a conditional model and a code prior's VQ-VAE."""
    import torch

    accepted = type(model).score_options
    options = {}
    if "num_importance_samples" in accepted:
        options["num_importance_samples"] = num_importance_samples
    if "generator" in accepted:
        options["generator"] = torch.Generator().manual_seed(seed)
    if vqvae is not None:
        options["vqvae"] = vqvae
    scores, scored = [], None
    for start in range(0, len(pixel_values), batch_size):
        batch_labels = None if labels is None else {"labels": labels[start:start + batch_size]}
        scored = model.score(pixel_values[start:start + batch_size], **(batch_labels or {}), **options)
        scores.append(scored.score.detach().float().cpu())
    return torch.cat(scores), scored.estimator, scored.num_dims


def _rows(names, scores, num_dims, group: str | None = None) -> list[dict]:
    from ..distributions import nats_to_bits_per_dim

    rows = []
    for name, value in zip(names, scores.tolist()):
        row = {"image": name, "nll_nats": value,
               "bits_per_dim": None if num_dims is None else float(nats_to_bits_per_dim(value, num_dims))}
        rows.append(row if group is None else {"set": group, **row})
    return rows


def _write(path: str, rows: list[dict], summary: dict) -> None:
    if Path(path).suffix.lower() == ".json":
        Path(path).write_text(json.dumps({**summary, "images": rows}, indent=2) + "\n")
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _score(args) -> None:
    import torch

    from ..anomaly import anomaly_detection

    check_output(args.output)
    check_suffix(args.output, (".csv", ".json"))
    check_int("--batch-size", args.batch_size, minimum=1)
    if (args.reference is None) != (args.outliers is None):
        raise ValueError(f"`--reference` and `--outliers` must be given together, got only "
                         f"{'--reference' if args.outliers is None else '--outliers'}")
    detecting = args.reference is not None
    if detecting and (args.images or args.dataset):
        raise ValueError("`IMAGES` and `--dataset` must be omitted with --reference/--outliers (the two sets are scored), "
                         f"got {'--dataset ' + args.dataset if args.dataset else ' '.join(args.images)}")
    model, vqvae = load(args.model, args.vqvae)
    require(model, "score", "score")
    processor = image_processor(args.model, model, vqvae, args.binarize)
    torch.manual_seed(args.seed)
    options = dict(vqvae=vqvae, num_importance_samples=args.num_importance_samples, seed=args.seed,
                   batch_size=args.batch_size)
    if not detecting:
        images = read_images(processor, paths=args.images, dataset=args.dataset, split=args.split,
                             max_images=args.max_images)
        # A CVAE scores -log p(x|y) given labels, -log p(x) without.
        labels = input_labels(model, args.labels, images, required=False)
        scores, estimator, num_dims = score_images(model, images.pixel_values, labels, **options)
        rows = _rows(images.names, scores, num_dims)
        print(f"# {type(model).__name__} {args.model}: {estimator}")
        print(f"{'image':<40} {'nll_nats':>10} {'bits_per_dim':>12}")
        for row in rows:
            bits = "" if row["bits_per_dim"] is None else f"{row['bits_per_dim']:.4f}"
            print(f"{row['image'][-40:]:<40} {row['nll_nats']:>10.2f} {bits:>12}")
        summary = {"model": args.model, "estimator": estimator}
    else:
        sets = {}
        for group, spec in (("reference", args.reference), ("outliers", args.outliers)):
            images = image_set(processor, spec, f"--{group}", args.max_images)
            labels = images.labels if model.is_conditional else None  # a dataset's own; folders have none
            sets[group] = (spec, images, *score_images(model, images.pixel_values, labels, **options))
        report = anomaly_detection(sets["reference"][2], sets["outliers"][2])
        print(f"# {type(model).__name__} {args.model}: {sets['reference'][3]}")
        for group, (spec, images, scores, _, _) in sets.items():
            print(f"{group}: {spec} ({len(scores)} images), mean {scores.mean().item():.2f} nats")
        print(f"AUROC {report.auroc:.4f}; suggested threshold {report.threshold:.2f} nats (flags "
              f"{100 * report.true_positive_rate:.1f}% of the outliers and {100 * report.false_positive_rate:.1f}% of "
              "the reference images)")
        rows = [row for group, (_, images, scores, _, dims) in sets.items() for row in _rows(images.names, scores, dims, group)]
        summary = {"model": args.model, "estimator": sets["reference"][3], "anomaly": report.to_dict()}
    if args.output:
        _write(args.output, rows, summary)
        print(f"wrote {args.output}")


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a saved model on a dataset split")
    p.add_argument("model", help="run directory, local model folder or Hub repo id")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--split", default="test")
    p.add_argument("--config-name", "--config_name", default=None, help="the dataset's configuration")
    p.add_argument("--revision", default=None, help="the dataset's Hub branch, tag or commit")
    p.add_argument("--streaming", action="store_true", help="stream the split instead of downloading it")
    p.add_argument("--binarize", default="static", choices=["none", "static"])
    p.add_argument("--num-importance-samples", type=int, default=1000)
    p.add_argument("--decoder-precision", default="fp32", choices=["fp32", "bf16"],
                   help="VAE / CVAE: bf16 runs the IWAE decoder passes under bf16 autocast (~2x faster on CPU; "
                        "error in benchmarks/results/iwae_speed.md)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="write the metrics as JSON here")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("score", help="per-image NLL (nats) and bits/dim; with --reference and --outliers, the AUROC")
    p.add_argument("model", help="run directory, local model folder or Hub repo id")
    add_image_inputs(p)
    p.add_argument("--reference", default=None, metavar="SET",
                   help="images like the training data: a folder, or a dataset NAME[:SPLIT] (split test), e.g. mnist5k:test")
    p.add_argument("--outliers", default=None, metavar="SET", help="images to tell apart from them (same forms)")
    p.add_argument("--num-importance-samples", type=int, default=100, help="VAE / CVAE: the IWAE k")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--vqvae", default=None, help="a prior over VQ-VAE codes: its VQ-VAE (default: the one in its config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=None, help="write the per-image scores here (.csv or .json)")
    p.set_defaults(func=_score)
