"""Interpolation and latent arithmetic on real digits: what moving through a VAE's latent space looks like.

`model.interpolate(a, b, method=...)` decodes points between the posterior means of two test digits.
Linear interpolation cuts through the middle of the latent ball, where the norm of z is smaller than
that of a typical N(0, I) sample; spherical interpolation ("slerp") keeps the norm, and its middle
images are often the crisper ones.

`model.latent_arithmetic(a, b, c, scale=s)` decodes z_a + s * (z_b - z_c). With b the boldest and c the
thinnest "1" of the test set, z_b - z_c is a "stroke thickness" direction: adding it thickens any digit,
subtracting it thins it, and s = 0 is the plain reconstruction of a.

    python examples/interpolation.py                  # mnist5k (the committed output)
    python examples/interpolation.py --tiny           # 8x8 digits, seconds (CI)

Writes to --output-dir: `interpolation.png` (pairs of strips: linear above slerp), and
`latent_arithmetic.png` (one digit per row, columns s = -1.5 ... 1.5).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from hf_vae.images import image_grid  # noqa: E402

SCALES = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
PAIRS = [(0, 1), (3, 8), (4, 9), (7, 2)]  # (class of a, class of b): the first test digit of each
STEPS = 10


def main(argv=None) -> dict:
    args = _common.parse_args(__doc__, "examples/outputs/interpolation", argv)
    model = _common.trained_vae(args)
    images, labels = _common.batch_of(_common.test_split(args))
    first = {int(y): images[(labels == y).nonzero()[0, 0]] for y in labels.unique()}  # class -> its first test digit

    # Interpolation: for each pair, a linear strip and a slerp strip between the same two endpoints.
    strips = []
    for a, b in PAIRS:
        for method in ("linear", "slerp"):
            strips.append(model.interpolate(first[a], first[b], steps=STEPS, method=method))
    image_grid(torch.cat(strips), nrow=STEPS, scale=3).save(args.output_dir / "interpolation.png")

    # Latent arithmetic: the thickness direction from the boldest and the thinnest "1" (ink = mean pixel).
    ones = images[labels == 1]
    ink = ones.mean(dim=(1, 2, 3))
    bold, thin = ones[ink.argmax()][None], ones[ink.argmin()][None]
    digits = torch.stack([first[y] for y in sorted(first)])  # one digit of each class, (10, C, H, W)
    columns = [model.latent_arithmetic(digits, bold, thin, scale=s) for s in SCALES]  # each (10, C, H, W)
    grid = torch.stack(columns, dim=1).flatten(0, 1)  # row = digit, column = scale
    image_grid(grid, nrow=len(SCALES), scale=3).save(args.output_dir / "latent_arithmetic.png")

    # How much ink each column has on average: the direction should add ink monotonically with the scale.
    ink_by_scale = {s: float(column.mean()) for s, column in zip(SCALES, columns)}
    _common.write_table(args.output_dir / "latent_arithmetic.md", ["scale s", "mean pixel of z_a + s (z_bold - z_thin)"],
                        [[s, ink] for s, ink in ink_by_scale.items()],
                        note="One test digit of each class, decoded (mean of p(x|z)); s = 0 is the reconstruction.")
    print(f"wrote {args.output_dir}/interpolation.png, latent_arithmetic.png, latent_arithmetic.md")
    return {"ink_by_scale": ink_by_scale, "num_strips": len(strips)}


if __name__ == "__main__":
    main()
