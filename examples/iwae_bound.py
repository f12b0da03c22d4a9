"""The importance-weighted bound against the ELBO: how the estimate of log p(x) tightens as k grows.

For a VAE, log p(x) >= L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i|x)], z_i ~ q(z|x) (Burda et al. 2016).
k = 1 is the ELBO; L_k never decreases with k and tends to log p(x). `model.log_likelihood(x,
num_samples=k)` returns one draw of the estimate per image. This example computes it for k = 1, 10,
100, 1000 on the same test digits and reports the mean over images with its standard error (over the
images, so it includes the Monte-Carlo noise of each estimate), and the gain over k = 1 with the
standard error of that paired difference (much smaller: the same images are used for every k).

    python examples/iwae_bound.py                     # mnist5k, 200 test digits (the committed output)
    python examples/iwae_bound.py --tiny              # 8x8 digits, seconds (CI)

Writes to --output-dir: `iwae_bound.md` (the table), `iwae_bound.json` and `iwae_bound.png` (the plot).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def standard_error(values: torch.Tensor) -> float:
    """Standard error of the mean of `values` (N,)."""
    return float(values.std(unbiased=True) / math.sqrt(len(values)))


def main(argv=None) -> list[dict]:
    def add_arguments(parser):
        parser.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100, 1000], help="numbers of importance samples")
        parser.add_argument("--num-images", type=int, default=None, help="test digits to average over (default 200, --tiny 50)")

    args = _common.parse_args(__doc__, "examples/outputs/iwae_bound", argv, add_arguments)
    model = _common.trained_vae(args)
    images, _ = _common.batch_of(_common.test_split(args), args.num_images or (50 if args.tiny else 200))

    estimates = {}  # k -> log p(x) estimate per image (N,)
    for k in args.ks:
        generator = torch.Generator().manual_seed(args.seed)  # the same draws start every k
        estimates[k] = torch.cat([model.log_likelihood(images[i : i + 50], num_samples=k, generator=generator)
                                  for i in range(0, len(images), 50)])
    base = estimates[args.ks[0]]
    rows = [{
        "k": k,
        "log_px": float(estimates[k].mean()),
        "standard_error": standard_error(estimates[k]),
        "gain": float((estimates[k] - base).mean()),
        "gain_standard_error": standard_error(estimates[k] - base) if k != args.ks[0] else 0.0,
    } for k in args.ks]

    _common.write_table(
        args.output_dir / "iwae_bound.md",
        ["k", "mean log p(x) estimate (nats)", "standard error", f"gain over k={args.ks[0]} (nats)", "its standard error"],
        [[r["k"], r["log_px"], r["standard_error"], r["gain"], r["gain_standard_error"]] for r in rows],
        note=f"{len(images)} test digits (static binarization); k = 1 is the ELBO. Standard errors over the images.",
    )
    (args.output_dir / "iwae_bound.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.output_dir / "iwae_bound.png", len(images))
    print(f"wrote {args.output_dir}/iwae_bound.md, iwae_bound.png")
    return rows


def plot(rows: list[dict], path: Path, num_images: int) -> None:
    """The mean estimate against k (log axis), with ±1 standard error of the gain over k = 1 as error bars."""
    fig, axis = plt.subplots(figsize=(6, 4))
    axis.errorbar([r["k"] for r in rows], [r["log_px"] for r in rows], yerr=[r["gain_standard_error"] for r in rows],
                  fmt="o-", capsize=4)
    axis.set_xscale("log")
    axis.set_xlabel("k (importance samples)")
    axis.set_ylabel("mean log p(x) estimate (nats)")
    axis.set_title(f"IWAE bound vs ELBO (k = 1), {num_images} test digits")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
