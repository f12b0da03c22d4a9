"""VQ-VAE + prior: two-stage generation, both stages trained here, one after the other.

Stage 1, a VQ-VAE, turns each image into a small grid of discrete codes (7x7 codes from a 512-entry
codebook for mnist5k) and back. It has no prior to sample from: a code grid drawn uniformly decodes to
noise. Stage 2, a transformer prior (GPT-style, class-conditional), learns p(codes | class) on the code
grids of the training images, which the trainer computes once with the stage-1 model
(`model.config.vqvae_name_or_path` points at it). Sampling draws a code grid from the prior and decodes
it with the VQ-VAE: `hf_vae.generation.generate_images(prior, n, vqvae=vqvae, labels=...)`.

    python examples/vqvae_two_stage.py                # mnist5k (the committed output)
    python examples/vqvae_two_stage.py --tiny         # 8x8 digits (4x4 codes, 32-entry codebook), seconds (CI)

Writes to --output-dir: `samples.png` (one row per class, 8 samples each), `reconstructions.png`
(test digits above their VQ-VAE reconstructions) and `vqvae_two_stage.md` (both stages' test metrics).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import hf_vae  # noqa: E402,F401  (registers the families with AutoModel)
from hf_vae.generation import generate_images  # noqa: E402
from hf_vae.images import image_grid  # noqa: E402
from hf_vae.training import Recipe  # noqa: E402

# The tiny prior: the mnist5k prior recipe shrunk to the 8x8 digits' code grids.
TINY_PRIOR = ["data.dataset=digits", "data.validation_size=100", "training.batch_size=32", "model.config.n_layer=1",
              "model.config.n_head=2", "model.config.n_embd=32", "model.config.dropout=0.0", "evaluation.batch_size=100"]
# The test metrics in the table: the VQ-VAE's reconstruction and codebook use, the prior's exact likelihood.
SHOWN = ("reconstruction_loss", "psnr", "perplexity", "codes_used", "dead_codes", "nll", "bits_per_token")


def main(argv=None) -> dict:
    def add_arguments(parser):
        parser.add_argument("--prior-steps", type=int, default=None, help="training steps of the prior (default 500, --tiny 60)")

    args = _common.parse_args(__doc__, "examples/outputs/vqvae_two_stage", argv, add_arguments)
    size = "digits" if args.tiny else "mnist5k"

    # Stage 1: the VQ-VAE, from its recipe.
    vqvae_recipe = _common.make_recipe("vqvae", args, f"{size}_vqvae", [], full_steps=500, tiny_steps=60)
    vqvae_dir = _common.train_or_reuse(vqvae_recipe)
    vqvae = AutoModel.from_pretrained(vqvae_dir).eval()

    # Stage 2: the transformer prior over that VQ-VAE's codes (its vocabulary and grid are the VQ-VAE's).
    prior_steps = args.prior_steps or (60 if args.tiny else 500)
    prior_recipe = Recipe.from_yaml(_common.recipe_file("transformer_prior_vqvae_mnist5k"), [
        *_common.QUIET, *(TINY_PRIOR if args.tiny else []),
        f"model.config.vqvae_name_or_path={vqvae_dir}", f"model.config.vocab_size={vqvae.config.codebook_size}",
        f"model.config.grid_size={vqvae.code_grid_size}", f"training.max_steps={prior_steps}",
        f"training.eval_every={prior_steps}", f"training.save_every={prior_steps}", f"training.seed={args.seed}",
        f"training.output_dir={args.runs_dir / f'{size}_transformer_prior'}",
    ])
    prior = AutoModel.from_pretrained(_common.train_or_reuse(prior_recipe)).eval()

    # Two-stage sampling: 8 code grids per class from the prior, decoded by the VQ-VAE; row = class.
    names = prior.config.label_names or [str(i) for i in range(prior.config.num_classes)]
    labels = torch.arange(len(names)).repeat_interleave(8)
    samples = generate_images(prior, len(labels), vqvae=vqvae, labels=labels,
                              generator=torch.Generator().manual_seed(args.seed), progress=False)
    image_grid(samples, nrow=8, scale=3).save(args.output_dir / "samples.png")

    test_images, _ = _common.batch_of(_common.test_split(args), 16)
    reconstructions = vqvae.reconstruct(test_images)
    image_grid(torch.cat([test_images, reconstructions]), nrow=16, scale=3).save(args.output_dir / "reconstructions.png")

    rows = []
    for stage, run_dir in (("1: VQ-VAE", vqvae_dir), ("2: transformer prior", Path(prior_recipe.training.output_dir))):
        for name, metric in json.loads((run_dir / "metrics.json").read_text())["test"].items():
            if name in SHOWN:
                rows.append([stage, name, float(metric["value"]), metric["unit"], metric["estimator"]])
    _common.write_table(args.output_dir / "vqvae_two_stage.md", ["stage", "test metric", "value", "unit", "estimator"], rows,
                        note=f"VQ-VAE: {vqvae_recipe.training.max_steps} steps; prior: {prior_steps} steps; test split, "
                             f"static binarization. The VQ-VAE's code grid is {vqvae.code_grid_size}x{vqvae.code_grid_size} "
                             f"from {vqvae.config.codebook_size} codes.")
    print(f"wrote {args.output_dir}/samples.png, reconstructions.png, vqvae_two_stage.md")
    return {"rows": rows, "num_samples": len(samples)}


if __name__ == "__main__":
    main()
