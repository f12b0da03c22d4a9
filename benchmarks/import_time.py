"""How long `import hf_vae` takes against `import torch, transformers`, and against the floor of any package
whose models subclass `PreTrainedModel` (`from transformers import PreTrainedModel` as well).

Each statement runs in a fresh Python, which times only the import itself (interpreter start-up is left
out); the runs alternate between the statements, after one unrecorded warm-up each (the file cache), so
load on a shared machine falls on all alike. Prints and writes the medians and the ratios of hf_vae to
each (target <= 1.3 against `import torch, transformers`), and whether `import hf_vae` imported diffusers
(it must not: diffusers loads when used).

    python benchmarks/import_time.py --runs 9 --note "shared machine: 2 cores, 3 other jobs"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from report import command_line, machine, write_markdown

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE = "import torch, transformers"
# What any package defining a PreTrainedModel subclass imports: transformers' top level is lazy, and
# `PreTrainedModel` pulls in transformers.modeling_utils (torch.distributed.tensor, sympy, scipy, accelerate).
FLOOR = "import torch, transformers; from transformers import PreTrainedModel"
HF_VAE = "import hf_vae"
TARGET = 1.3

# Run in the child: time the statement, then report which top-level packages it imported.
TIMER = """
import json, sys, time
start = time.perf_counter()
exec({statement!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "diffusers": "diffusers" in sys.modules}}))
"""


def time_import(statement: str, python: str, repo: str) -> dict:
    """One fresh interpreter importing hf_vae from `repo`: {"seconds": the import's wall time, "diffusers":
    whether diffusers got imported}."""
    env = {**os.environ, "PYTHONPATH": repo}
    # cwd too: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH.
    result = subprocess.run([python, "-c", TIMER.format(statement=statement)], cwd=repo, env=env, capture_output=True,
                            text=True, check=True, timeout=600)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="recorded runs per statement (the median is reported)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to time (default: this one)")
    parser.add_argument("--repo", default=str(REPO_ROOT), help="the checkout whose hf_vae is imported (default: this one)")
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "results" / "import_time.md"))
    parser.add_argument("--note", default="", help="conditions worth stating, e.g. other jobs on the machine")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be an int >= 1, got {args.runs}")

    statements = (BASELINE, FLOOR, HF_VAE)
    for statement in statements:  # warm-up: not recorded
        time_import(statement, args.python, args.repo)
    runs = {statement: [] for statement in statements}
    for _ in range(args.runs):
        for statement in statements:
            runs[statement].append(time_import(statement, args.python, args.repo))
    medians = {statement: statistics.median(run["seconds"] for run in runs[statement]) for statement in statements}
    ratio = medians[HF_VAE] / medians[BASELINE]
    floor_ratio = medians[HF_VAE] / medians[FLOOR]
    imported_diffusers = any(run["diffusers"] for run in runs[HF_VAE])

    lines = [
        "# Import time: `import hf_vae` against `import torch, transformers`",
        "",
        f"Command: `{command_line()}`",
        f"hf_vae from: `{args.repo}`",
        f"Machine: {machine()}, {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}.",
    ]
    if args.note:
        lines.append(f"Conditions: {args.note}.")
    lines += [
        "",
        f"Median of {args.runs} fresh interpreters each (runs alternating, one warm-up each not counted); "
        "the import alone is timed, not the interpreter's start-up.",
        "",
        "| statement | median (s) | runs (s) |",
        "|---|---|---|",
    ]
    for statement in statements:
        seconds = ", ".join(f"{run['seconds']:.2f}" for run in runs[statement])
        lines.append(f"| `{statement}` | {medians[statement]:.2f} | {seconds} |")
    lines += [
        "",
        f"Ratio hf_vae / (torch + transformers): **{ratio:.2f}** (target <= {TARGET}: "
        f"{'met' if ratio <= TARGET else 'NOT met'}).",
        f"Ratio hf_vae / (torch + transformers + PreTrainedModel): **{floor_ratio:.2f}** (what hf_vae adds to the "
        "import every PreTrainedModel subclass needs).",
        f"`import hf_vae` imported diffusers: {'yes' if imported_diffusers else 'no'}.",
    ]
    write_markdown(args.output, lines)


if __name__ == "__main__":
    main()
