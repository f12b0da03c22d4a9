"""Fault injection for training: kill or starve a run at seeded random moments, resume, compare.

    python benchmarks/faults.py --trials 50 --jobs 2      # -> benchmarks/results/faults.md

Each trial trains the tiny digits VAE (`hf_vae/recipes/vae_digits_tiny.yaml`, 40 steps, a checkpoint
every 10) in a child process that injects one fault, then runs `hf-vae train --resume` on the same
folder and compares the final `model.safetensors` with an uninterrupted run's, bit for bit.

Categories (each with `--trials` seeded trials):
- `step`: SIGKILL inside a training step (just before or just after the k-th optimizer step);
- `checkpoint`: SIGKILL while writing a checkpoint: the j-th checkpoint file is written part-way
  (a random fraction of its bytes), or the manifest / folder rename is interrupted;
- `final`: SIGKILL while writing the final model (part-way through `save_pretrained`, between the
  file moves into the run folder, or before metrics.json and the PNGs);
- `fsize`: after the k-th step the child lowers its own RLIMIT_FSIZE to a random size, so the next
  larger write (usually a checkpoint file) fails part-way with EFBIG and the run crashes;
- `push`: the run pushes to a local Hub server (`tests/hub_server.py`, started by this script) with
  `--push_to_hub`, and is SIGKILLed while pushing: before the commit, after the files' upload but before
  the commit, or after the commit; the resume pushes again. Besides the local checks, the repo on the
  Hub must hold exactly the run's files with the final weights (anything else counts as partial).

Per trial it records whether the fault fired, whether the resume finished (exit 0), whether the final
weights are bit-identical, checkpoints lost (complete checkpoints present before the fault that no
longer verify afterwards) and partial files left after the resume (`*.tmp`/`*.old` anywhere, or a
checkpoint folder whose manifest does not verify).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
STEPS, SAVE_EVERY = 40, 10
FILES_PER_CHECKPOINT = 8  # rng .safetensors + .json, model, optimizer .safetensors + .json, scheduler, state, manifest
CATEGORIES = ("step", "checkpoint", "final", "fsize", "push")
OVERRIDES = [f"training.max_steps={STEPS}", f"training.save_every={SAVE_EVERY}", "training.eval_every=10",
             "training.log_every=10", "training.progress=false", "training.trackers=[jsonl]",
             "evaluation.num_importance_samples=0", "evaluation.num_samples=16"]


def train_command(run_dir: Path, *extra: str) -> list[str]:
    sets = [arg for item in OVERRIDES for arg in ("--set", item)]
    return [sys.executable, "-m", "hf_vae.cli", "train", str(RECIPE), "--output_dir", str(run_dir), *sets, *extra]


# ------------------------------------------------------------------------------------------ the child


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install(fault: dict) -> None:
    """Patch the training code so that `fault` happens at its chosen moment (runs in the child only)."""
    from accelerate.optimizer import AcceleratedOptimizer

    from hf_vae.training import checkpoints, loop

    kind, counter = fault["kind"], {"n": 0}
    if kind == "push":
        from huggingface_hub import HfApi

        moment = fault["when"]
        original_commit, original_preupload = HfApi.create_commit, HfApi.preupload_lfs_files

        def create_commit(self, *args, **kwargs):
            if moment == "before_commit":
                _die()
            result = original_commit(self, *args, **kwargs)
            if moment == "after_commit":
                _die()
            return result

        def preupload_lfs_files(self, *args, **kwargs):
            original_preupload(self, *args, **kwargs)
            if moment == "after_upload":
                _die()  # the blobs are on the Hub, the commit that would name them is not

        HfApi.create_commit, HfApi.preupload_lfs_files = create_commit, preupload_lfs_files
    elif kind in ("step", "fsize"):
        original_step = AcceleratedOptimizer.step

        def step(self, *args, **kwargs):
            counter["n"] += 1
            if counter["n"] == fault["at"] and kind == "step" and fault["when"] == "before":
                _die()
            result = original_step(self, *args, **kwargs)
            if counter["n"] == fault["at"]:
                if kind == "step":
                    _die()
                _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
                resource.setrlimit(resource.RLIMIT_FSIZE, (fault["limit"], hard))
            return result

        AcceleratedOptimizer.step = step
    elif kind == "checkpoint":
        def partial(write):
            def patched(path, obj):
                counter["n"] += 1
                write(path, obj)
                if counter["n"] == fault["at"]:
                    size = Path(path).stat().st_size
                    os.truncate(path, int(size * fault["fraction"]))
                    _die()
            return patched

        checkpoints._save_tensors = partial(checkpoints._save_tensors)
        checkpoints._save_json = partial(checkpoints._save_json)
        original_manifest = checkpoints.write_manifest

        def write_manifest(folder, **extra):
            if not folder.name.startswith("checkpoint-"):  # best_model's manifest
                return original_manifest(folder, **extra)
            counter["n"] += 1
            if counter["n"] == fault["at"] and fault["fraction"] < 0.5:
                _die()  # before the manifest: the folder stays `.tmp`
            original_manifest(folder, **extra)
            if counter["n"] == fault["at"]:
                _die()  # manifest written, folder not yet renamed into place

        checkpoints.write_manifest = write_manifest
    elif kind == "final":
        moment = fault["when"]
        if moment == "save_pretrained":
            original_save = checkpoints.save_pretrained_quietly

            def save(model, target):
                original_save(model, target)
                if target.name == "final_model.tmp":
                    victim = target / "model.safetensors"
                    os.truncate(victim, int(victim.stat().st_size * fault["fraction"]))
                    _die()

            checkpoints.save_pretrained_quietly = save
        elif moment == "move":
            original_move = checkpoints._move

            def move(source, target):
                counter["n"] += 1
                original_move(source, target)
                if counter["n"] == fault["at"]:
                    _die()

            checkpoints._move = move
        else:  # before metrics.json and the PNGs
            def write_metrics(*args, **kwargs):
                _die()

            loop.write_metrics = write_metrics


def child_main(fault_json: str, argv: list[str]) -> None:
    _install(json.loads(fault_json))
    from hf_vae.cli import main

    main(argv)


# ------------------------------------------------------------------------------------------ the harness


def draw_fault(kind: str, rng: random.Random, checkpoint_bytes: int) -> dict:
    """A seeded random moment for a fault of `kind`."""
    if kind == "step":
        return {"kind": kind, "at": rng.randint(1, STEPS), "when": rng.choice(["before", "after"])}
    if kind == "checkpoint":
        total = FILES_PER_CHECKPOINT * (STEPS // SAVE_EVERY)
        return {"kind": kind, "at": rng.randint(1, total), "fraction": rng.random()}
    if kind == "final":
        return {"kind": kind, "when": rng.choice(["save_pretrained", "move", "metrics"]), "at": rng.randint(1, 8),
                "fraction": rng.random()}
    if kind == "push":
        return {"kind": kind, "when": rng.choice(["before_commit", "after_upload", "after_commit"])}
    return {"kind": kind, "at": rng.randint(1, STEPS - 1), "limit": rng.randint(256, checkpoint_bytes)}


def _verified(folder: Path) -> bool:
    from hf_vae.training.checkpoints import CheckpointError, verify_manifest

    try:
        verify_manifest(folder)
        return True
    except CheckpointError:
        return False


def _checkpoint_names(run_dir: Path, verified: bool) -> set[str]:
    folders = [p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.is_dir() and not p.name.endswith((".tmp", ".old"))]
    return {p.name for p in folders if _verified(p) == verified}


def _partial_files(run_dir: Path) -> list[str]:
    leftovers = [str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.name.endswith((".tmp", ".old"))]
    return leftovers + sorted(_checkpoint_names(run_dir, verified=False))


def _same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    if not b.exists():
        return False
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _hub_partial_files(repo_id: str, run_dir: Path) -> list[str]:
    """Files of the pushed repo that are not the run's own, or differ from it (the Hub's partial artefacts)."""
    from hf_vae.hub import run_files

    hub_files = HUB.files(repo_id)
    local = {str(path.relative_to(run_dir)): path.read_bytes() for path in run_files(run_dir)}
    wrong = [name for name, data in hub_files.items() if name not in (".gitattributes", "README.md") and local.get(name) != data]
    return [f"hub:{name}" for name in wrong + sorted(set(local) - set(hub_files))]


def run_trial(fault: dict, reference: Path, workdir: Path) -> dict:
    """Inject `fault`, resume, and compare with `reference` (the uninterrupted run's model.safetensors)."""
    run_dir = workdir / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    push = []
    if fault["kind"] == "push":
        repo_id = f"faults/{workdir.name}"
        push = ["--push_to_hub", "--hub_model_id", repo_id]
    child = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(fault), "--"] + train_command(run_dir, *push)[3:]
    faulted = subprocess.run(child, capture_output=True, text=True, env=env, timeout=600)
    fired = faulted.returncode != 0
    complete_before = _checkpoint_names(run_dir, verified=True)
    start = time.time()
    resumed = subprocess.run(train_command(run_dir, "--resume", *push), capture_output=True, text=True, env=env, timeout=600)
    partial = _partial_files(run_dir) + (_hub_partial_files(repo_id, run_dir) if push and resumed.returncode == 0 else [])
    return {
        **fault,
        "fired": fired,
        "fault_rc": faulted.returncode,
        "fault_error": (faulted.stderr.strip().splitlines() or [""])[-1][:200] if faulted.returncode > 0 else "",
        "resumed": resumed.returncode == 0,
        "resume_error": "" if resumed.returncode == 0 else resumed.stderr[-500:],
        "identical": resumed.returncode == 0 and _same_weights(reference, run_dir / "model.safetensors"),
        "checkpoints_lost": len(complete_before - _checkpoint_names(run_dir, verified=True) - _pruned(run_dir, complete_before)),
        "fell_back": "skipping checkpoint" in resumed.stderr,
        "partial_files": partial,
        "resume_seconds": round(time.time() - start, 1),
    }


