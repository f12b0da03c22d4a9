"""Images from a token prior in one call: the prior samples a token grid, then the grid becomes pixels
(quantized-pixel tokens map straight back; VQ-VAE codes go through the VQ-VAE's decoder)."""

from __future__ import annotations

import importlib

import torch

from .modeling_utils import check_prior_matches_vqvae, indices_to_pixels
from .strict_loading import check_model_source


def _loaders():
    """(read_config, load_model): hf_vae.hub's (fast failures, strict, safetensors only), or in the
    remote-code copy of these files, where hub.py is absent, transformers' equivalents (the models'
    `from_pretrained` is strict there too)."""
    try:  # imported by name so that the remote-code copy does not pull hub.py (which needs hf_vae) along
        hub = importlib.import_module(".hub", __package__)
    except ImportError:
        from transformers import AutoModel, PretrainedConfig

        def read_config(name_or_path, *, revision=None, name="name_or_path", **hub_kwargs):
            source = check_model_source(name_or_path, name)
            return PretrainedConfig.get_config_dict(source, revision=revision, **hub_kwargs)[0]

        return read_config, AutoModel.from_pretrained
    return hub.read_config, hub.load_model


def load_vqvae(prior, name_or_path=None, *, name: str = "prior.config.vqvae_name_or_path", **from_pretrained_kwargs):
    """The VQ-VAE whose codes `prior` models: `name_or_path` (a repo id or folder), or by default the repo
    id / path and revision recorded in the prior's config; checked against the prior.

    Its `config.json` is read first: a model that is not a VQ-VAE raises a `ValueError` naming `name`
    before anything is instantiated. Loading goes through `hf_vae.hub.load_model` (strict, safetensors only).
    """
    config = prior.config
    if config.token_source != "vqvae_codes":
        raise ValueError(f"`prior` must model VQ-VAE codes to have a VQ-VAE, got token_source={config.token_source!r}")
    if name_or_path is None:
        name_or_path = config.vqvae_name_or_path
        from_pretrained_kwargs.setdefault("revision", config.vqvae_revision)
    if not name_or_path:
        raise ValueError(f"`{name}` must name the VQ-VAE (repo id or folder), got {name_or_path!r}")
    read_config, load_model = _loaders()
    hub_kwargs = {k: from_pretrained_kwargs[k] for k in ("revision", "token") if k in from_pretrained_kwargs}
    model_type = read_config(name_or_path, name=name, **hub_kwargs).get("model_type")
    if model_type != "vqvae":
        raise ValueError(f"`{name}` must name a VQ-VAE (model_type 'vqvae'), got {str(name_or_path)!r} of model_type {model_type!r}")
    vqvae = load_model(name_or_path, **from_pretrained_kwargs)
    check_prior_matches_vqvae(prior, vqvae)
    return vqvae.eval()


def prior_vqvae(prior, vqvae=None):
    """The VQ-VAE whose codes `prior` models: `vqvae` checked against the prior (returned as it is, on its own
    device), or when None the one the prior's config records (`load_vqvae`, in eval mode)."""
    if vqvae is None:
        return load_vqvae(prior)
    check_prior_matches_vqvae(prior, vqvae)
    return vqvae


@torch.no_grad()
def generate_images(prior, num_samples: int, *, vqvae=None, **sample_kwargs) -> torch.Tensor:
    """Sample `num_samples` images (N, C, H, W) in [0, 1] from a token prior (two-stage for VQ-VAE codes).

    Args:
        prior: a `PixelCNNPriorModel` or `TransformerPriorModel`.
        vqvae: the VQ-VAE decoding the codes; `None` loads the one recorded in `prior.config`.
        sample_kwargs: `prior.sample`'s keyword arguments (`generator`, `labels`, `temperature`,
            `guidance_scale`, `top_k`, `top_p`, `progress`), checked there before anything is drawn.
    """
    if prior.config.token_source == "pixels":
        return indices_to_pixels(prior.sample(num_samples, **sample_kwargs), prior.config.pixel_levels)
    vqvae = prior_vqvae(prior, vqvae)  # loaded and checked before the (slow) sampling starts
    indices = prior.sample(num_samples, **sample_kwargs)
    return vqvae.decode_from_indices(indices.to(vqvae.device))
