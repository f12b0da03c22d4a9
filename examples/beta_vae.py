"""β-VAE and posterior collapse: the same VAE trained for several β, and what the weight on the KL term
does to the latent code.

The VAE loss is reconstruction + β * KL(q(z|x) || p(z)). As β grows, the KL term pays the encoder to
make q(z|x) equal to the prior, and latent dimensions stop carrying information about x, one after
another: they "collapse". `hf_vae.evaluation.evaluate` counts the *active units* (dimensions whose
posterior mean varies across the test set, Burda et al. 2016) and reports the KL per dimension, so the
collapse can be read off a table. The ELBO (at β = 1, the bound on log p(x)) gets worse on both sides:
small β spends nats on KL, large β on reconstruction.

    python examples/beta_vae.py                       # mnist5k, 5 values of β (the committed output)
    python examples/beta_vae.py --tiny                # 8x8 digits, seconds (CI)
    python examples/beta_vae.py --betas 0.5 1 4 --steps 500

Writes to --output-dir: `beta_vae.md` (the table), `beta_vae.png` (active units and KL against β) and
`samples.png` (one row of samples per β).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import hf_vae  # noqa: E402,F401  (registers the families with AutoModel)
from hf_vae.evaluation import evaluate  # noqa: E402
from hf_vae.images import image_grid  # noqa: E402


def main(argv=None) -> list[dict]:
    args = _common.parse_args(__doc__, "examples/outputs/beta_vae", argv, lambda p: p.add_argument(
        "--betas", type=float, nargs="+", default=[0.25, 1.0, 4.0, 16.0, 64.0], help="the values of β to train"))
    test = _common.test_split(args)

    rows, samples = [], []
    for beta in args.betas:
        # One run per β: the same recipe, seed and data; only the weight on the KL term differs.
        run_name = f"{'digits' if args.tiny else 'mnist5k'}_vae_beta{beta:g}"
        overrides = [*_common.small_vae_overrides(args), f"model.config.beta={beta}"]
        recipe = _common.make_recipe("vae", args, run_name, overrides, full_steps=500, tiny_steps=60)
        model = AutoModel.from_pretrained(_common.train_or_reuse(recipe)).eval()
        metrics = evaluate(model, test, num_importance_samples=0, progress=False)  # ELBO terms, KL per dim, active units
        rows.append({
            "beta": beta,
            "active_units": metrics["active_units"].value,
            "latent_dim": metrics["latent_dim"].value,
            "elbo": metrics["elbo"].value,  # log p(x|z) - KL, the β = 1 bound whatever β the model trained with
            "reconstruction": metrics["reconstruction_loss"].value,
            "kl": metrics["kl"].value,
            "kl_per_dim": metrics["kl_per_dim"].value,
        })
        samples.append(model.sample(8, generator=torch.Generator().manual_seed(args.seed)))

    _common.write_table(
        args.output_dir / "beta_vae.md",
        ["β", "active units", "test ELBO (nats)", "reconstruction -log p(x|z) (nats)", "KL (nats)"],
        [[r["beta"], f"{r['active_units']} / {r['latent_dim']}", r["elbo"], r["reconstruction"], r["kl"]] for r in rows],
        note=f"Test split ({len(test)} images, static binarization); ELBO with one posterior sample. "
             f"Active unit: Cov_x E[z_u | x] > 0.01.",
    )
    (args.output_dir / "beta_vae.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.output_dir / "beta_vae.png")
    # One row of 8 samples per β (same z for every row), top to bottom in the order of --betas.
    image_grid(torch.cat(samples), nrow=8, scale=2).save(args.output_dir / "samples.png")
    print(f"wrote {args.output_dir}/beta_vae.md, beta_vae.png, samples.png")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Left: active units and KL against β (log axis). Right: KL per latent dimension, sorted, one line per β."""
    betas = [r["beta"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(betas, [r["active_units"] for r in rows], "o-", label="active units")
    left.set_xscale("log")
    left.set_xticks(betas, [f"{b:g}" for b in betas], minor=False)
    left.set_xticks([], minor=True)
    left.set_xlabel("β")
    left.set_ylabel("active units")
    kl_axis = left.twinx()
    kl_axis.plot(betas, [r["kl"] for r in rows], "s--", color="tab:red", label="KL (nats)")
    kl_axis.set_ylabel("test KL (nats)", color="tab:red")
    left.set_title("Posterior collapse as β grows")
    for r in rows:
        right.plot(sorted(r["kl_per_dim"], reverse=True), "o-", markersize=3, label=f"β = {r['beta']:g}")
    right.set_xlabel("latent dimension (sorted by KL)")
    right.set_ylabel("KL per dimension (nats)")
    right.set_yscale("symlog", linthresh=0.01)
    right.legend()
    right.set_title("KL per latent dimension")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
