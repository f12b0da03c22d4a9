"""Strict loading, the checks behind `HfVaePreTrainedModel.from_pretrained(strict=True)`: where the model
comes from (a folder that exists, or a repo id), what it is (`model_type`, read before anything is
instantiated), and what was loaded (every weight present, expected and of its shape, all finite).

    check_model_source(name) ──► check_model_type(cls, name) ──► transformers loads ──► check_loaded(model, info)

transformers alone warns and initialises missing weights at random; here each problem is a `ValueError`
naming the argument. The module is part of the remote-code copy of a model (imported relatively).
"""

from __future__ import annotations

import os

import torch
from transformers import PretrainedConfig

# The from_pretrained keywords that say where to find config.json (for reading model_type first).
_HUB_KWARGS = ("revision", "token", "cache_dir", "force_download", "local_files_only", "proxies", "subfolder")


def _first(names: list[str], shown: int = 8) -> str:
    """A list for an error message: the first `shown` names, then how many more."""
    return str(names[:shown])[:-1] + (f", ... {len(names) - shown} more]" if len(names) > shown else "]")


def looks_like_local_path(name: str) -> bool:
    """Whether `name` is meant as a path on this machine rather than a Hub repo id ("name" or "owner/name"):
    it starts with ./, ../, / or ~, has a backslash or more than one slash, or its first part exists here."""
    return (
        name.startswith(("./", "../", "/", "~", ".\\", "..\\")) or name in (".", "..")
        or os.path.isabs(name) or "\\" in name or name.count("/") > 1
        or ("/" in name and os.path.exists(name.split("/", 1)[0]))
    )


def check_model_source(name_or_path, name: str = "pretrained_model_name_or_path") -> str:
    """`name_or_path` as a string, after checking what can be checked without the network: a local path
    (see `looks_like_local_path`) must be an existing folder holding `config.json`. Raises a `ValueError`
    naming the argument ("no such folder") at once, instead of network retries for a mistyped path."""
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"`{name}` must be a model folder or a Hub repo id, got {name_or_path!r}")
    path = os.path.expanduser(name_or_path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"`{name}` must be a model folder holding config.json, got {name_or_path!r} (no config.json)")
        return path
    if os.path.exists(path) or looks_like_local_path(name_or_path):
        detail = "a file, not a folder" if os.path.exists(path) else "no such folder"
        raise ValueError(f"`{name}` must be a model folder or a Hub repo id, got {name_or_path!r} ({detail})")
    return name_or_path


def check_model_type(cls, name: str, kwargs: dict) -> None:
    """Raise a `ValueError` unless the config of `name` (or `kwargs["config"]`) is of `cls`'s `model_type`
    (e.g. a VAE folder given to `VQVAEModel.from_pretrained`). Reads config.json only."""
    config = kwargs.get("config")
    if not isinstance(config, PretrainedConfig):
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        config = cls.config_class.get_config_dict(name, **hub_kwargs)[0]
    model_type = config.get("model_type") if isinstance(config, dict) else config.model_type
    expected = cls.config_class.model_type
    if model_type != expected:
        raise ValueError(f"`pretrained_model_name_or_path` must hold a {expected!r} model for {cls.__name__}, got "
                         f"{name!r} of model_type {model_type!r}")


def check_loaded(model: torch.nn.Module, info: dict, name: str) -> None:
    """Raise a `ValueError` listing the missing, unexpected or mismatched weights in transformers' loading
    `info` (`output_loading_info=True`), or naming the parameters and buffers that are not finite."""
    problems = [f"{len(info[kind])} {kind.replace('_', ' ')} {_first(sorted(map(str, info[kind])))}"
                for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(kind)]
    problems += [f"errors {info['error_msgs']}"] if info.get("error_msgs") else []
    if problems:
        raise ValueError(
            f"`pretrained_model_name_or_path` must hold weights matching {type(model).__name__}'s config, got "
            f"{name!r} with {'; '.join(problems)} (pass strict=False to load anyway with random init)"
        )
    nonfinite = [n for n, t in [*model.named_parameters(), *model.named_buffers()]
                 if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if nonfinite:
        raise ValueError(f"`pretrained_model_name_or_path` must hold finite weights, got {name!r} with non-finite "
                         f"values in {_first(nonfinite)} (a corrupted or diverged checkpoint)")
