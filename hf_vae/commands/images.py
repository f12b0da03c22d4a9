"""The verbs that draw, rebuild or encode images: `sample`, `reconstruct`, `interpolate`, `encode`.

    hf-vae sample RUN_DIR --num-samples 64 --output samples.png [--labels 0,1,2]
    hf-vae reconstruct RUN_DIR digits/ --output grid.png          # originals above their reconstructions
    hf-vae interpolate RUN_DIR a.png b.png --steps 8 --method slerp --output strip.png [--labels 3 8]
    hf-vae encode RUN_DIR --dataset mnist5k --output z.safetensors  # posterior means, or VQ-VAE code ids

A verb a family cannot do (read from the model's `capabilities`) ends with one `error:` line.
"""

from __future__ import annotations

import json

from ..validation import check_int
from .common import (add_image_inputs, check_output, check_suffix, cli_labels, cycled_labels, image_processor, input_labels,
                     load, read_images, require)

_NO_PRIOR = ": a VQ-VAE has no prior; train a token prior over its codes (hf-vae recipes) and sample that"


def _sample(args) -> None:
    import torch

    from ..images import image_grid
    from ..pipelines.pipeline_utils import sample_images

    check_output(args.output)
    model, vqvae = load(args.model, args.vqvae)
    require(model, "sample", "sample", _NO_PRIOR)
    count = max(args.num_samples, 1)  # a bad --num-samples is sample_images' to report
    kwargs, nrow = {}, None
    if args.labels:
        # The labels given, repeated in order until num_samples are filled: with one grid column per label
        # (when they fit), each column is one class.
        kwargs["labels"] = cycled_labels(model, args.labels, count)
        given = len(cli_labels(args.labels, model.config.label_names))
        nrow = given if given <= count else None
    generator = torch.Generator().manual_seed(args.seed)
    # A prior's token grids become images (pixels, or VQ-VAE codes decoded); an image model samples images.
    images = sample_images(model, args.num_samples, vqvae=vqvae, generator=generator, **kwargs)
    image_grid(images, nrow=nrow, scale=2).save(args.output)
    print(f"wrote {args.output}")


def _batched(method, pixel_values, labels, batch_size: int = 256):
    """`method(batch[, labels=...])` over the images in batches, concatenated (no gradients)."""
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, len(pixel_values), batch_size):
            kwargs = {} if labels is None else {"labels": labels[start:start + batch_size]}
            outputs.append(method(pixel_values[start:start + batch_size], **kwargs))
    return outputs


def _reconstruct(args) -> None:
    import torch

    from ..images import image_grid

    check_output(args.output)
    check_int("--per-row", args.per_row, minimum=1)
    model, _ = load(args.model)
    require(model, "reconstruct", "reconstruct")
    processor = image_processor(args.model, model, binarize=args.binarize)
    max_images = args.max_images or (16 if args.dataset else None)  # not a whole split in one picture
    images = read_images(processor, paths=args.images, dataset=args.dataset, split=args.split, max_images=max_images)
    labels = input_labels(model, args.labels, images)
    originals = images.pixel_values.to(model.dtype)
    reconstructions = torch.cat(_batched(model.reconstruct, originals, labels))
    # Rows of `per_row` originals, each above its reconstructions; the last rows padded with white.
    per_row = min(len(originals), args.per_row)
    pad = -len(originals) % per_row
    blank = torch.ones((pad, *originals.shape[1:]), dtype=originals.dtype)
    rows = [torch.cat([originals, blank]), torch.cat([reconstructions.to(originals.dtype), blank])]
    tiles = torch.cat([torch.cat([part[i:i + per_row] for part in rows]) for i in range(0, len(rows[0]), per_row)])
    image_grid(tiles, nrow=per_row, scale=2).save(args.output)
    print(f"wrote {args.output} ({len(originals)} images, each above its reconstruction)")


