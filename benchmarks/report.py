"""What every benchmark script writes into its markdown: the command, the machine, the file itself.

The scripts import it as a sibling module (`python benchmarks/<name>.py` puts `benchmarks/` first on
`sys.path`).
"""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path

import torch


def command_line(prefix: str = "python") -> str:
    """The command that ran this script, arguments quoted as a shell would need them."""
    return prefix + " " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + sys.argv[1:])


def processor() -> str:
    """The processor's name, or its architecture where the platform gives no name."""
    return platform.processor() or platform.machine()


def machine() -> str:
    """Processor, this process's torch threads and the torch version."""
    return f"{processor()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def write_markdown(path: str | Path, lines: list[str]) -> None:
    """Write the results markdown (parents created) and print it."""
    text = "\n".join(lines) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    print(text)
