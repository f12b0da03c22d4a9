"""The trackers a run logs to: `training.trackers` names any tracker Accelerate supports, plus `jsonl`.

`resolve_trackers` turns the recipe's value (a name, a list of names, or `all`) into the names to start,
and rejects an unknown name or a tracker whose package is not installed before anything is built.
The names come from Accelerate itself (`LoggerType`), so a tracker it adds is accepted here too.

The JSONL tracker writes one `{"step": ..., **values}` line per `accelerator.log` call, in
`<run>/logs/metrics.jsonl`. It works offline, is easy to plot (`artifacts.plot_training_curves` reads
it) and is truncated on resume so that a resumed run does not log the same steps twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from accelerate.tracking import GeneralTracker, get_available_trackers, on_main_process
from accelerate.utils import LoggerType

from ..validation import check_choice

__all__ = ["JSONLTracker", "TRACKER_NAMES", "resolve_trackers", "run_names"]

# Accelerate's tracker names (`all` among them) and hf_vae's own `jsonl`.
TRACKER_NAMES = ("jsonl", *(kind.value for kind in LoggerType))


def resolve_trackers(trackers, name: str = "training.trackers") -> list[str]:
    """The tracker names to start, in order and without repeats, from a name or a list of names.

    `all` stands for `jsonl` and every Accelerate tracker whose package is installed. A name Accelerate
    does not know, or a tracker whose package is missing, is a `ValueError` naming what to install.
    """
    names = [trackers] if isinstance(trackers, str) else trackers
    if not isinstance(names, (list, tuple)) or not all(isinstance(item, str) for item in names):
        raise ValueError(f"`{name}` must be a tracker name or a list of them, got {trackers!r}")
    installed = [kind.value for kind in get_available_trackers()]
    resolved: list[str] = []
    for item in names:
        check_choice(name, item, TRACKER_NAMES)
        if item == "all":
            resolved += ["jsonl", *installed]
        elif item == "jsonl" or item in installed:
            resolved.append(item)
        else:
            raise ValueError(f"`{name}` must name trackers whose package is installed, got {item!r} "
                             f"(pip install {item})")
    return list(dict.fromkeys(resolved))  # drops repeats, keeps the order


def run_names(run_name: str) -> dict:
    """`init_trackers`' per-tracker options that name the run (after its folder) where the tracker takes a
    name; the others name their runs themselves (TensorBoard and jsonl by the folder they write to)."""
    return {"trackio": {"name": run_name}, "wandb": {"name": run_name}}


class JSONLTracker(GeneralTracker):
    """Appends `{"step": ..., **values}` lines to `<logging_dir>/metrics.jsonl`; the recipe goes to `recipe.json`."""

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"

    @on_main_process
    def start(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def tracker(self):
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict):
        (self.path.parent / "recipe.json").write_text(json.dumps(values, indent=2, default=str))

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs):
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    @staticmethod
    def truncate(path: Path, last_step: int) -> None:
        """Drop lines logged after `last_step` (a resumed run logs those steps again)."""
        if path.exists():
            lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= last_step]
            path.write_text("".join(line + "\n" for line in lines))
