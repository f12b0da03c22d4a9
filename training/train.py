"""Run a recipe under Accelerate: `accelerate launch training/train.py vae_mnist5k`.

Same loop and flags as `hf-vae train` (`--resume`, `--set section.key=value`, `--push_to_hub`, ...).
"""

import sys

from hf_vae.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
