"""`training.trackers`: Accelerate's tracker names (taken from Accelerate, checked when the recipe is built,
a missing package named with its pip command) beside `jsonl`, and trackio end to end, offline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from accelerate.tracking import get_available_trackers
from accelerate.utils import LoggerType

from hf_vae.training import Recipe
from hf_vae.training import tracking
from hf_vae.training.tracking import TRACKER_NAMES, resolve_trackers

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"


def _recipe(tmp_path, trackers: str) -> Recipe:
    return Recipe.from_yaml(TINY_RECIPE, [f"training.output_dir={tmp_path / 'run'}", f"training.trackers={trackers}"])


def _installed(name: str) -> bool:
    return name in [kind.value for kind in get_available_trackers()]


def test_every_accelerate_tracker_name_is_known():
    # The list is Accelerate's own: a tracker it adds is a name the recipe knows.
    assert set(TRACKER_NAMES) == {kind.value for kind in LoggerType} | {"jsonl"}
    assert {"tensorboard", "wandb", "trackio", "mlflow", "all"} <= set(TRACKER_NAMES)


def test_a_name_a_list_and_all(monkeypatch):
    monkeypatch.setattr(tracking, "get_available_trackers", lambda: [LoggerType.TENSORBOARD, LoggerType.MLFLOW])
    assert resolve_trackers("mlflow") == ["mlflow"]
    assert resolve_trackers(["jsonl", "tensorboard", "jsonl"]) == ["jsonl", "tensorboard"]  # repeats dropped
    # `all`: jsonl and every installed Accelerate tracker.
    assert resolve_trackers("all") == ["jsonl", "tensorboard", "mlflow"]
    assert resolve_trackers(["tensorboard", "all"]) == ["tensorboard", "jsonl", "mlflow"]
    assert resolve_trackers([]) == []


@pytest.mark.parametrize("trackers, message", [
    ("[jsonl, nope]", "`training.trackers` must be one of ('jsonl', 'all', 'aim', 'tensorboard'"),
    ("tensorbord", "`training.trackers` must be one of"),
    ("3", "`training.trackers` must be a tracker name or a list of them, got 3"),
    ("[jsonl, 3]", "`training.trackers` must be a tracker name or a list of them, got ['jsonl', 3]"),
])
def test_unknown_tracker_is_rejected_when_the_recipe_is_built(tmp_path, trackers, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _recipe(tmp_path, trackers)


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_tracker_names_wandb_and_mlflow(tmp_path, monkeypatch, name):
    if _installed(name):
        pytest.skip(f"{name} is installed here: the missing-package message cannot be shown")
    # Not installed: the recipe fails when it is built, with the pip command.
    with pytest.raises(ValueError, match=rf"`training.trackers` must name trackers whose package is installed, "
                                         rf"got '{name}' \(pip install {name}\)"):
        _recipe(tmp_path, f"[jsonl, {name}]")
    # Installed, the name is accepted as Accelerate spells it.
    monkeypatch.setattr(tracking, "get_available_trackers", lambda: [LoggerType(name)])
    assert _recipe(tmp_path, f"[jsonl, {name}]").training.trackers == ["jsonl", name]
    assert _recipe(tmp_path, name).training.trackers == name


TRACKIO_RUN = """
import json, sys
from hf_vae.training import Recipe, train
from trackio.sqlite_storage import SQLiteStorage

run_dir = train(Recipe.from_yaml(sys.argv[1], sys.argv[2:]))
logs = SQLiteStorage.get_logs("hf_vae", run_dir.name)
# A file, not stdout: trackio prints on its own (also at exit).
(run_dir / "trackio_read_back.json").write_text(json.dumps({"runs": SQLiteStorage.get_runs("hf_vae"), "logs": logs}, default=str))
"""


def test_trackio_end_to_end_offline(tmp_path):
    pytest.importorskip("trackio")
    # trackio reads TRACKIO_DIR when it is imported: a fresh interpreter keeps its database in tmp_path.
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    overrides = [f"training.output_dir={tmp_path / 'tiny_trackio'}", "training.trackers=[trackio, jsonl]",
                 "training.max_steps=20", "training.log_every=5", "training.eval_every=10", "training.save_every=20",
                 "training.progress=false", "evaluation.num_importance_samples=0", "evaluation.num_samples=4",
                 "data.num_workers=0"]
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(TRACKIO_RUN), str(TINY_RECIPE), *overrides],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    read_back = json.loads((tmp_path / "tiny_trackio" / "trackio_read_back.json").read_text())
    assert read_back["runs"] == ["tiny_trackio"]  # named after the run folder
    assert list((tmp_path / "trackio").glob("hf_vae*.db")), "trackio wrote no local database"

    # What trackio stored is what the jsonl tracker wrote, step by step.
    jsonl = [json.loads(line) for line in (tmp_path / "tiny_trackio" / "logs" / "metrics.jsonl").read_text().splitlines()]
    expected = {(row["step"], key): value for row in jsonl for key, value in row.items()
                if key.startswith(("train/", "validation/", "test/")) and isinstance(value, (int, float))}
    stored = {(row["step"], key): value for row in read_back["logs"] for key, value in row.items()
              if key.startswith(("train/", "validation/", "test/"))}
    assert {step for step, key in expected if key == "train/loss"} == {5, 10, 15, 20}
    assert any(key.startswith("validation/") for _, key in expected) and any(key.startswith("test/") for _, key in expected)
    assert stored.keys() == expected.keys()
    for key, value in expected.items():
        assert stored[key] == pytest.approx(value, rel=1e-6), key
