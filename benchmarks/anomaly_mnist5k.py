"""Anomaly detection on mnist5k: how well the default VAE and the gated PixelCNN tell the mnist5k test
digits from two clearly different image sets, by their per-image NLL (`hf_vae.anomaly.anomaly_detection`:
AUROC and the Youden threshold).

Reference: the mnist5k test split (500 digits), statically binarized with seed 0 (the recipes' test set).
Outlier sets, each as many images as the reference, binary 28x28:
- `inverted`: the same test digits inverted (1 - x): white background, black strokes.
- `digits8x8`: scikit-learn's 8x8 digits (the embedded `digits`, test split) upscaled to 28x28 (PIL
  bilinear, the image processor's resize) and statically binarized with seed 0: thick, blocky digits.

Models: the VAE at `--vae` (default `runs/vae_mnist5k`, the main job's output; trained with the
`vae_mnist5k` recipe when missing), scored by IWAE with k = `--num-importance-samples`; the PixelCNN at
`--pixelcnn` (trained with the `pixelcnn_mnist5k` recipe, capped at `--pixelcnn-max-steps`, when missing),
scored exactly. The sets are also written as PNG folders, so `hf-vae score MODEL --reference mnist5k:test
--outliers FOLDER --binarize static` reproduces a row.

    OMP_NUM_THREADS=1 python benchmarks/anomaly_mnist5k.py --vae runs/vae_mnist5k --pixelcnn-max-steps 800
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from report import command_line, machine, write_markdown

import hf_vae  # noqa: F401  (registers the families with AutoModel)
from hf_vae import data
from hf_vae.anomaly import anomaly_detection
from hf_vae.commands.evaluation import score_images
from hf_vae.hub import load_model
from hf_vae.recipes import recipe_info
from hf_vae.training import Recipe, train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SETS = {
    "inverted": "the mnist5k test digits inverted (1 - x)",
    "digits8x8": "scikit-learn 8x8 digits (test split) upscaled to 28x28 and binarized (static, seed 0)",
}


def relative(path) -> str:
    path = Path(path).absolute()  # a symlinked run folder keeps the name it was given
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def image_sets(max_images: int) -> dict[str, torch.Tensor]:
    """The reference and the outlier sets, (N, 1, 28, 28) binary float32, N = min(max_images, 500)."""
    def split(name: str) -> torch.Tensor:
        view = data.load_split(name, "test", image_size=28, num_channels=1, binarize="static", seed=0)
        return data.load_tensors(view)["pixel_values"][:max_images]

    reference = split("mnist5k")
    count = len(reference)
    digits = split("digits")
    if len(digits) < count:  # sklearn's test split has fewer images than mnist5k's: cycle through it
        digits = digits[torch.arange(count) % len(digits)]
    return {"reference": reference, "inverted": 1 - reference, "digits8x8": digits[:count]}


def save_pngs(images: torch.Tensor, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(np.round(255 * image[0].numpy()).astype(np.uint8), mode="L").save(folder / f"{i:03d}.png")


def trained(recipe_name: str, folder: Path, overrides: list[str]) -> Path:
    """`folder` if it holds a trained model, else a fresh run of the recipe there."""
    if not (folder / "config.json").is_file():
        recipe = Recipe.from_yaml(recipe_info(recipe_name).path,
                                  [f"training.output_dir={folder}", "training.progress=false", *overrides])
        train(recipe)
    return folder


def measure(name: str, folder: Path, sets: dict, args) -> dict:
    model = load_model(str(folder)).eval()
    start = time.perf_counter()
    scores, estimator = {}, None
    for set_name, images in sets.items():
        scores[set_name], estimator, _ = score_images(model, images, num_importance_samples=args.num_importance_samples,
                                                      seed=0, batch_size=100)
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    return {
        "model": name, "folder": relative(folder), "estimator": estimator,
        "score_seconds": round(time.perf_counter() - start, 1),
        "mean_nll": {k: float(v.mean()) for k, v in scores.items()},
        "anomaly": {k: anomaly_detection(scores["reference"], scores[k]).to_dict() for k in SETS},
        "steps": metrics.get("steps"), "best_step": metrics.get("best_step"),
        "train_minutes": None if metrics.get("train_seconds") is None else round(metrics["train_seconds"] / 60, 1),
        "recipe_test_nll": metrics.get("test", {}).get("nll", {}).get("value"),
        "recipe_test_estimator": metrics.get("test", {}).get("nll", {}).get("estimator"),
    }


def pixelcnn_note(result: dict, args) -> str:
    """How the PixelCNN row's model was trained, from its metrics.json (steps, time cap, best checkpoint)."""
    if result["steps"] is None:
        return f"The PixelCNN in `{result['folder']}` has no metrics.json (not trained by this script)."
    capped = (f", stopped by the {args.pixelcnn_max_minutes:g}-minute cap at step {result['steps']}"
              if result["steps"] < args.pixelcnn_max_steps else "")
    return (f"The PixelCNN is a shortened run of `pixelcnn_mnist5k.yaml` (`--pixelcnn-max-steps {args.pixelcnn_max_steps}` "
            f"of the recipe's 3200 steps, the cosine schedule compressed to that length{capped}; best validation "
            f"checkpoint at step {result['best_step']}, kept), trained in {result['train_minutes']} min on a shared "
            "machine, so its test NLL is above the full recipe's 87.09 nats in `priors_mnist5k.md`. Its mean "
            "reference NLL above is the exact test NLL of the same 500 images.")


