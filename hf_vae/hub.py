"""The Hub round trip: push a run directory (model, card, metrics, images) in one commit, push an
embedded dataset, and load a model back by repo id with its family checked.

    from hf_vae.hub import push_run, load_model
    info = push_run("runs/vae_mnist5k", "me/vae-mnist5k")     # one commit; returns a CommitInfo
    model = load_model("me/vae-mnist5k", revision=info.oid)  # or AutoModel.from_pretrained("me/vae-mnist5k")

A pushed repo holds config.json, the safetensors weights, the modeling code (so it also loads with
`trust_remote_code=True` where hf_vae is not installed), README.md (the model card rendered by
`hf_vae.cards`), the card's images and metrics.json. Checkpoints, logs and best_model/ stay local, and
pickle weights are never uploaded or loaded unless asked for.

Every other push writes the same card: `model.push_to_hub`, `save_pretrained(push_to_hub=True)` and the
transformers and diffusers pipelines' `push_to_hub` call `write_push_card` just before their upload.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
from pathlib import Path

from . import cards

__all__ = [
    "HubPushError",
    "PICKLE_WEIGHTS",
    "hf_vae_families",
    "load_model",
    "push_embedded_dataset",
    "push_run",
    "read_config",
    "run_files",
    "validate_repo_id",
    "write_push_card",
]

# Weight files that unpickle on load (arbitrary code execution from an untrusted repo).
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SAFE_WEIGHTS = ".safetensors"
SAFE_INDEX = "model.safetensors.index.json"


_ATOMIC_NOTE = ("Hub commits are atomic: unless the server had already accepted the commit, the branch keeps its "
                "previous commit. Run the push again to retry (re-pushing identical files makes no new commit).")


class HubPushError(OSError):
    """An upload to the Hub failed (network or server error). Hub commits are atomic: unless the error
    came after the server accepted the commit, the branch still points at its previous commit."""


def validate_repo_id(repo_id, name: str = "repo_id") -> str:
    """Return `repo_id` if it is a valid Hub repo id ("name" or "namespace/name"); else raise `ValueError`
    naming the argument. Checked before any request is made."""
    from huggingface_hub.utils import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hub_validate

    if not isinstance(repo_id, str):
        raise ValueError(f"`{name}` must be a Hub repo id such as 'user/my-vae', got {type(repo_id).__name__} {repo_id!r}")
    try:
        hub_validate(repo_id)
    except HFValidationError as error:
        raise ValueError(f"`{name}` must be a Hub repo id such as 'user/my-vae', got {repo_id!r}: {error}") from None
    return repo_id


def hf_vae_families() -> tuple[str, ...]:
    """The `model_type`s of every hf_vae family (each registers itself on import)."""
    import hf_vae  # noqa: F401  (imports and registers every family)

    from .families import model_types

    return model_types()


def http_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of the HTTP stacks huggingface_hub may use (httpx2, httpx, requests) plus OSError."""
    errors: list[type[BaseException]] = [OSError]
    for module_name, attribute in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module_name), attribute))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _read_model_type(config_path: Path) -> str | None:
    try:
        return json.loads(config_path.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"config.json must be a JSON object, could not read {str(config_path)!r}: {error}") from None


def _check_branch(revision) -> None:
    """Commits go to branches: a commit id or a `refs/...` path is not one."""
    if revision is None:
        return
    if not isinstance(revision, str) or not revision or revision.startswith("refs/") or re.fullmatch(r"[0-9a-f]{40}", revision):
        raise ValueError(f"`revision` must be a branch name (or None for main), got {revision!r}")


def run_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files `push_run` uploads from `run_dir` (besides the rendered README.md), after checking them.

    config.json, the safetensors weights (and shard index), the modeling code (*.py written by
    `save_pretrained`), metrics.json and the card images: top-level files only, so `checkpoints/`,
    `logs/` and `best_model/` never leave the machine.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"`run_dir` must be a directory written by training or save_pretrained, got {str(run_dir)!r}")
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"`run_dir` must hold a saved model (config.json), got {str(run_dir)!r}")
    model_type = _read_model_type(run_dir / "config.json")
    if model_type not in hf_vae_families():
        raise ValueError(f"`run_dir` holds a model of type {model_type!r}, not an hf_vae family {list(hf_vae_families())}")
    top = sorted(p for p in run_dir.iterdir() if p.is_file())
    weights = [p for p in top if p.name.endswith(SAFE_WEIGHTS)]
    if not weights:
        pickles = [p.name for p in top if p.name.endswith(PICKLE_WEIGHTS)]
        detail = f" (only pickle weights {pickles}: hf_vae pushes safetensors only)" if pickles else ""
        raise ValueError(f"`run_dir` must hold safetensors weights (model.safetensors), got none in {str(run_dir)!r}{detail}")
    names = {"config.json", "generation_config.json", SAFE_INDEX, "metrics.json", *cards.CARD_IMAGES.values()}
    return [p for p in top if p.name in names or p.name.endswith((SAFE_WEIGHTS, ".py"))]


