"""`hf-vae env`: the versions and devices a bug report needs, one `name: value` line each."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

#: The packages hf_vae runs on; diffusers is optional (its pipelines only).
PACKAGES = ("hf_vae", "torch", "transformers", "accelerate", "datasets", "huggingface_hub", "safetensors", "numpy",
            "diffusers")


def environment() -> dict[str, str]:
    """Python, platform, package versions ("not installed" when absent), devices and threads."""
    import torch

    info = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    info["devices"] = ", ".join(devices)
    info["cuda"] = torch.version.cuda or "none (CPU build)"
    info["torch threads"] = str(torch.get_num_threads())
    info["cpu count"] = str(os.cpu_count())
    return info


def _env(args) -> None:
    for name, value in environment().items():
        print(f"{name}: {value}")


def register(sub) -> None:
    p = sub.add_parser("env", help="versions of python, torch, transformers, ...; devices and threads")
    p.set_defaults(func=_env)
