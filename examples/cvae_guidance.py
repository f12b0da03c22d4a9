"""Conditional generation with classifier-free guidance: a CVAE asked for each class, at several
guidance scales.

A CVAE decodes p(x | z, y). Trained with label dropout (10% of the labels replaced by a null label),
the same network also decodes p(x | z) without a class, and guidance mixes the two:
logits = uncond + s * (cond - uncond). s = 0 ignores the class, s = 1 is the plain conditional model,
s > 1 pushes the image further towards the class (sharper, less varied). Each row of the grid asks for
one class (by its name, `model.config.label_names`), each column is one guidance scale, and the whole
row decodes the same z, so only the guidance changes along it.

With the full-size model the benchmarks' reference digit classifier (benchmarks/reference_classifier)
also judges 100 samples per class and scale: the fraction classified as the class asked for.

    python examples/cvae_guidance.py                  # mnist5k (the committed output)
    python examples/cvae_guidance.py --tiny           # 8x8 digits, seconds (CI)

Writes to --output-dir: `cvae_guidance.png` (rows = classes, columns = guidance scales) and, full size,
`cvae_guidance.md` (the classifier's accuracy per guidance scale).
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
from hf_vae.images import image_grid  # noqa: E402

CLASSIFIER = _common.REPO / "benchmarks" / "reference_classifier"


def main(argv=None) -> dict:
    args = _common.parse_args(__doc__, "examples/outputs/cvae_guidance", argv, lambda p: p.add_argument(
        "--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0], help="guidance scales (columns)"))
    recipe = _common.make_recipe("cvae", args, "digits_cvae" if args.tiny else "mnist5k_cvae", [],
                                 full_steps=1000, tiny_steps=60)
    model = AutoModel.from_pretrained(_common.train_or_reuse(recipe)).eval()
    names = model.config.label_names or [str(i) for i in range(model.config.num_classes)]

    # Row = class, column = guidance scale; every cell of a row decodes the same latent z.
    latents = torch.randn(len(names), model.config.latent_dim, generator=torch.Generator().manual_seed(args.seed))
    cells = [torch.cat([model.decode(latents[i][None], labels=model.class_ids(name, 1), guidance_scale=s).sample
                        for s in args.scales])
             for i, name in enumerate(names)]  # the class asked for by its name
    plot_grid(torch.cat(cells), names, args.scales, args.output_dir / "cvae_guidance.png")

    accuracy = {}
    if not args.tiny and (CLASSIFIER / "model.safetensors").is_file():
        accuracy = classifier_accuracy(model, names, args.scales, args.seed)
        _common.write_table(
            args.output_dir / "cvae_guidance.md", ["guidance scale", "samples classified as the class asked for"],
            [[s, f"{a:.1%}"] for s, a in accuracy.items()],
            note=f"100 samples per class ({100 * len(names)} per scale), z ~ N(0, I), mean of p(x|z, y); judged by "
                 f"benchmarks/reference_classifier.",
        )
        (args.output_dir / "cvae_guidance.json").write_text(json.dumps(accuracy, indent=2))
    print(f"wrote {args.output_dir}/cvae_guidance.png")
    return {"classes": names, "accuracy": accuracy}


def classifier_accuracy(model, names: list[str], scales: list[float], seed: int, per_class: int = 100) -> dict[float, float]:
    """Fraction of `per_class` samples per class that the reference classifier assigns to the class asked for."""
    from hf_vae.reference_classifier import load_reference_classifier

    classifier = load_reference_classifier(CLASSIFIER)
    labels = torch.arange(len(names)).repeat_interleave(per_class)
    accuracy = {}
    for s in scales:
        images = model.sample(len(labels), labels=labels, guidance_scale=s, generator=torch.Generator().manual_seed(seed))
        accuracy[s] = float((classifier.predict(images) == labels).float().mean())
    return accuracy


def plot_grid(images: torch.Tensor, names: list[str], scales: list[float], path: Path) -> None:
    """The (classes x scales) images as one grid, with the class names and the scales as axis labels."""
    grid = image_grid(images, nrow=len(scales), padding=2)
    fig, axis = plt.subplots(figsize=(1.0 + 0.8 * len(scales), 0.6 + 0.8 * len(names)))
    axis.imshow(grid, cmap="gray", vmin=0, vmax=255)
    cell_w, cell_h = grid.width / len(scales), grid.height / len(names)
    axis.set_xticks([(j + 0.5) * cell_w for j in range(len(scales))], [f"s = {s:g}" for s in scales])
    axis.set_yticks([(i + 0.5) * cell_h for i in range(len(names))], [f"class {n!r}" for n in names])
    axis.tick_params(length=0)
    axis.set_xlabel("guidance scale")
    axis.xaxis.set_label_position("top")
    axis.xaxis.tick_top()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
