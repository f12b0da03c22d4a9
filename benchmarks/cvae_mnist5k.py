"""Conditional VAE on mnist5k: likelihood and conditional fidelity, measured in one run.

1. The reference classifier (`hf_vae.reference_classifier`): a small CNN trained once with a fixed seed
   on the mnist5k train split (grey and randomly binarized images, small shifts) and saved to
   `benchmarks/reference_classifier/` (model.safetensors + config.json with its test accuracy). An
   existing classifier there is reused unless `--retrain-classifier`.
2. The CVAE recipe `hf_vae/recipes/cvae_mnist5k.yaml`, trained by the one training loop (best
   validation checkpoint kept), scored on the statically binarized mnist5k test split: conditional ELBO
   and the importance-weighted estimate of -log p(x|y) with k samples (`--k`).
3. Conditional fidelity: N samples per digit (`--num-per-label`), z ~ N(0, I) decoded for the requested
   digit, at each classifier-free guidance scale (`--guidance-scales`; 1 = no guidance), both as the
   decoder's mean image and as binary pixels drawn from it; the fraction the reference classifier calls
   the requested digit.

    pip install -e .[bench]
    OMP_NUM_THREADS=1 python benchmarks/cvae_mnist5k.py     # writes benchmarks/results/cvae_mnist5k.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from report import command_line, machine, write_markdown

import hf_vae  # noqa: F401  (registers the families with AutoModel)
from hf_vae.evaluation import evaluate
from hf_vae.fidelity import conditional_fidelity
from hf_vae.reference_classifier import load_reference_classifier, train_reference_classifier
from hf_vae.training import Recipe, load_data, train

HERE = Path(__file__).resolve().parent
RECIPE = HERE.parent / "hf_vae" / "recipes" / "cvae_mnist5k.yaml"
CLASSIFIER_DIR = HERE / "reference_classifier"


def get_classifier(directory: Path, retrain: bool, seed: int) -> tuple[torch.nn.Module, dict, str]:
    if directory.exists() and not retrain:
        classifier = load_reference_classifier(directory)
        return classifier, classifier.metadata, f"loaded from `{directory.relative_to(HERE.parent)}`"
    start = time.time()
    classifier, report = train_reference_classifier("mnist5k", seed=seed, log=print)
    classifier.save_pretrained(directory)
    return classifier, report, f"trained in {time.time() - start:.0f} s, saved to `{directory.relative_to(HERE.parent)}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--output_dir", default=str(HERE / "runs" / "cvae_mnist5k"))
    parser.add_argument("--results", default=str(HERE / "results" / "cvae_mnist5k.md"))
    parser.add_argument("--k", type=int, default=100, help="importance samples of the test NLL")
    parser.add_argument("--num-per-label", type=int, default=100)
    parser.add_argument("--guidance-scales", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--classifier-dir", default=str(CLASSIFIER_DIR))
    parser.add_argument("--retrain-classifier", action="store_true")
    parser.add_argument("--classifier-seed", type=int, default=0)
    parser.add_argument("--skip-training", action="store_true", help="score the model already in --output_dir")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    classifier, report, provenance = get_classifier(Path(args.classifier_dir), args.retrain_classifier, args.classifier_seed)
    print(f"reference classifier: test accuracy {report['test_accuracy']:.4f} ({provenance})")

    output_dir = Path(args.output_dir)
    recipe = Recipe.from_yaml(args.recipe, [f"training.output_dir={output_dir}", "training.progress=false",
                                            f"evaluation.num_importance_samples={args.k}", *args.set])
    if not args.skip_training:
        shutil.rmtree(output_dir, ignore_errors=True)  # a fresh run, not a resume of an old one
        train(recipe)
    summary = json.loads((output_dir / "metrics.json").read_text())
    test = summary["test"]

    from transformers import AutoModel

    model = AutoModel.from_pretrained(output_dir).eval()
    splits = load_data(recipe)
    seed = recipe.training.seed
    start = time.time()
    metrics = evaluate(model, splits["test"], num_importance_samples=0, seed=seed, progress=False,
                       classifier=classifier, num_per_label=args.num_per_label, guidance_scale=args.guidance_scales)
    fidelity_rows = []
    for scale in args.guidance_scales:
        name = "conditional_fidelity" if scale == 1 else f"conditional_fidelity_guided_{scale:g}"
        binary = conditional_fidelity(model, classifier, num_per_label=args.num_per_label, guidance_scale=scale,
                                      generator=torch.Generator().manual_seed(seed), output="sample")
        fidelity_rows.append((scale, metrics[name].value, binary.value, metrics[name + "_per_label"].value))
    fidelity_seconds = time.time() - start

    command = command_line()
    lines = [
        "# Conditional VAE on mnist5k: likelihood and conditional fidelity",
        "",
        f"Command: `OMP_NUM_THREADS=1 {command}`  ",
        f"Recipe: `{Path(args.recipe).name}` {' '.join(args.set)}  ",
        f"Machine: {machine()}, "
        f"shared with other jobs (times are indicative)  ",
        f"Test set: mnist5k test split (500 images), static binarization seed {recipe.data.binarize_seed}.",
        "",
        "## Reference classifier",
        "",
        f"`hf_vae.reference_classifier.ReferenceClassifier`, {provenance}: trained on the {report['num_train']} "
        f"mnist5k train images for {report['epochs']} epochs, seed {report['seed']} ({report['augmentation']}).",
        "",
        "| test accuracy (grey) | test accuracy (binarized) | test images |",
        "|---|---|---|",
        f"| {report['test_accuracy']:.4f} | {report['test_accuracy_binarized']:.4f} | {report['num_test']} |",
        "",
        "## Likelihood",
        "",
        "| test NLL -log p(x\\|y) (nats) | estimator | bits/dim | test ELBO (nats) | KL (nats) | active units | steps (best) | train time |",
        "|---|---|---|---|---|---|---|---|",
        f"| {test['nll']['value']:.2f} | {test['nll']['estimator']} | {test['bits_per_dim']['value']:.4f} | "
        f"{test['elbo']['value']:.2f} | {test['kl']['value']:.2f} | {test['active_units']['value']} of {test['latent_dim']['value']} | "
        f"{summary['steps']} ({summary['best_step']}) | {summary['train_seconds'] / 60:.1f} min |",
        "",
        "## Conditional fidelity",
        "",
        f"{args.num_per_label} samples per digit (z ~ N(0, I), {10 * args.num_per_label} per row), fraction the reference "
        "classifier assigns to the requested digit. Guidance: decoder logits uncond + s (cond - uncond); s = 1 is "
        f"plain conditional decoding. Target: >= 0.90. Sampling + classification took {fidelity_seconds:.0f} s for all rows.",
        "",
        "| guidance scale s | fidelity (mean image) | fidelity (binary draw) | per digit 0-9 (mean image) |",
        "|---|---|---|---|",
    ]
    for scale, mean_value, binary_value, per_label in fidelity_rows:
        per = " ".join(f"{v:.2f}" for v in per_label)
        lines.append(f"| {scale:g}{' (no guidance)' if scale == 1 else ''} | {mean_value:.3f} | {binary_value:.3f} | {per} |")
    write_markdown(args.results, lines)


if __name__ == "__main__":
    main()
