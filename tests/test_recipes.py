"""The recipes ship in the wheel (package data of `hf_vae.recipes`) and are found by name from an install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hf_vae.recipes import RECIPE_DIR, recipe_info, recipe_names, resolve_recipe

REPO = Path(__file__).resolve().parents[1]


def test_every_recipe_has_a_description_and_loads_by_name():
    from hf_vae.training import Recipe

    assert {"vae_mnist5k", "pixelcnn_mnist5k", "transformer_prior_vqvae_mnist5k"} <= set(recipe_names())
    for name in recipe_names():
        info = recipe_info(name)
        assert info.description and info.path == RECIPE_DIR / f"{name}.yaml"
        Recipe.from_yaml(info.path)  # every shipped recipe is valid
    prior = recipe_info("transformer_prior_vqvae_mnist5k.yaml")
    assert "benchmarks/runs/vqvae_mnist5k/restarts_on" in prior.requires
    assert prior.prerequisite_command.startswith("hf-vae train vqvae_mnist5k ")


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_recipe("vae_mnist5k") == (RECIPE_DIR / "vae_mnist5k.yaml", recipe_info("vae_mnist5k"))
    (tmp_path / "vae_mnist5k").write_text("model: {family: vae}\n")
    assert resolve_recipe("vae_mnist5k") == (Path("vae_mnist5k"), None)
    with pytest.raises(ValueError, match=r"`recipe` must be a YAML file or the name of a shipped recipe \(.*vae_mnist5k"):
        resolve_recipe("no/such.yaml")


def test_the_wheel_ships_the_recipes_and_finds_them_by_name(tmp_path):
    """Build the wheel from a copy of the sources, check the YAMLs are in it, install it (no dependencies,
    into a folder) and list / resolve the recipes from there, away from the source checkout."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("hf_vae", "model_cards"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("hf_vae-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"hf_vae/recipes/{name}.yaml" for name in recipe_names()} <= set(names)

    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    code = ("import hf_vae.recipes as r; from hf_vae.cli import main; "
            "print(r.resolve_recipe('vae_mnist5k')[0]); main(['recipes'])")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, check=True)
    first, *listing = result.stdout.splitlines()
    assert Path(first) == tmp_path / "site" / "hf_vae" / "recipes" / "vae_mnist5k.yaml"
    assert any(line.startswith("transformer_prior_vqvae_mnist5k ") for line in listing)
