"""The JSONL tracker: one `{"step": ..., **values}` line per `accelerator.log` call, in `<run>/logs/metrics.jsonl`.

It works offline, is easy to plot (`artifacts.plot_training_curves` reads it) and is truncated on resume
so that a resumed run does not log the same steps twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from accelerate.tracking import GeneralTracker, on_main_process

__all__ = ["JSONLTracker"]


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
