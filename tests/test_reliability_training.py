"""Issue #14, the training part: a diverging run never ends quietly with a NaN model (finding 1), a
resume never unpickles anything from the run folder (finding 6), a bad latest checkpoint or a changed
recipe on resume is reported by name (finding 5), and a quick subset of the fault-injection suite."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_vae import VAEModel
from hf_vae.training import Recipe, build_model, train
from hf_vae.training.checkpoints import atomic_save_pretrained, save_final_model, verify_manifest

from .model_tester import import_benchmark

REPO = Path(__file__).resolve().parents[1]
TINY_RECIPE = REPO / "hf_vae" / "recipes" / "vae_digits_tiny.yaml"
FAST = ["training.max_steps=40", "training.save_every=20", "training.eval_every=20", "training.progress=false",
        "training.trackers=[jsonl]", "evaluation.num_importance_samples=0", "evaluation.num_samples=4"]


def _recipe(output_dir, *overrides) -> Recipe:
    return Recipe.from_yaml(TINY_RECIPE, [*FAST, f"training.output_dir={output_dir}", *overrides])


def _weights(run_dir: Path) -> dict:
    return load_file(run_dir / "model.safetensors")


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reliability") / "vae"
    train(_recipe(run_dir))
    return run_dir


def _copy_for_resume(finished_run: Path, target: Path) -> Path:
    """The finished run as if it had been killed after its last checkpoint: no final model or metrics."""
    shutil.copytree(finished_run, target)
    for name in ("model.safetensors", "metrics.json"):
        (target / name).unlink()
    return target


# ---------------------------------------------------------------------------- finding 1: non-finite training


def test_diverging_run_stops_naming_the_step_and_the_term(tmp_path):
    run_dir = tmp_path / "diverged"
    with pytest.raises(ValueError, match=r"must stay finite, got `loss` = nan.* at step \d+ .*on_nonfinite"):
        train(_recipe(run_dir, "training.learning_rate=1e3"))
    # Nothing was saved from the diverged weights.
    assert not (run_dir / "model.safetensors").exists() and not (run_dir / "best_model").exists()
    assert not list(run_dir.glob("checkpoints/checkpoint-*"))


def test_cli_diverging_run_exits_nonzero_without_a_model(tmp_path):
    run_dir = tmp_path / "cli"
    sets = [arg for item in [*FAST, "training.learning_rate=1e3"] for arg in ("--set", item)]
    result = subprocess.run([sys.executable, "-m", "hf_vae.cli", "train", str(TINY_RECIPE), "--output_dir", str(run_dir), *sets],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "must stay finite" in result.stderr and "step" in result.stderr and "Traceback" not in result.stderr
    assert not (run_dir / "model.safetensors").exists()


def test_skip_mode_skips_the_step_and_counts_it(tmp_path, monkeypatch):
    original = VAEModel.forward

    def forward(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        if kwargs.get("global_step") == 4:  # one poisoned step
            output.loss = output.loss * float("nan")
        return output

    monkeypatch.setattr(VAEModel, "forward", forward)
    run_dir = tmp_path / "skip"
    with pytest.warns(UserWarning, match="1 of 40 optimizer steps were skipped"):
        train(_recipe(run_dir, "training.on_nonfinite=skip"))
    assert json.loads((run_dir / "metrics.json").read_text())["nonfinite_skips"] == 1
    logs = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("train/nonfinite_skips") == 1 for row in logs)
    assert all(torch.isfinite(torch.tensor(row["train/loss"])) for row in logs if "train/loss" in row)
    assert all(torch.isfinite(t).all() for t in _weights(run_dir).values())


def test_on_nonfinite_must_be_stop_or_skip(tmp_path):
    with pytest.raises(ValueError, match=r"`training\.on_nonfinite` must be one of \('stop', 'skip'\), got 'ignore'"):
        train(_recipe(tmp_path / "x", "training.on_nonfinite=ignore"))


@pytest.mark.parametrize("save", [atomic_save_pretrained, save_final_model])
def test_no_save_writes_nonfinite_weights(tmp_path, save):
    model = build_model(_recipe(tmp_path))
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(ValueError, match="must be finite, got inf/NaN in"):
        save(model, target / "best_model" if save is atomic_save_pretrained else target)
    assert not list(target.rglob("*.safetensors"))


# ---------------------------------------------------------------------------- finding 6: no pickle on resume


class _Planted:
    """Unpickling it creates `marker`: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_unpickles_planted_files(finished_run, tmp_path):
    run_dir = _copy_for_resume(finished_run, tmp_path / "planted")
    marker = tmp_path / "pickle_ran"
    payload = pickle.dumps(_Planted(marker))
    latest = run_dir / "checkpoints" / "checkpoint-00000040"
    # Every file accelerate's save_state/load_state would unpickle, in the checkpoint resumed from...
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin", "sampler.bin",
                 "pytorch_model.bin", "scaler.pt"):
        (latest / name).write_bytes(payload)
    # ...and a newer, accelerate-style checkpoint made only of pickles (no manifest).
    foreign = run_dir / "checkpoints" / "checkpoint-00000050"
    foreign.mkdir()
    (foreign / "custom_checkpoint_0.pkl").write_bytes(payload)
    (foreign / "model.safetensors").write_bytes(b"not really")
    with pytest.warns(UserWarning, match="checkpoint-00000050: .*no manifest.json"):
        train(_recipe(run_dir), resume=True)
    assert not marker.exists(), "a planted pickle was executed"
    _assert_same_weights(_weights(finished_run), _weights(run_dir))


# ---------------------------------------------------------------------------- finding 5: checkpoints you can trust