def push_run(
    run_dir: str | os.PathLike,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    dataset_id: str | None = None,
):
    """Upload a run directory (or any `save_pretrained` folder of an hf_vae model) to the Hub in ONE commit.

    Args:
        run_dir: the run directory (`hf-vae train` output) or a folder written by `save_pretrained`.
        repo_id: the model repo, "user/name" (created if missing; a bare "name" goes to your namespace).
        revision: branch to commit to (created from `main` if missing); `None` commits to `main`.
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token; `None` uses the saved login or `$HF_TOKEN`.
        commit_message: the commit title; a default names the family and the run.
        commit_description: the commit description.
        dataset_id: Hub dataset id to name in the card metadata instead of the recipe's dataset.

    Returns:
        `huggingface_hub.CommitInfo` (`.oid` is the commit id to pin with `revision=`).

    Raises:
        ValueError: bad `repo_id` (before any request), a folder without config.json or safetensors
            weights, or a model that is not an hf_vae family.
        HubPushError: the upload failed; the branch is left at its previous commit.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    from . import __version__

    validate_repo_id(repo_id)
    _check_branch(revision)
    run_dir = Path(run_dir)
    files = run_files(run_dir)
    model_type = _read_model_type(run_dir / "config.json")
    api = HfApi(token=token, library_name="hf_vae", library_version=__version__)
    errors = http_errors()
    target = f"{repo_id}" + (f"@{revision}" if revision else "")
    # Render first: a broken template or metrics.json fails before any request.
    card = cards.render_card(run_dir, repo_id, dataset_id=dataset_id)
    try:
        full_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if full_id != repo_id:  # a bare name landed in the token's namespace: the card must say so
            repo_id, card = full_id, cards.render_card(run_dir, full_id, dataset_id=dataset_id)
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode("utf-8")))
        # Weights of an earlier push that this one does not replace (other shards, pickle files) would
        # otherwise sit beside the new ones.
        uploaded = {p.name for p in files}
        existing = api.list_repo_files(repo_id, revision=revision)
        operations += [
            CommitOperationDelete(path_in_repo=path)
            for path in existing
            if "/" not in path and path not in uploaded
            and (path.endswith((SAFE_WEIGHTS, *PICKLE_WEIGHTS)) or path in (SAFE_INDEX, "pytorch_model.bin.index.json"))
        ]
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload {model_type} model from {run_dir.resolve().name} with hf_vae {__version__}",
            commit_description=commit_description,
            revision=revision,
        )
    except ValueError:
        raise
    except errors as error:
        raise HubPushError(f"pushing {str(run_dir)!r} to {target!r} failed: {type(error).__name__}: "
                           f"{str(error).rstrip('.')}. {_ATOMIC_NOTE}") from error
    except RuntimeError as error:  # huggingface_hub wraps LFS upload failures in RuntimeError
        raise HubPushError(f"pushing {str(run_dir)!r} to {target!r} failed: {str(error).rstrip('.')} "
                           f"({error.__cause__!r}). {_ATOMIC_NOTE}") from error


def _same_weights(folder: Path, other: Path) -> bool:
    """Whether the safetensors weights of two folders hold the same tensors (names, shapes, values)."""
    from safetensors.torch import load_file

    def weights(path: Path) -> dict:
        return {k: v for f in sorted(path.glob(f"*{SAFE_WEIGHTS}")) for k, v in load_file(f).items()}

    mine, theirs = weights(folder), weights(other)
    return bool(mine) and mine.keys() == theirs.keys() and all(
        mine[k].shape == theirs[k].shape and bool((mine[k] == theirs[k]).all()) for k in mine)


def write_push_card(folder: str | os.PathLike, repo_id: str, model, *, subfolder: str | None = None) -> list[str]:
    """Write the hf_vae card (README.md) into `folder`, a folder about to be uploaded to `repo_id`.

    The one card path of every push that transformers or diffusers drives (`model.push_to_hub`,
    `save_pretrained(push_to_hub=True)`, the pipelines' `push_to_hub`): their boilerplate README.md is
    replaced here, at the last step before the upload. The card states measured numbers only when there
    is a metrics.json for these weights: one already in `folder`, or the one beside the folder the model
    was loaded from (`model.name_or_path`), copied with the card's PNGs when that folder's weights equal
    the ones saved in `folder` (a model changed since it was measured gets the "no evaluation" card).

    Args:
        folder: the saved model (config.json, weights), or a diffusers pipeline with the model in `subfolder`.
        repo_id: the full Hub repo id (the usage snippets load it).
        model: the model that was saved.
        subfolder: the model's folder inside `folder` (a diffusers pipeline component, e.g. "vae").

    Returns:
        the names of the card files in `folder` (README.md, and metrics.json and the PNGs when present).
    """
    folder = Path(folder)
    saved = folder / subfolder if subfolder else folder
    source = getattr(model, "name_or_path", None)
    source = Path(source) if source and os.path.isdir(source) else None
    if (source is not None and not (folder / "metrics.json").exists() and source.resolve() != folder.resolve()
            and (source / "metrics.json").is_file() and _same_weights(saved, source)):
        for name in ("metrics.json", *cards.CARD_IMAGES.values()):
            if (source / name).is_file():
                shutil.copyfile(source / name, folder / name)
    cards.render_card(folder, repo_id, subfolder=subfolder).save(folder / "README.md")
    names = ("README.md", "metrics.json", *cards.CARD_IMAGES.values())
    return [name for name in names if (folder / name).is_file()]


def push_embedded_dataset(
    name: str,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """Push an embedded dataset (`mnist5k` or `digits`) as a Hub dataset repo, in one commit.

    The repo gets the materialised Hub layout (`data/<split>-00000-of-00001.parquet` and the README.md
    dataset card with `dataset_info` and `configs`), so `datasets.load_dataset(repo_id)` gives the same
    rows as `hf_vae.data.load_image_dataset(name)`.

    Returns:
        `huggingface_hub.CommitInfo`.
    """
    from huggingface_hub import HfApi

    from . import __version__, data

    if name not in data.EMBEDDED_DATASETS:
        raise ValueError(f"`name` must be one of the embedded datasets {data.EMBEDDED_DATASETS}, got {name!r}")
    validate_repo_id(repo_id)
    _check_branch(revision)
    folder = data.materialize_embedded_dataset(name, cache_dir)
    api = HfApi(token=token, library_name="hf_vae", library_version=__version__)
    target = f"{repo_id}" + (f"@{revision}" if revision else "")
    try:
        repo_id = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True).repo_id
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=folder,
            revision=revision,
            allow_patterns=["README.md", "data/*.parquet"],
            commit_message=commit_message or f"Upload the embedded {name} dataset with hf_vae {__version__}",
        )
    except ValueError:
        raise
    except (*http_errors(), RuntimeError) as error:
        raise HubPushError(f"pushing dataset {name!r} to {target!r} failed: {type(error).__name__}: "
                           f"{str(error).rstrip('.')}. {_ATOMIC_NOTE}") from error


def _list_files(name_or_path: str, revision: str | None, token) -> list[str]:
    if os.path.isdir(name_or_path):
        return [p.name for p in Path(name_or_path).iterdir() if p.is_file()]
    from huggingface_hub import HfApi

    return HfApi(token=token).list_repo_files(name_or_path, revision=revision)


def _download_config(repo_id: str, revision: str | None, token, name: str) -> tuple[Path, bool]:
    """(path of the repo's config.json, whether it came from the local cache because the Hub is unreachable).

    One `model_info` request first: it answers "no such repo / revision" at once and fails fast when there
    is no network, where `hf_hub_download` alone retries for ~20 s. An unreachable Hub falls back to the
    cache (offline use); `HF_HUB_OFFLINE=1` goes to the cache directly.
    """
    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    offline = bool(constants.HF_HUB_OFFLINE)
    problem = f"`{name}` must be a model folder or a Hub repo id with a config.json, got {repo_id!r}"
    if not offline:
        try:
            HfApi(token=token).model_info(repo_id, revision=revision)
        except (RepositoryNotFoundError, RevisionNotFoundError) as error:
            raise ValueError(f"{problem} (no such folder, and no such repo or revision on the Hub: "
                             f"{str(error).splitlines()[0]})") from None
        except http_errors():
            offline = True  # no network: what the cache holds is all there is
    try:
        return Path(hf_hub_download(repo_id, "config.json", revision=revision, token=token, local_files_only=offline)), offline
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: first
        raise ValueError(f"{problem} (no such folder; the Hub cannot be reached and the repo is not in the cache)") from None
    except EntryNotFoundError:
        raise ValueError(f"{problem} (the repo has no config.json)") from None


def _locate_config(name_or_path, revision: str | None, token, name: str) -> tuple[str, Path, bool]:
    """(source, path of its config.json, whether the Hub was unreachable and the cache answered)."""
    from .strict_loading import check_model_source

    source = check_model_source(name_or_path, name)
    if os.path.isdir(source):
        return source, Path(source) / "config.json", False
    return (source, *_download_config(validate_repo_id(source, name), revision, token, name))


def _parse_config(source: str, path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"config.json of {source!r} must be JSON, got a parse error: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"config.json of {source!r} must be a JSON object, got {type(config).__name__}")
    return config


def read_config(name_or_path, *, revision: str | None = None, token=None, name: str = "repo_id_or_path") -> dict:
    """The `config.json` of a model folder or Hub repo, as a dict, read before anything is instantiated.

    A mistyped local path raises at once ("no such folder", see `strict_loading.check_model_source`); a
    repo id that does not exist, a missing `config.json` or an unreachable Hub (with the repo not cached)
    raise a `ValueError` naming `name` after one request, never a retry loop and a traceback.
    """
    source, path, _ = _locate_config(name_or_path, revision, token, name)
    return _parse_config(source, path)


def load_model(
    repo_id_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    **kwargs,
):
    """`AutoModel.from_pretrained` for hf_vae models, with the checks a download from the Hub deserves.

    - `config.json`'s `model_type` must be an hf_vae family (`hf_vae_families()`); anything else raises a
      `ValueError` naming the type (use `transformers.AutoModel` for other models).
    - Weights load from safetensors only. A repo or folder with only pickle weights (`pytorch_model.bin`,
      which runs code when unpickled) raises a `ValueError` unless `allow_pickle=True`. (transformers 5
      alone loads such files whenever no safetensors file exists, `use_safetensors=None`.)
    - Loading is strict (`HfVaePreTrainedModel.from_pretrained`): missing, unexpected or mismatched
      weights and non-finite values raise a `ValueError` listing them; `strict=False` opts out.
    - A mistyped local path raises at once ("no such folder"); a repo id the Hub does not know raises a
      `ValueError` after one request.

    Args:
        repo_id_or_path: Hub repo id ("user/name") or local folder.
        revision: branch, tag or commit id.
        token: Hub token.
        trust_remote_code: load with the repo's own modeling code instead of the installed hf_vae.
        allow_pickle: opt in to pickle weights from a source you trust.
        **kwargs: passed to `AutoModel.from_pretrained` (`dtype`, `device_map`, ...).
    """
    from transformers import AutoModel

    name, config_path, unreachable = _locate_config(repo_id_or_path, revision, token, "repo_id_or_path")
    if unreachable:
        kwargs["local_files_only"] = True  # the Hub cannot be reached: load from the cache, without retries
    model_type = _parse_config(name, config_path).get("model_type")
    families = hf_vae_families()
    if model_type not in families:
        raise ValueError(
            f"`repo_id_or_path` {name!r} holds a model of type {model_type!r}, which is not an hf_vae family "
            f"{list(families)}; load it with transformers.AutoModel.from_pretrained"
        )
    # Offline, the cached snapshot (config_path's folder) is what there is to list.
    files = [p.name for p in config_path.parent.iterdir()] if unreachable else _list_files(name, revision, token)
    has_safetensors = any(f.endswith(SAFE_WEIGHTS) for f in files)
    pickles = sorted(f for f in files if f.endswith(PICKLE_WEIGHTS))
    if kwargs.get("use_safetensors") is False and not allow_pickle:
        raise ValueError("`use_safetensors=False` loads pickle weights: pass allow_pickle=True as well if you trust the source")
    if not has_safetensors:
        if not pickles:
            raise ValueError(f"`repo_id_or_path` {name!r} has no weights (no *.safetensors file)")
        if not allow_pickle:
            raise ValueError(
                f"`repo_id_or_path` {name!r} has only pickle weights {pickles}; unpickling can run arbitrary code, "
                "so hf_vae loads safetensors only. Pass allow_pickle=True if you trust the source, or convert the "
                "weights to safetensors"
            )
        kwargs["use_safetensors"] = False
    else:
        kwargs.setdefault("use_safetensors", True)
    return AutoModel.from_pretrained(name, revision=revision, token=token, trust_remote_code=trust_remote_code, **kwargs)
