"""The lossless-codec baselines of the natural32 benchmark: bits/dim of PNG and lossless WebP on its test patches.

A learned likelihood model of 8-bit images is worth its bits/dim only beside what a lossless codec spends
on the same pixels: -log2 p(x) / (C * H * W) against 8 * bytes / (C * H * W). Two figures per codec:

- **mosaic**: the test patches tiled into one image (rows x columns = the number of patches, in split
  order), compressed once, so the file header is paid once (the fair comparison with a model's bits);
- **per patch**: every 32x32 patch compressed as its own file, headers included (what storing them
  one by one costs).

PNG at maximum compression (`compress_level=9`, `optimize=True`) and WebP lossless at its slowest, best
setting (`lossless=True, quality=100, method=6`), both Pillow's (libpng/zlib and libwebp). Every file is
decoded again and compared with the pixels, so a figure is only reported for a lossless round trip.

    python benchmarks/natural32_codecs.py [--split test] [--output benchmarks/results/natural32_codecs.md]
"""

from __future__ import annotations

import argparse
import io
import math

import numpy as np
from PIL import Image

import report

CODECS = {
    "PNG (compress_level=9, optimize)": dict(format="PNG", compress_level=9, optimize=True),
    "WebP lossless (quality=100, method=6)": dict(format="WEBP", lossless=True, quality=100, method=6),
}


def mosaic_shape(count: int) -> tuple[int, int]:
    """(rows, columns) with rows * columns == count, as square as possible (rows <= columns)."""
    rows = max(r for r in range(1, math.isqrt(count) + 1) if count % r == 0)
    return rows, count // rows


def tile(patches: np.ndarray) -> np.ndarray:
    """(N, h, w, C) -> one (rows * h, columns * w, C) image, patches in order row by row."""
    rows, cols = mosaic_shape(len(patches))
    n, h, w, c = patches.shape
    return patches.reshape(rows, cols, h, w, c).swapaxes(1, 2).reshape(rows * h, cols * w, c)


def compressed_size(pixels: np.ndarray, options: dict) -> int:
    """Bytes of `pixels` (H, W, 3) uint8 in this codec, after checking the file decodes to the same pixels."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, **options)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        if not np.array_equal(np.asarray(decoded.convert("RGB")), pixels):
            raise RuntimeError(f"{options['format']} did not round-trip the pixels losslessly")
    return buffer.tell()


def codec_bits_per_dim(patches: np.ndarray) -> dict[str, dict[str, float]]:
    """{codec: {"mosaic": bits/dim, "per_patch": bits/dim}} for (N, 32, 32, 3) uint8 patches."""
    dims = patches.size
    mosaic = tile(patches)
    return {
        name: {
            "mosaic": 8 * compressed_size(mosaic, options) / dims,
            "per_patch": 8 * sum(compressed_size(p, options) for p in patches) / dims,
        }
        for name, options in CODECS.items()
    }


def load_patches(split: str) -> np.ndarray:
    """The natural32 split as (N, 32, 32, 3) uint8, read back from its Hub-layout parquet as every model reads it."""
    from hf_vae.data import load_image_dataset

    dataset = load_image_dataset("natural32", split=split)
    return np.stack([np.asarray(image.convert("RGB")) for image in dataset["image"]])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", default="benchmarks/results/natural32_codecs.md")
    args = parser.parse_args(argv)
    patches = load_patches(args.split)
    results = codec_bits_per_dim(patches)
    rows, cols = mosaic_shape(len(patches))
    best = min(results, key=lambda name: results[name]["mosaic"])
    lines = [
        f"# natural32 {args.split}: lossless codecs in bits/dim",
        "",
        f"Command: `{report.command_line()}`",
        f"Machine: {report.machine()}; Pillow {Image.__version__} (deterministic: no timing here).",
        "",
        f"{len(patches)} patches of 32x32x3 = {patches.size:,} dimensions; mosaic {rows} x {cols} patches "
        f"({rows * 32} x {cols * 32} pixels). bits/dim = 8 * bytes / dimensions; every file decoded back and "
        "compared with the pixels (lossless).",
        "",
        "| codec | mosaic (bits/dim) | per patch, headers included (bits/dim) |",
        "|---|---|---|",
        *[f"| {name} | {r['mosaic']:.3f} | {r['per_patch']:.3f} |" for name, r in results.items()],
        "",
        f"Best lossless codec on the mosaic: **{best}, {results[best]['mosaic']:.3f} bits/dim** (the target the "
        "learned models of issue #13 must beat; the gated PixelCNN by at least 15%).",
    ]
    report.write_markdown(args.output, lines)
    return results


if __name__ == "__main__":
    main()
