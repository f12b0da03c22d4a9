"""Latency of every demo endpoint (hf_vae/demo) for mnist5k-size models, end to end through `gradio_client`.

Each model's page is launched on a free local port and every endpoint it has is called `--runs` times
(after one unrecorded warm-up) with its page defaults: 16 images for Generate, 8 steps for Interpolate,
one 28x28 upload elsewhere. The median must stay under 1 s (issue #16). The Score tab's first call also
scores the test split's reference images (once per page, in the background when `hf-vae demo` starts):
that one-off cost is timed separately.

Models: the trained VAE of `runs/vae_mnist5k` (`--vae`; its metrics.json records mnist5k), and the CVAE,
VQ-VAE, transformer prior over the VQ-VAE's codes and PixelCNN prior built from their mnist5k recipes
with random weights (the latency of a forward pass does not depend on the values of the weights).

    python benchmarks/demo_latency.py --vae /work/main/runs/vae_mnist5k --runs 5 --note "idle machine"
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from report import command_line, machine, write_markdown

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
TARGET_S = 1.0
RECIPES = {"cvae": "cvae_mnist5k.yaml", "vqvae": "vqvae_mnist5k.yaml",
           "transformer_prior": "transformer_prior_vqvae_mnist5k.yaml", "pixelcnn_prior": "pixelcnn_mnist5k.yaml"}


def recipe_model(name: str, **overrides):
    """A random-weight model of a training recipe, with the metadata its run would record."""
    from hf_vae.training import Recipe
    from hf_vae.training.recipe import build_model

    recipe = Recipe.from_yaml(REPO_ROOT / "hf_vae" / "recipes" / RECIPES[name])
    recipe.model.config.update(overrides)
    torch.manual_seed(0)
    return build_model(recipe).eval(), {"recipe": {"data": dataclasses.asdict(recipe.data)}}


def sessions(vae_path: str):
    from hf_vae.demo.session import DemoSession

    yield "VAE (trained, runs/vae_mnist5k)", DemoSession.load(vae_path)
    model, metadata = recipe_model("cvae")
    yield "CVAE (cvae_mnist5k config)", DemoSession(model, metadata=metadata)
    vqvae, metadata = recipe_model("vqvae")
    yield "VQ-VAE (vqvae_mnist5k config)", DemoSession(vqvae, metadata=metadata)
    prior, metadata = recipe_model("transformer_prior", vqvae_name_or_path=None)
    yield "Transformer prior over VQ-VAE codes", DemoSession(prior, vqvae=vqvae, metadata=metadata)
    model, metadata = recipe_model("pixelcnn_prior")
    yield "PixelCNN prior over pixels", DemoSession(model, metadata=metadata)


def calls(session, uploads: list[str], client_file):
    """(endpoint, arguments) of every tab the session's page has, with the page's defaults."""
    a, b, c = (client_file(path) for path in uploads)
    label = session.class_names[0] if session.class_names else None
    found = session.capabilities
    plan = [("sample", "/generate", (0, 16, 1.0, label, 1.0)),
            ("interpolate", "/interpolate", (a, b, 8, "linear", label, label)),
            ("arithmetic", "/arithmetic", (a, b, c, 1.0, label)),
            ("reconstruct", "/reconstruct", (a, label)),
            ("score", "/score", (a, label)),
            ("codes", "/codes", (a,))]
    return [(endpoint, args) for capability, endpoint, args in plan if capability in found]


def median_seconds(call, runs: int) -> tuple[float, list[float]]:
    call()  # warm-up, not recorded
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", default=str(REPO_ROOT / "runs" / "vae_mnist5k"), help="the trained VAE's run folder")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--note", default="", help="conditions of the run (load, other jobs), printed in the results")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results" / "demo_latency.md"))
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    from hf_vae.demo.app import build_demo

    folder = Path(tempfile.mkdtemp(prefix="demo_latency_"))
    rng = np.random.default_rng(0)
    uploads = []
    for name in "abc":  # 28x28 grey uploads (what a user drops in is resized by the image processor anyway)
        uploads.append(str(folder / f"{name}.png"))
        Image.fromarray((rng.random((28, 28)) > 0.7).astype(np.uint8) * 255).save(uploads[-1])
    rows, over = [], []
    for title, session in sessions(args.vae):
        demo = build_demo(session)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            for endpoint, call_args in calls(session, uploads, handle_file):
                cold = ""
                if endpoint == "/score" and session.dataset is not None:
                    start = time.perf_counter()
                    client.predict(*call_args, api_name=endpoint)  # scores the reference split once
                    cold = f"{time.perf_counter() - start:.2f}"
                median, times = median_seconds(lambda: client.predict(*call_args, api_name=endpoint), args.runs)
                rows.append(f"| {title} | `{endpoint[1:]}` | {median:.3f} | {', '.join(f'{t:.3f}' for t in times)} | {cold} |")
                if median >= TARGET_S:
                    over.append(f"{title} `{endpoint[1:]}` ({median:.2f} s)")
                print(rows[-1], flush=True)
        finally:
            demo.close()
    lines = [
        "# Demo latency: every endpoint of the demo app, mnist5k-size models",
        "",
        f"Command: `{command_line()}`",
        f"Machine: {machine()}, {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}.",
        f"Conditions: {args.note or 'not given'}.",
        "",
        f"End to end through `gradio_client` (HTTP, queue, upload, pre/post-processing), median of {args.runs} "
        "calls after one warm-up; page defaults (Generate: 16 images; Interpolate: 8 steps). The last column is "
        "the first Score call of a page, which also scores the reference images of the test split (once; "
        "`hf-vae demo` starts that in the background as the page loads).",
        "",
        "| model | endpoint | median (s) | runs (s) | first Score incl. reference (s) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Target < {TARGET_S:.0f} s per interaction: " + ("**met** by every endpoint." if not over else
                                                        "**NOT met** by " + "; ".join(over) + "."),
    ]
    write_markdown(args.output, lines)


if __name__ == "__main__":
    main()