def markdown(results: list[dict], args, count: int) -> list[str]:
    threads = os.environ.get("OMP_NUM_THREADS")
    prefix = f"OMP_NUM_THREADS={threads} python" if threads else "python"
    lines = [
        "# Anomaly detection on mnist5k: VAE and gated PixelCNN",
        "",
        "Written by `benchmarks/anomaly_mnist5k.py`. Each model scores every image by its negative log-likelihood "
        "(nats; higher = more unusual); `hf_vae.anomaly.anomaly_detection` gives the AUROC of telling an outlier set "
        "from the reference set and the threshold of Youden's J (flag `score >= threshold`).",
        "",
        f"Command: `{command_line(prefix)}`  ",
        f"Machine: {machine()}, shared with other jobs  ",
        f"Reference: mnist5k test split, {count} images, static binarization seed 0 (the recipes' test set).  ",
        "Outlier sets (" + f"{count} images each): "
        + "; ".join(f"`{name}`, {text}" for name, text in SETS.items()) + ".",
        "",
        "| model | outliers | AUROC | threshold (nats) | outliers flagged | reference flagged | mean NLL reference | mean NLL outliers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for set_name in SETS:
            a = r["anomaly"][set_name]
            lines.append(f"| {r['model']} | `{set_name}` | {a['auroc']:.4f} | {a['threshold']:.1f} | "
                         f"{100 * a['true_positive_rate']:.1f}% | {100 * a['false_positive_rate']:.1f}% | "
                         f"{r['mean_nll']['reference']:.2f} | {r['mean_nll'][set_name]:.2f} |")
    lines += ["", "| model | folder | score estimator | training steps (best) | training time | test NLL in its metrics.json |",
              "|---|---|---|---|---|---|"]
    for r in results:
        test = "" if r["recipe_test_nll"] is None else f"{r['recipe_test_nll']:.2f} nats ({r['recipe_test_estimator']})"
        minutes = "" if r["train_minutes"] is None else f"{r['train_minutes']} min"
        lines.append(f"| {r['model']} | `{r['folder']}` | {r['estimator']} | {r['steps']} ({r['best_step']}) | {minutes} | {test} |")
    lines += [
        "",
        pixelcnn_note(results[-1], args),
        "",
        "The same numbers from the command line (one row each; the PNG folders are written by this script):",
        "",
        "```bash",
    ]
    for r in results:
        for set_name in SETS:
            k = f" --num-importance-samples {args.num_importance_samples}" if "IWAE" in (r["estimator"] or "") else ""
            lines.append(f"hf-vae score {r['folder']} --binarize static --reference mnist5k:test "
                         f"--outliers {relative(args.output_dir / 'sets' / set_name)}{k}")
    lines += ["```"]
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", type=Path, default=ROOT / "runs" / "vae_mnist5k",
                        help="a trained VAE folder (trained with the vae_mnist5k recipe when missing)")
    parser.add_argument("--pixelcnn", type=Path, default=None,
                        help="a trained PixelCNN folder (default OUTPUT_DIR/pixelcnn, trained when missing)")
    parser.add_argument("--pixelcnn-max-steps", type=int, default=800, help="steps of the PixelCNN run when it is trained")
    parser.add_argument("--pixelcnn-max-minutes", type=float, default=20.0)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a value of both recipes when they are trained (tiny runs)")
    parser.add_argument("--num-importance-samples", type=int, default=100, help="the VAE's IWAE k")
    parser.add_argument("--max-images", type=int, default=500)
    parser.add_argument("--output_dir", "--output-dir", type=Path, default=HERE / "runs" / "anomaly_mnist5k")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "anomaly_mnist5k.md")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    sets = image_sets(args.max_images)
    for set_name in SETS:
        save_pngs(sets[set_name], args.output_dir / "sets" / set_name)
    vae = trained("vae_mnist5k", args.vae, args.set)
    pixelcnn = trained("pixelcnn_mnist5k", args.pixelcnn or args.output_dir / "pixelcnn",
                       # validated and saved every 200 steps, so a run the time cap stops still has a best checkpoint
                       [f"training.max_steps={args.pixelcnn_max_steps}", f"training.max_time_minutes={args.pixelcnn_max_minutes}",
                        "training.eval_every=200", "training.save_every=200", *args.set])
    results = [measure("VAE", vae, sets, args), measure("Gated PixelCNN", pixelcnn, sets, args)]
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(args.results, markdown(results, args, len(sets["reference"])))
    return results


if __name__ == "__main__":
    main()
