"""What the transformers and diffusers pipelines share: which model method serves which family, and the
argument checks around them. No maths here: every number comes from a model method (or
`hf_vae.generation.generate_images`, which chains two of them).

Families are told apart by `config.model_type`, never by class, so the same code also drives models
loaded as remote code (`trust_remote_code=True`, classes from the repo rather than from hf_vae).
"""

from __future__ import annotations

import inspect
import numbers

import torch

from ..generation import check_prior_matches_vqvae, generate_images, load_vqvae

LATENT_FAMILIES = ("vae", "cvae")
TOKEN_PRIORS = ("pixelcnn_prior", "transformer_prior")
GENERATIVE_FAMILIES = LATENT_FAMILIES + TOKEN_PRIORS
ENCODER_FAMILIES = LATENT_FAMILIES + ("vqvae",)
ALL_FAMILIES = ENCODER_FAMILIES + TOKEN_PRIORS

# Arguments whose value changes nothing: a model that does not take them accepts them at this value.
NEUTRAL_VALUES = {"guidance_scale": 1.0}


def model_type(model) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def check_family(model, families: tuple[str, ...], task: str, hint: str = "", name: str = "model") -> str:
    """The model's `model_type`, or a `ValueError` naming the argument `name` when `task` does not apply to it."""
    family = model_type(model)
    if family not in families:
        raise ValueError(
            f"`{name}` must be an hf_vae model of type {families} for {task}, got "
            f"{type(model).__name__} (model_type {family!r}){hint}"
        )
    return family


def is_code_prior(model) -> bool:
    return model_type(model) in TOKEN_PRIORS and model.config.token_source == "vqvae_codes"


def resolve_vqvae(model, vqvae=None, **from_pretrained_kwargs):
    """The VQ-VAE a prior over VQ-VAE codes needs, checked against the prior; `None` for any other model.

    `vqvae` may be a model, a repo id / folder, or `None` for the one recorded in
    `model.config.vqvae_name_or_path` (loaded once, here, not on every call).
    """
    if not is_code_prior(model):
        if vqvae is not None:
            raise ValueError(
                f"`vqvae` must be None: only a token prior over VQ-VAE codes decodes through a VQ-VAE, got a "
                f"{type(model).__name__} (model_type {model_type(model)!r})"
            )
        return None
    if vqvae is None:
        return load_vqvae(model, **from_pretrained_kwargs)
    if isinstance(vqvae, str):
        from transformers import AutoModel

        vqvae = AutoModel.from_pretrained(vqvae, **from_pretrained_kwargs)
    check_prior_matches_vqvae(model, vqvae)
    return vqvae.eval()


def make_generator(generator=None, seed=None) -> torch.Generator | None:
    """`generator` as given, or a new CPU generator seeded with `seed` (a CPU generator drives any device)."""
    if seed is None:
        return generator
    if generator is not None:
        raise ValueError(f"`seed` must be None when `generator` is given (pass one of them), got seed={seed!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))


def as_labels(labels, batch_size: int | None = None):
    """User labels -> what the model methods take: `None`, an int (one class for every image), or a long
    tensor (B,). An int is expanded to `batch_size` when given. Class ids are checked by the model."""
    if labels is None or isinstance(labels, torch.Tensor):
        return labels
    if isinstance(labels, numbers.Integral) and not isinstance(labels, bool):
        return int(labels) if batch_size is None else torch.full((batch_size,), int(labels), dtype=torch.long)
    if isinstance(labels, (list, tuple)) and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in labels):
        return torch.tensor([int(x) for x in labels], dtype=torch.long)
    raise ValueError(f"`labels` must be an int, a list of ints or an integer tensor of class ids, got {labels!r}")


def call_with_options(method, owner, /, *args, **options):
    """`method(*args, **options)`, raising a `ValueError` that names any option the method does not take
    (e.g. `labels` for an unconditional VAE) unless it is `None` or at its neutral value
    (`guidance_scale=1`). `None` means "the method's default": it is passed only to a parameter that has
    no default, so the method's own check names it (e.g. a CVAE's required `labels`)."""
    accepted = inspect.signature(method).parameters
    # A method that forwards `**kwargs` (`generate_images` to `prior.sample`) leaves the check to its target.
    forwards = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in accepted.values())
    kwargs = {}
    for name, value in options.items():
        if name not in accepted:
            if value is None or NEUTRAL_VALUES.get(name, object()) == value:
                continue
            if forwards:
                kwargs[name] = value
                continue
            takes = sorted(p for p in accepted if p not in ("self", "num_samples", "pixel_values", "progress"))
            raise ValueError(
                f"`{name}` is not supported by {type(owner).__name__} (model_type {model_type(owner)!r}), got "
                f"{name}={value!r}; it takes {takes}"
            )
        if value is not None or accepted[name].default is inspect.Parameter.empty:
            kwargs[name] = value
    return method(*args, **kwargs)


def reject_options(owner, reason: str, **options) -> None:
    """Raise a `ValueError` naming the first option that is not `None`: `owner` has no use for it."""
    for name, value in options.items():
        if value is not None:
            raise ValueError(
                f"`{name}` must be None for {type(owner).__name__} (model_type {model_type(owner)!r}): {reason}, "
                f"got {name}={value!r}"
            )


def sample_images(model, num_images: int, *, vqvae=None, progress: bool = False, **options) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] from a generative model: `model.sample` for a VAE / CVAE, and
    `generate_images` (prior samples, then the VQ-VAE decoder or the pixel map) for a token prior.

    Options (`labels`, `guidance_scale`, `temperature`, `top_k`, `top_p`, `generator`) go to that method;
    one it does not take raises a `ValueError` naming it.
    """
    family = check_family(
        model, GENERATIVE_FAMILIES, "image generation",
        ": a VQ-VAE has no prior; sample with a token prior over its codes (and pass the VQ-VAE as `vqvae`)",
    )
    options["labels"] = as_labels(options.get("labels"))
    if family in TOKEN_PRIORS:
        if is_code_prior(model) and vqvae is None:
            raise ValueError("`vqvae` must be the VQ-VAE whose codes the prior models, got None")
        return call_with_options(generate_images, model, model, num_images, vqvae=vqvae, progress=progress, **options)
    return call_with_options(model.sample, model, num_images, **options)