def _truncate(folder: Path) -> None:
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(folder: Path) -> None:
    path = folder / "optimizer.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [(_truncate, "model.safetensors has .* bytes"),
                                            (lambda folder: (folder / "manifest.json").unlink(), "no manifest.json"),
                                            (_flip_a_byte, "optimizer.safetensors does not match its sha256")])
def test_bad_latest_checkpoint_falls_back_to_the_previous_one(finished_run, tmp_path, damage, reason):
    run_dir = _copy_for_resume(finished_run, tmp_path / "damaged")
    latest = run_dir / "checkpoints" / "checkpoint-00000040"
    verify_manifest(latest)
    damage(latest)
    with pytest.warns(UserWarning, match=f"checkpoint-00000040: .*{reason}.*previous one"):
        train(_recipe(run_dir), resume=True)
    # Resumed from checkpoint-20 and retrained steps 21..40 exactly.
    _assert_same_weights(_weights(finished_run), _weights(run_dir))
    verify_manifest(run_dir / "checkpoints" / "checkpoint-00000040")  # rewritten whole


def test_changed_recipe_on_resume_lists_the_differing_fields(finished_run, tmp_path):
    run_dir = _copy_for_resume(finished_run, tmp_path / "changed")
    with pytest.raises(ValueError, match=r"model\.config\.latent_dim: 8 -> 4.*training\.learning_rate: 0\.002 -> 0\.001"):
        train(_recipe(run_dir, "model.config.latent_dim=4", "training.learning_rate=1e-3"), resume=True)
    # Fields that change neither the weights nor the data may change (a longer run, another log cadence).
    train(_recipe(run_dir, "training.log_every=5"), resume=True)
    _assert_same_weights(_weights(finished_run), _weights(run_dir))


def test_resume_accepts_a_fingerprint_without_fields_a_later_release_added_at_their_default(finished_run, tmp_path):
    # A checkpoint written before `data.augment_shift` existed: its fingerprint lacks the field (the manifest's
    # fingerprint is not under its sha256 list, so it can be edited as an older release would have written it).
    run_dir = _copy_for_resume(finished_run, tmp_path / "older")
    manifest_path = run_dir / "checkpoints" / "checkpoint-00000040" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["fingerprint"].pop("data.augment_shift") == 0
    manifest_path.write_text(json.dumps(manifest))
    # The field at a value other than its default is a change, named as one.
    with pytest.raises(ValueError, match=r"data\.augment_shift: '<absent>' -> 1"):
        train(_recipe(run_dir, "data.augment_shift=1"), resume=True)
    train(_recipe(run_dir), resume=True)  # at its default: the same run, resumed
    _assert_same_weights(_weights(finished_run), _weights(run_dir))


def test_checkpoint_holds_no_pickle_and_a_manifest_of_every_file(finished_run):
    latest = finished_run / "checkpoints" / "checkpoint-00000040"
    manifest = verify_manifest(latest)
    assert sorted(manifest["files"]) == sorted(p.name for p in latest.iterdir() if p.name != "manifest.json")
    assert {p.suffix for p in latest.iterdir()} <= {".json", ".safetensors"}
    assert manifest["step"] == 40 and manifest["fingerprint"]["model.config.latent_dim"] == 8


# ---------------------------------------------------------------------------- the fault-injection suite, quick


def test_fault_injection_quick_subset(tmp_path, hub_server, monkeypatch):
    faults = import_benchmark("faults")
    monkeypatch.setattr(faults, "HUB", hub_server)  # the push trial pushes to the test session's Hub
    records, _ = faults.run_suite(1, seed=3, categories=("checkpoint", "fsize", "push"), workdir=tmp_path)
    assert len(records) == 3
    assert faults.HUB.files("faults/push-000")["model.safetensors"] == (tmp_path / "push-000" / "run" / "model.safetensors").read_bytes()
    for record in records:
        assert record["fired"], record
        assert record["resumed"] and record["identical"], record
        assert record["checkpoints_lost"] == 0 and record["partial_files"] == [], record


def test_planted_vq_code_cache_is_never_unpickled(tmp_path, monkeypatch):
    """The VQ-code cache (`<run>/codes.pt`) loads with `weights_only=True`: a planted pickle is ignored with a
    warning and the codes are encoded again."""
    from types import SimpleNamespace

    import hf_vae.generation
    from hf_vae.training import prepare_prior_data

    vqvae = build_model(Recipe.from_yaml(REPO / "hf_vae" / "recipes" / "vqvae_digits_tiny.yaml"))
    monkeypatch.setattr(hf_vae.generation, "load_vqvae", lambda model: vqvae)

    class Prior:  # only what prepare_prior_data reads of a prior over VQ-VAE codes
        input_kind, main_input_name = "tokens", "indices"
        config = SimpleNamespace(token_source="vqvae_codes", vqvae_name_or_path="local", vqvae_revision=None)

    marker = tmp_path / "pickle_ran"
    (tmp_path / "codes.pt").write_bytes(pickle.dumps(_Planted(marker)))
    from hf_vae.data import TensorDictDataset

    splits = {"train": TensorDictDataset({"pixel_values": torch.rand(3, 1, 8, 8)}), "validation": None, "test": None}
    recipe = _recipe(tmp_path, "data.train_binarize=static")  # codes are computed once: no dynamic binarization
    with pytest.warns(UserWarning, match="ignoring the VQ-code cache"):
        encoded = prepare_prior_data(Prior(), splits, recipe, tmp_path)
    assert not marker.exists(), "a planted pickle was executed"
    assert encoded["train"].tensors["indices"].shape[0] == 3
    # The cache it wrote back loads without pickle and is used as is.
    again = prepare_prior_data(Prior(), splits, recipe, tmp_path)["train"].tensors["indices"]
    assert again.equal(encoded["train"].tensors["indices"])
