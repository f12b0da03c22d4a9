"""What every benchmark script writes into its markdown: the command, the machine, the file itself.

The scripts import it as a sibling module (`python benchmarks/<name>.py` puts `benchmarks/` first on
`sys.path`).
"""

from __future__ import annotations

import platform
import re
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


_SECTION = re.compile(r"<!-- begin (\S+) -->\n.*?<!-- end \1 -->\n", re.DOTALL)


def _sections(text: str) -> dict[str, str]:
    return {match.group(1): match.group(0) for match in _SECTION.finditer(text)}


def write_markdown(path: str | Path, lines: list[str]) -> None:
    """Write the results markdown (parents created) and print it. Sections another script wrote into the old
    file (`write_section`) are kept, at the end."""
    path = Path(path)
    text = "\n".join(lines) + "\n"
    old = _sections(path.read_text()) if path.is_file() else {}
    for name, block in old.items():
        if name not in _sections(text):
            text += "\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)


def write_section(path: str | Path, name: str, lines: list[str]) -> None:
    """Replace section `name` of the results markdown at `path` (appended when new; the file is created when
    missing): how one script's table also stands in another script's results file, which keeps it when it
    rewrites the rest (`write_markdown`)."""
    path = Path(path)
    block = f"<!-- begin {name} -->\n" + "\n".join(lines) + f"\n<!-- end {name} -->\n"
    text = path.read_text() if path.is_file() else ""
    old = _sections(text).get(name)
    text = text.replace(old, block) if old else text + ("\n" if text else "") + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
