"""Checkpoints and saves that survive a kill at any moment, and that load without pickle.

A checkpoint is a folder `checkpoints/checkpoint-<step>` of plain files, none of them a pickle:

    model.safetensors        the model's state dict
    optimizer.safetensors    every optimizer state tensor, as `state.<param index>.<name>`
    optimizer.json           the param groups and any non-tensor optimizer state
    scheduler.json           the LR scheduler's state dict
    scaler.json              the fp16 GradScaler's state (fp16 runs only)
    state.json               the `TrainState` (step, position in the epoch, best value, skips)
    rng-<rank>.safetensors   torch (and CUDA) generator states of each process
    rng-<rank>.json          Python's and NumPy's generator states of each process
    data-<rank>.json         the position of each process's part of a streamed train split (streaming only)
    ema.safetensors          the weight EMA's averaged tensors and update count (`training.ema_decay` runs only)
    manifest.json            written last: format, step, the recipe fingerprint, and for every other
                             file its size and sha256

Everything is written into `checkpoint-<step>.tmp`, the manifest last (itself via a temporary file and
`os.replace`), and the folder is then renamed into place, so a kill never leaves a folder without a
complete manifest under a final name. On resume, `find_resumable` verifies manifests newest first and
names each bad checkpoint in a warning before falling back to the previous one; `load_checkpoint`
refuses a changed recipe or architecture with the list of differing fields. Every save (checkpoint,
`best_model`, the final model) first checks that the weights are finite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers.utils import logging as transformers_logging

__all__ = ["CheckpointError", "TrainState", "atomic_save_pretrained", "check_finite_weights", "find_resumable",
           "load_checkpoint", "recover_partial_saves", "save_checkpoint", "save_final_model", "save_pretrained_quietly"]

FORMAT = "hf_vae-checkpoint/1"
MANIFEST = "manifest.json"
CHECKPOINT_FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json", "state.json")
# Recipe fields that may change between a run and its resume: they change neither the weights nor the data.
RESUMABLE_CHANGES = ("training.output_dir", "training.progress", "training.trackers", "training.max_steps",
                     "training.gradient_checkpointing",  # the same gradients, recomputed
                     "data.num_workers", "data.prefetch_factor", "data.in_memory",
                     "training.max_time_minutes", "training.save_total_limit", "training.early_stopping_patience",
                     "training.log_every", "evaluation.", "hub.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be trusted (missing or mismatching manifest, a changed file)."""


@dataclass
class TrainState:
    """The position of a run, saved as `state.json` in every checkpoint."""

    step: int = 0  # optimizer steps done (skipped ones included)
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    best_metric: float = math.inf  # lowest validation -ELBO (or loss) so far
    best_step: int = -1
    evals_without_improvement: int = 0
    elapsed_seconds: float = 0.0
    step_seconds: float = 0.0  # time inside training steps only (no evaluation or checkpointing)
    images_seen: int = 0  # training images over all processes
    nonfinite_skips: int = 0  # optimizer steps skipped for a non-finite loss (training.on_nonfinite=skip)
    skipped_images: int = 0  # undecodable training images skipped (data.on_bad_image=skip), this process
    seconds_to_first_step: float | None = None  # from `train()` being called to the end of the first step

    def state_dict(self) -> dict:
        """All fields, as JSON-able values."""
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore the fields saved by `state_dict` (unknown keys are an error, missing ones keep defaults)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(state) - known)
        if unknown:
            raise CheckpointError(f"`state.json` must hold only TrainState fields {sorted(known)}, got {unknown}")
        for key, value in state.items():
            setattr(self, key, value)


# ---------------------------------------------------------------------------------------------- writing


def check_finite_weights(model, what: str) -> None:
    """Refuse to write `what` when a parameter or buffer of `model` holds inf or NaN."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ValueError(f"the weights written to {what} must be finite, got inf/NaN in {bad[:10]}"
                         f"{' and more' if len(bad) > 10 else ''}; nothing was written")


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(path))


def _save_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: Path, **extra) -> None:
    """`manifest.json` listing every file of `folder` with size and sha256, written atomically and last."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (MANIFEST, MANIFEST + ".tmp")):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        files[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    tmp = folder / (MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"format": FORMAT, **extra, "files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)
    _fsync_dir(folder)


