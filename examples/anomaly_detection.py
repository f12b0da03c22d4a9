"""Anomaly detection with a VAE: score images by -log p(x) and measure how well the score tells test
digits from images unlike the training data (AUROC).

A likelihood model gives every image a score, -log p(x) in nats (`model.score`, importance-weighted
with k samples): an image unlike anything the model was trained on should be improbable, so it scores
high. `hf_vae.anomaly.anomaly_detection(reference_scores, outlier_scores)` returns the AUROC (1: every
outlier scores above every test digit, 0.5: chance) and the threshold of Youden's J with its rates.

Two outlier sets, both clearly not "a handwritten digit as the model saw them":
- inverted: the same test digits with black and white swapped (1 - x);
- the other dataset: scikit-learn's 8x8 digits upscaled to 28x28 (blurry blobs after binarization),
  or, with `--tiny` (whose model is trained on the 8x8 digits), mnist5k digits downscaled to 8x8.

    python examples/anomaly_detection.py              # mnist5k (the committed output)
    python examples/anomaly_detection.py --tiny       # 8x8 digits, seconds (CI)

Writes to --output-dir: `anomaly_detection.md` (AUROC, threshold and rates per outlier set) and
`score_histogram.png` (the score distributions).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from hf_vae.anomaly import anomaly_detection  # noqa: E402
from hf_vae.data import load_split  # noqa: E402


def scores_of(model, images: torch.Tensor, k: int, seed: int, batch_size: int = 100) -> torch.Tensor:
    """-log p(x) per image (nats, IWAE with k samples), in batches, seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([model.score(images[i : i + batch_size], num_importance_samples=k, generator=generator).score
                      for i in range(0, len(images), batch_size)])


def main(argv=None) -> dict:
    args = _common.parse_args(__doc__, "examples/outputs/anomaly_detection", argv, lambda p: p.add_argument(
        "--num-importance-samples", type=int, default=None, help="k of the IWAE score (default 100, --tiny 10)"))
    k = args.num_importance_samples or (10 if args.tiny else 100)
    model = _common.trained_vae(args)
    size = model.config.image_size

    reference, _ = _common.batch_of(_common.test_split(args))
    other_name = "mnist5k" if args.tiny else "digits"
    # The other embedded dataset, resized to the model's input size and binarized like the test digits.
    other, _ = _common.batch_of(load_split(other_name, "test", binarize="static", image_size=size), len(reference))
    outlier_sets = {
        "inverted test digits (1 - x)": 1.0 - reference,
        f"{other_name} test images resized to {size}x{size}": other,
    }

    reference_scores = scores_of(model, reference, k, args.seed)
    rows, results, histograms = [], {}, {"test digits (reference)": reference_scores}
    for name, images in outlier_sets.items():
        outlier_scores = scores_of(model, images, k, args.seed)
        report = anomaly_detection(reference_scores, outlier_scores)
        results[name] = report.to_dict()
        histograms[name] = outlier_scores
        rows.append([name, len(images), report.auroc, report.threshold, report.true_positive_rate, report.false_positive_rate])

    _common.write_table(
        args.output_dir / "anomaly_detection.md",
        ["outlier set", "images", "AUROC", "threshold (nats)", "outliers flagged", "test digits flagged"],
        rows,
        note=f"Reference: the {len(reference)} test digits (static binarization); score = -log p(x), IWAE with k={k}, "
             f"mean {reference_scores.mean():.1f} nats. Threshold: Youden's J; flag an image when its score >= threshold.",
    )
    (args.output_dir / "anomaly_detection.json").write_text(json.dumps(results, indent=2))
    plot(histograms, args.output_dir / "score_histogram.png", k)
    print(f"wrote {args.output_dir}/anomaly_detection.md, score_histogram.png")
    return results


def plot(histograms: dict[str, torch.Tensor], path: Path, k: int) -> None:
    """Overlaid histograms of the scores, on a log axis (outliers can score orders of magnitude higher)."""
    fig, axis = plt.subplots(figsize=(8, 4))
    low = min(float(s.min()) for s in histograms.values())
    high = max(float(s.max()) for s in histograms.values())
    bins = torch.logspace(torch.log10(torch.tensor(max(low, 1e-3))), torch.log10(torch.tensor(high)), 60).numpy()
    for name, scores in histograms.items():
        axis.hist(scores.numpy(), bins=bins, alpha=0.5, label=name)
    axis.set_xscale("log")
    axis.set_xlabel(f"score: -log p(x) in nats (IWAE, k={k})")
    axis.set_ylabel("images")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
