"""`hf-vae` command line: train a recipe, then evaluate, score, sample, reconstruct, interpolate or encode.

    hf-vae recipes                                   # the shipped recipes (and what each needs first)
    hf-vae train vae_mnist5k [--resume] [--set training.max_steps=200]   # a recipe by name, or a YAML path
    hf-vae evaluate RUN_DIR --dataset mnist5k --split test --binarize static --num-importance-samples 1000
    hf-vae score RUN_DIR IMAGES...|--dataset NAME [--output scores.csv]
    hf-vae score RUN_DIR --reference mnist5k:test --outliers FOLDER     # anomaly AUROC and a threshold
    hf-vae sample RUN_DIR --num-samples 64 --output samples.png [--labels 3 cat]
    hf-vae reconstruct RUN_DIR IMAGES...|--dataset NAME --output grid.png
    hf-vae interpolate RUN_DIR A B --steps 8 --method linear|slerp --output strip.png [--labels 3 8]
    hf-vae encode RUN_DIR IMAGES...|--dataset NAME --output z.safetensors
    hf-vae card RUN_DIR [--repo-id USER/NAME] [--output README.md]
    hf-vae push RUN_DIR USER/NAME [--revision BRANCH] [--private] [--commit-message MSG]
    hf-vae push-dataset mnist5k USER/NAME [--revision BRANCH] [--private]
    hf-vae env                                       # versions and devices, for bug reports
    hf-vae demo RUN_DIR_OR_REPO_ID [--port 7860] [--host 0.0.0.0] [--space USER/SPACE]

The verbs live in `hf_vae/commands/`, one module per group.
"""

from __future__ import annotations

import argparse
import sys

from .commands import register_all


def build_parser() -> argparse.ArgumentParser:
    """The `hf-vae` parser with every verb of `hf_vae.commands`."""
    parser = argparse.ArgumentParser(prog="hf-vae", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_all(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one verb; a `ValueError` (a bad input, or a verb the model's family cannot do) ends with one
    `hf-vae VERB: error: ...` line on stderr and exit status 2, never a traceback."""
    import hf_vae  # noqa: F401  (registers the families)

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as error:
        # One line: a message holding a tensor or a YAML excerpt is folded.
        print(f"hf-vae {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
