"""The data of a prior over VQ-VAE codes: every split encoded once to code grids, cached in the run dir.

    split of images ──► VQ-VAE.encode_to_indices ──► TensorDictDataset({"indices": (N, h, w), "labels": (N,)})

The code grids are stored under the prior's `main_input_name` (its forward keyword, `indices`), so a batch
is passed to `forward` as it is. The cache (`<run>/codes.pt`) is keyed by that name, the VQ-VAE's name,
revision and weights, and the recipe's data section, so a VQ-VAE retrained in the same folder or another
dataset never reuses stale codes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path

import torch

from ..data import TensorDictDataset, make_eval_loader
from .recipe import Recipe

__all__ = ["encode_splits_to_indices", "prepare_prior_data"]


def encode_splits_to_indices(splits: dict, vqvae, batch_size: int = 256, key: str = "indices") -> dict:
    """Replace the images of every split (any map-style dataset of examples) by the VQ-VAE's code grids:
    `TensorDictDataset({key: (N, h, w) int64, "labels": (N,)})`, read in order, `batch_size` images at a time."""
    vqvae.eval()
    encoded = {}
    for name, split in splits.items():
        if split is None:
            encoded[name] = None
            continue
        codes, labels = [], []
        with torch.no_grad():
            for batch in make_eval_loader(split, batch_size):
                codes.append(vqvae.encode_to_indices(batch["pixel_values"].to(vqvae.device)).cpu())
                labels.extend([batch["labels"]] if "labels" in batch else [])
        tensors = {key: torch.cat(codes), **({"labels": torch.cat(labels)} if labels else {})}
        encoded[name] = TensorDictDataset(tensors, label_names=split.label_names)
    return encoded


def _weights_sha256(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def prepare_prior_data(model, splits: dict, recipe: Recipe, cache_dir: Path) -> dict:
    """For a prior over VQ-VAE codes, encode the dataset to code grids once and cache them in `cache_dir`.

    Any other model gets `splits` back unchanged.
    """
    if type(model).input_kind != "tokens" or model.config.token_source != "vqvae_codes":
        return splits
    if recipe.data.streaming:
        raise ValueError("`data.streaming` must be false for a prior over VQ-VAE codes (the codes of every split are "
                         "computed once and cached), got True")
    if recipe.data.train_binarize == "dynamic":
        raise ValueError("`data.train_binarize` must be 'none' or 'static' for a prior over VQ-VAE codes "
                         "(codes are computed once), got 'dynamic'")
    if recipe.data.augment_shift:
        raise ValueError("`data.augment_shift` must be 0 for a prior over VQ-VAE codes (codes are computed once, "
                         f"from unshifted images), got {recipe.data.augment_shift}")
    from ..generation import load_vqvae

    vqvae = load_vqvae(model)
    # What the codes depend on; how the data are read (workers, prefetching, in memory or not) does not count.
    data = {k: v for k, v in dataclasses.asdict(recipe.data).items() if k not in ("num_workers", "prefetch_factor", "in_memory")}
    key = {"vqvae": model.config.vqvae_name_or_path, "revision": model.config.vqvae_revision,
           "weights_sha256": _weights_sha256(vqvae), "data": data, "input_name": model.main_input_name}
    cache = cache_dir / "codes.pt"
    if cache.exists():
        try:  # never unpickle a file from the run folder: tensors, dicts and strings only
            saved = torch.load(cache, weights_only=True)
        except Exception as error:  # noqa: BLE001 (any unreadable cache is re-encoded)
            warnings.warn(f"ignoring the VQ-code cache {cache}: {error}", stacklevel=2)
            saved = {"key": None}
        if isinstance(saved, dict) and saved.get("key") == key:
            return {name: None if tensors is None else TensorDictDataset(tensors, label_names=splits[name].label_names)
                    for name, tensors in saved["splits"].items()}
    encoded = encode_splits_to_indices(splits, vqvae, key=model.main_input_name)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "splits": {name: None if split is None else split.tensors for name, split in encoded.items()}}, cache)
    return encoded