def _interpolate(args) -> None:
    from ..images import image_grid

    check_output(args.output)
    model, _ = load(args.model)
    require(model, "interpolate", "interpolate")
    processor = image_processor(args.model, model, binarize=args.binarize)
    pair = read_images(processor, paths=[args.image_a, args.image_b], name="A B")
    if pair.pixel_values.shape[0] != 2:
        raise ValueError(f"`A` and `B` must be two image files, got {len(pair.names)} images")
    labels = cycled_labels(model, args.labels, 2)
    if labels is None and model.is_conditional:
        raise ValueError(f"`--labels` must give the classes of A and B for {type(model).__name__} (a conditional "
                         "model), got none")
    ends = {} if labels is None else {"label_a": int(labels[0]), "label_b": int(labels[1])}
    x = pair.pixel_values.to(model.dtype)
    strip = model.interpolate(x[0], x[1], steps=args.steps, method=args.method, **ends)
    image_grid(strip, nrow=len(strip), scale=2).save(args.output)
    print(f"wrote {args.output} ({args.steps} steps, {args.method})")


def _encode(args) -> None:
    import torch
    from safetensors.torch import save_file

    check_output(args.output)
    check_suffix(args.output, (".safetensors",))
    model, _ = load(args.model)
    require(model, "encode", "encode")
    processor = image_processor(args.model, model, binarize=args.binarize)
    images = read_images(processor, paths=args.images, dataset=args.dataset, split=args.split, max_images=args.max_images)
    labels = input_labels(model, args.labels, images)
    encoded = _batched(model.encode, images.pixel_values.to(model.dtype), labels)
    # A VQ-VAE encodes to code ids (N, h, w); a VAE / CVAE to q(z|x), of which the means (N, latent_dim) are kept.
    if "indices" in encoded[0]:
        tensors = {"indices": torch.cat([out.indices for out in encoded])}
    else:
        tensors = {"posterior_mean": torch.cat([out.latent_dist.mean for out in encoded]).float()}
    if labels is not None:
        tensors["labels"] = labels
    metadata = {"model": args.model, "model_type": model.config.model_type, "images": json.dumps(images.names)}
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, args.output, metadata=metadata)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items())
    print(f"wrote {args.output} ({shapes})")


def register(sub) -> None:
    p = sub.add_parser("sample", help="write a PNG grid of samples from a saved model")
    p.add_argument("model")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="conditional models: class ids or class names, e.g. --labels 3 cat or --labels 0,1,2 "
                        "(a word that is a class name means that class), repeated in order to fill --num-samples")
    p.add_argument("--vqvae", default=None, help="a prior over VQ-VAE codes: its VQ-VAE (default: the one in its config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="samples.png")
    p.set_defaults(func=_sample)

    p = sub.add_parser("reconstruct", help="a PNG grid of images above their reconstructions (VAE, CVAE, VQ-VAE)")
    p.add_argument("model")
    add_image_inputs(p)
    p.add_argument("--per-row", type=int, default=8, help="images per row")
    p.add_argument("--output", default="reconstructions.png")
    p.set_defaults(func=_reconstruct)

    p = sub.add_parser("interpolate", help="a PNG strip decoded between two images' latents (VAE, CVAE)")
    p.add_argument("model")
    p.add_argument("image_a", metavar="A")
    p.add_argument("image_b", metavar="B")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--method", default="linear", choices=["linear", "slerp"])
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL", help="CVAE: the classes of A and B")
    p.add_argument("--binarize", default=None, choices=["none", "static"],
                   help="override the model's saved preprocessing (default: its preprocessor_config.json, else none)")
    p.add_argument("--output", default="interpolation.png")
    p.set_defaults(func=_interpolate)

    p = sub.add_parser("encode", help="posterior means (VAE, CVAE) or code ids (VQ-VAE) to a safetensors file")
    p.add_argument("model")
    add_image_inputs(p)
    p.add_argument("--output", default="latents.safetensors")
    p.set_defaults(func=_encode)