def _pruned(run_dir: Path, before: set[str]) -> set[str]:
    """Checkpoints that the resumed run removed on purpose (save_total_limit), not lost ones."""
    present = {p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")}
    return {name for name in before if name not in present}


HUB = None  # the local Hub server of the `push` trials


def _start_hub(root: Path) -> None:
    """Serve a local Hub (tests/hub_server.py) from this process and point the children at it (HF_* variables
    are read at import time, so they are set here, in the environment the children inherit)."""
    global HUB
    sys.path.insert(0, str(REPO))
    from tests.hub_server import HubServer

    HUB = HubServer().start()
    os.environ.update({"HF_ENDPOINT": HUB.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "hf_local_fault_token",
                       "HF_HOME": str(root / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1"})


def run_suite(trials: int, seed: int = 0, jobs: int = 1, categories=CATEGORIES, workdir: Path | None = None) -> tuple[list[dict], float]:
    """All trials; returns the per-trial records and the wall time."""
    start = time.time()
    root = Path(workdir or tempfile.mkdtemp(prefix="hf_vae_faults_"))
    if "push" in categories and HUB is None:  # (the tests set HUB to their own server)
        _start_hub(root)
    reference_dir = root / "reference"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    subprocess.run(train_command(reference_dir), check=True, capture_output=True, env=env, timeout=600)
    reference = reference_dir / "model.safetensors"
    biggest = max(p.stat().st_size for p in (reference_dir / "checkpoints").rglob("*.safetensors"))
    rng = random.Random(seed)
    plan = [(kind, i, draw_fault(kind, rng, biggest)) for kind in categories for i in range(trials)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        records = list(pool.map(lambda item: run_trial(item[2], reference, root / f"{item[0]}-{item[1]:03d}"), plan))
    return records, time.time() - start


def summarize(records: list[dict]) -> list[dict]:
    """One row per category: trials, faults fired, resumes finished, bit-identical, lost, partial files."""
    rows = []
    for kind in dict.fromkeys(r["kind"] for r in records):
        group = [r for r in records if r["kind"] == kind]
        rows.append({"category": kind, "trials": len(group), "fired": sum(r["fired"] for r in group),
                     "resumed": sum(r["resumed"] for r in group), "identical": sum(r["identical"] for r in group),
                     "fell_back": sum(r["fell_back"] for r in group),
                     "checkpoints_lost": sum(r["checkpoints_lost"] for r in group),
                     "partial_files": sum(len(r["partial_files"]) for r in group)})
    return rows


def write_report(records: list[dict], seconds: float, path: Path, command: str) -> None:
    lines = ["# Training fault injection", "", f"`{command}` — {seconds / 60:.1f} min on this machine, "
             f"tiny digits VAE, {STEPS} steps, a checkpoint every {SAVE_EVERY}. See `benchmarks/faults.py` for the categories.  ",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; the trials run `--jobs` at a time, "
             "each child with torch's default threads. Only correctness is measured here, not speed.", "",
             "| category | trials | fault fired | resumes finished | final weights bit-identical | fell back past a bad checkpoint | checkpoints lost | partial files left |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summarize(records):
        lines.append(f"| {row['category']} | {row['trials']} | {row['fired']} | {row['resumed']} | {row['identical']} | "
                     f"{row['fell_back']} | {row['checkpoints_lost']} | {row['partial_files']} |")
    failures = [r for r in records if not (r["resumed"] and r["identical"]) or r["partial_files"] or r["checkpoints_lost"]]
    lines += ["", f"Trials with a problem: {len(failures)}."]
    for r in failures:
        lines.append(f"- `{json.dumps({k: r[k] for k in ('kind', 'at', 'when', 'fraction', 'limit') if k in r})}`: "
                     f"resumed={r['resumed']} identical={r['identical']} partial={r['partial_files']} {r['resume_error'][-200:]!r}")
    errors = sorted({r["fault_error"] for r in records if r["kind"] == "fsize" and r["fault_error"]})
    if errors:
        lines += ["", "How the file-size-limited runs failed (last stderr line):", *[f"- `{e}`" for e in errors]]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50, help="seeded trials per category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="trials run in parallel")
    parser.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "faults.md")
    parser.add_argument("--workdir", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    records, seconds = run_suite(args.trials, args.seed, args.jobs, args.categories, args.workdir)
    command = f"python benchmarks/faults.py --trials {args.trials} --seed {args.seed} --jobs {args.jobs}"
    if list(args.categories) != list(CATEGORIES):
        command += " --categories " + " ".join(args.categories)
    write_report(records, seconds, args.output, command)
    print(args.output.read_text())


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[sys.argv.index("--") + 1:])
    else:
        main()
