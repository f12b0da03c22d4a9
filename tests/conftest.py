"""Test-session isolation: embedded datasets and module caches live in a temporary folder, and the
Hub is a local server (tests/hub_server.py) on 127.0.0.1: nothing ever reaches huggingface.co."""

import atexit
import os
import shutil
import sys
import tempfile

import pytest

from .hub_server import HubServer

# --- The local Hub: must run before anything imports huggingface_hub (or transformers / datasets),
# because huggingface_hub.constants.ENDPOINT, its module-level HfApi, HF_HUB_DISABLE_XET and HF_HOME,
# and datasets.config.HF_ENDPOINT are read at import time. It binds a free port on 127.0.0.1 and serves
# from a daemon thread right away, so a stray Hub request from any test gets a quick 404, never a hang.
if "huggingface_hub" in sys.modules:
    raise RuntimeError("huggingface_hub was imported before tests/conftest.py could point HF_ENDPOINT at the local test Hub")
HUB = HubServer().start()
_HF_HOME = tempfile.mkdtemp(prefix="hf_vae_tests_hf_home_")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ.update({
    "HF_ENDPOINT": HUB.url,
    "HF_HUB_DISABLE_XET": "1",  # hf_xet is installed: uploads would otherwise go through xet
    "HF_HOME": _HF_HOME,  # hub cache, token path and remote-code modules, per session
    "HF_TOKEN": "hf_local_test_token",  # the local Hub accepts any token
    "HF_HUB_OFFLINE": "0",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_SAFETENSORS_CONVERSION": "1",  # transformers would ask a Space on huggingface.co to convert .bin
})
for _name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_MODULES_CACHE", "HF_TOKEN_PATH", "TRANSFORMERS_OFFLINE",
              "HF_DATASETS_OFFLINE"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def hub_server():
    """The local Hub (tests/hub_server.py), serving for the whole session at $HF_ENDPOINT."""
    return HUB


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
