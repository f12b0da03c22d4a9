"""Test-session isolation: embedded datasets and module caches live in a temporary folder."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    saved = {k: os.environ.get(k) for k in ("HF_VAE_CACHE", "HF_DATASETS_CACHE")}
    os.environ["HF_VAE_CACHE"] = str(root / "hf_vae")
    os.environ["HF_DATASETS_CACHE"] = str(root / "datasets")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