def verify_manifest(folder: Path) -> dict:
    """The manifest of `folder` once every file it lists has its recorded size and sha256; else CheckpointError."""
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder.name} has no {MANIFEST} (an interrupted or foreign save)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder.name}/{MANIFEST} is unreadable: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{folder.name}/{MANIFEST} must be a {FORMAT} manifest, got {str(manifest)[:80]!r}")
    for name, entry in manifest["files"].items():
        file = folder / name
        if not isinstance(entry, dict) or not {"size", "sha256"} <= set(entry) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{folder.name}/{MANIFEST} must list files inside the folder with size and sha256, got {name!r}: {entry!r}")
        if not file.is_file():
            raise CheckpointError(f"{folder.name}/{name} is missing")
        if file.stat().st_size != entry["size"]:
            raise CheckpointError(f"{folder.name}/{name} has {file.stat().st_size} bytes, the manifest says {entry['size']}")
        if _sha256(file) != entry["sha256"]:
            raise CheckpointError(f"{folder.name}/{name} does not match its sha256 in the manifest")
    return manifest


def save_pretrained_quietly(model, target: Path) -> None:
    """`save_pretrained` without transformers' "Writing model shards" bar, which would break the training bar."""
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model.save_pretrained(target)
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def atomic_save_pretrained(model, target: Path) -> None:
    """`save_pretrained` into `target.tmp` (manifest last), then swap it in for `target`.

    The old folder is renamed to `target.old` before the new one takes its name, so at every moment one
    complete folder exists; `recover_partial_saves` finishes a swap that a kill interrupted.
    """
    check_finite_weights(model, str(target))
    tmp, old = target.with_name(target.name + ".tmp"), target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained_quietly(model, tmp)
    write_manifest(tmp)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def save_final_model(model, run_dir: Path) -> None:
    """`save_pretrained` into `run_dir/final_model.tmp`, then move each file into `run_dir` (atomic renames)."""
    check_finite_weights(model, f"the final model in {run_dir}")
    tmp = run_dir / "final_model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained_quietly(model, tmp)
    for path in sorted(tmp.iterdir()):
        _move(path, run_dir / path.name)
    tmp.rmdir()


def _move(source: Path, target: Path) -> None:
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(source, target)


def recover_partial_saves(run_dir: Path) -> None:
    """Finish or drop what a kill left: complete `best_model.tmp`/`.old` swaps, stale `.tmp` folders."""
    best, tmp, old = run_dir / "best_model", run_dir / "best_model.tmp", run_dir / "best_model.old"
    if not best.exists():
        for candidate in (tmp, old):
            try:
                verify_manifest(candidate)
            except CheckpointError:
                continue
            os.replace(candidate, best)
            break
    for leftover in (tmp, old, run_dir / "final_model.tmp", *run_dir.glob("checkpoints/*.tmp")):
        shutil.rmtree(leftover, ignore_errors=True)


def _rng_state() -> tuple[dict, dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [version, list(internal), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached]}
    return tensors, plain


