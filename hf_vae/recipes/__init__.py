"""The shipped training recipes: the YAML files of this folder, package data of the wheel, found by name.

    hf-vae recipes                  # one line each: name, description, prerequisite if any
    hf-vae train vae_mnist5k        # a recipe by name (a path to any YAML recipe works too)

A recipe opens with a comment block whose first sentence is its description. A comment line
`# Requires: ...` says what must exist before it trains (the transformer prior's VQ-VAE) and a line
`# Make it first with: COMMAND` the command that makes it; `hf-vae recipes` shows both and `hf-vae train`
stops with that command when the prerequisite is missing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RECIPE_DIR", "RecipeInfo", "list_recipes", "recipe_info", "recipe_names", "resolve_recipe"]

#: The folder of the shipped recipes (inside the installed package, or the source checkout's hf_vae/recipes).
RECIPE_DIR = Path(__file__).resolve().parent

_REQUIRES = "# Requires:"
_MAKE = "# Make it first with:"


@dataclass(frozen=True)
class RecipeInfo:
    """A shipped recipe: its `name` (the file stem), `path`, one-line `description`, and the prerequisite
    (`requires`, `prerequisite_command`) when it needs something trained first."""

    name: str
    path: Path
    description: str
    requires: str | None = None
    prerequisite_command: str | None = None


def recipe_names() -> list[str]:
    """The names of the shipped recipes, sorted (`vae_mnist5k`, ...)."""
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def _header(path: Path) -> list[str]:
    """The comment lines that open the file (up to the first YAML line)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def _first_sentence(text: str, limit: int = 110) -> str:
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return sentence if len(sentence) <= limit else sentence[: limit - 3].rstrip() + "..."


def recipe_info(name: str) -> RecipeInfo:
    """The shipped recipe `name` (with or without `.yaml`); an unknown name raises, listing the names."""
    stem = name.removesuffix(".yaml")
    path = RECIPE_DIR / f"{stem}.yaml"
    if "/" in stem or os.sep in stem or not path.is_file():
        raise ValueError(f"`recipe` must be a YAML file or the name of a shipped recipe ({', '.join(recipe_names())}), "
                         f"got {name!r}")
    header = _header(path)
    prose = " ".join(line.lstrip("#").strip() for line in header
                     if not line.startswith((_REQUIRES, _MAKE)) and line.lstrip("#").strip())
    requires = next((line.removeprefix(_REQUIRES).strip() for line in header if line.startswith(_REQUIRES)), None)
    command = next((line.removeprefix(_MAKE).strip() for line in header if line.startswith(_MAKE)), None)
    return RecipeInfo(stem, path, _first_sentence(prose) if prose else "", requires, command)


def list_recipes() -> list[RecipeInfo]:
    """Every shipped recipe, sorted by name."""
    return [recipe_info(name) for name in recipe_names()]


def resolve_recipe(name_or_path: str | os.PathLike) -> tuple[Path, RecipeInfo | None]:
    """A recipe argument -> (its file, its `RecipeInfo` when it is a shipped one). An existing file wins
    (so a local `vae_mnist5k.yaml` is read, not the shipped one); anything else must be a shipped name."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        shipped = path.resolve().parent == RECIPE_DIR and path.suffix == ".yaml"
        return path, recipe_info(path.stem) if shipped else None
    info = recipe_info(str(name_or_path))
    return info.path, info