def _set_rng_state(tensors: dict, plain: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _optimizer_files(optimizer) -> tuple[dict, dict]:
    """The optimizer state dict split into tensors (safetensors) and everything else (JSON)."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict, plain: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in plain["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(accelerator, checkpoints_dir: Path, state: TrainState, keep: int, *, model, optimizer,
                    scheduler, fingerprint: dict, data_state: dict | None = None, ema=None) -> None:
    """Write `checkpoint-<step>` (see the module docstring), then drop all but the newest `keep` checkpoints.

    Every process calls it: each writes its own generator states (and `data_state`, the position of its
    part of a streamed train split); the main process writes the rest (with the `WeightEMA` `ema`, if
    any), the manifest, renames the folder into place and prunes.
    """
    target = checkpoints_dir / f"checkpoint-{state.step:08d}"
    tmp = target.with_name(target.name + ".tmp")
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        check_finite_weights(unwrapped, f"checkpoint {target.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rank = accelerator.process_index
    rng_tensors, rng_plain = _rng_state()
    _save_tensors(tmp / f"rng-{rank}.safetensors", rng_tensors)
    _save_json(tmp / f"rng-{rank}.json", rng_plain)
    if data_state is not None:
        _save_json(tmp / f"data-{rank}.json", data_state)
    if accelerator.is_main_process:
        _save_tensors(tmp / "model.safetensors", accelerator.get_state_dict(model))
        opt_tensors, opt_plain = _optimizer_files(optimizer)
        _save_tensors(tmp / "optimizer.safetensors", opt_tensors)
        _save_json(tmp / "optimizer.json", opt_plain)
        _save_json(tmp / "scheduler.json", scheduler.state_dict())
        if accelerator.scaler is not None:
            _save_json(tmp / "scaler.json", accelerator.scaler.state_dict())
        _save_json(tmp / "state.json", state.state_dict())
        if ema is not None:
            _save_tensors(tmp / "ema.safetensors", ema.state_dict())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_manifest(tmp, step=state.step, num_processes=accelerator.num_processes, fingerprint=fingerprint)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        _fsync_dir(checkpoints_dir)
        for old in _checkpoint_folders(checkpoints_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------------------- reading


def _checkpoint_folders(checkpoints_dir: Path) -> list[Path]:
    return sorted(p for p in checkpoints_dir.glob("checkpoint-*") if p.is_dir() and not p.name.endswith((".tmp", ".old")))


def find_resumable(checkpoints_dir: Path) -> tuple[Path | None, dict | None]:
    """The newest checkpoint whose manifest verifies, and that manifest; each bad newer one is named in a warning."""
    for folder in reversed(_checkpoint_folders(checkpoints_dir)):
        try:
            manifest = verify_manifest(folder)
            ranks = range(manifest.get("num_processes", 1)) if isinstance(manifest.get("num_processes", 1), int) else ()
            needed = [*CHECKPOINT_FILES, *(f"rng-{r}.{ext}" for r in ranks for ext in ("safetensors", "json"))]
            unlisted = [name for name in needed if name not in manifest["files"]]
            if unlisted:  # only files the manifest vouches for are ever read
                raise CheckpointError(f"{folder.name}/{MANIFEST} must list {unlisted}")
            return folder, manifest
        except CheckpointError as error:
            warnings.warn(f"--resume: skipping checkpoint {folder}: {error}; trying the previous one", stacklevel=2)
    return None, None


def _recipe_differences(saved: dict, current: dict) -> list[str]:
    """The recipe fields whose value differs between the checkpoint's fingerprint and this run's, as "field: old ->
    new", leaving out `RESUMABLE_CHANGES` and fields a later release added that this run keeps at their default (a
    fingerprint written before a field existed meant its default)."""
    from .recipe import Recipe  # imported here: recipe.py's checks do not need the checkpoint code

    defaults = Recipe().to_flat_dict()

    def changed(key: str) -> bool:
        if key.startswith(RESUMABLE_CHANGES) or (key not in saved and key in defaults and current.get(key) == defaults[key]):
            return False
        return saved.get(key, "<absent>") != current.get(key, "<absent>")
    return [f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}" for k in sorted(set(saved) | set(current)) if changed(k)]


def load_checkpoint(accelerator, folder: Path, manifest: dict, state: TrainState, *, model, optimizer, scheduler,
                    fingerprint: dict, ema=None) -> dict | None:
    """Restore a verified checkpoint into the prepared objects (and the `WeightEMA` `ema`, if any); a changed
    recipe/architecture is a ValueError.

    Returns this process's `data_state` (the streamed train split's position), or None when none was saved.
    """
    differences = _recipe_differences(manifest.get("fingerprint", {}), fingerprint)
    if manifest.get("num_processes") != accelerator.num_processes:
        differences.append(f"num_processes: {manifest.get('num_processes')!r} -> {accelerator.num_processes!r}")
    if differences:
        raise ValueError(f"the recipe must be the one checkpoint {folder.name} was written with, got these changes: "
                         + "; ".join(differences))
    unwrapped = accelerator.unwrap_model(model)
    weights = load_file(str(folder / "model.safetensors"))
    expected = {k: tuple(v.shape) for k, v in unwrapped.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in weights.items()}
    if saved != expected:
        changed = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
        raise ValueError(f"the model architecture must match checkpoint {folder.name}, got different parameters "
                         + ", ".join(f"{k}: {saved.get(k, '<absent>')} -> {expected.get(k, '<absent>')}" for k in changed[:20]))
    unwrapped.load_state_dict(weights)
    optimizer.load_state_dict(_optimizer_state(load_file(str(folder / "optimizer.safetensors")),
                                               json.loads((folder / "optimizer.json").read_text())))
    scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))
    if accelerator.scaler is not None and "scaler.json" in manifest["files"]:
        accelerator.scaler.load_state_dict(json.loads((folder / "scaler.json").read_text()))
    state.load_state_dict(json.loads((folder / "state.json").read_text()))
    if ema is not None:
        if "ema.safetensors" not in manifest["files"]:  # only files the manifest vouches for are ever read
            raise CheckpointError(f"{folder.name}/{MANIFEST} must list ema.safetensors for a training.ema_decay run")
        ema.load_state_dict(load_file(str(folder / "ema.safetensors")))
    rank = accelerator.process_index
    _set_rng_state(load_file(str(folder / f"rng-{rank}.safetensors")), json.loads((folder / f"rng-{rank}.json").read_text()))
    data_file = f"data-{rank}.json"
    return json.loads((folder / data_file).read_text()) if data_file in manifest["files"] else None
