"""What the transformers and diffusers pipelines share: the checks that a model can do a task and takes
the options given, read from the family protocol (`capabilities`, `*_options`, `is_conditional`,
`input_kind`: see `HfVaePreTrainedModel`). No maths here: every number comes from a model method (or
`hf_vae.generation.generate_images`, which chains two of them).

The protocol is declared on the model classes, so the same code also drives models loaded as remote code
(`trust_remote_code=True`: the classes come from the repo's copy of the modeling files).
"""

from __future__ import annotations

import numbers

import torch

from ..generation import generate_images, load_vqvae
from ..modeling_utils import check_prior_matches_vqvae
from ..validation import check_int

#: The options every `sample` takes (the shared vocabulary); a family adds its `sample_options`.
SAMPLE_OPTIONS = frozenset({"generator", "labels", "temperature", "guidance_scale"})


def check_capability(model, capability: str, task: str, hint: str = "", name: str = "model") -> None:
    """Raise a `ValueError` naming the argument `name` unless `model` is an hf_vae model that can `capability`."""
    capabilities = getattr(type(model), "capabilities", None) or frozenset()
    if capability not in capabilities:
        raise ValueError(
            f"`{name}` must be an hf_vae model with the {capability!r} capability for {task}, got "
            f"{type(model).__name__} (capabilities {sorted(capabilities)}){hint}"
        )


def _check_conditional(model, labels) -> None:
    """`labels` go only to a conditional model."""
    if labels is not None and not model.is_conditional:
        raise ValueError(f"`labels` must be None for {type(model).__name__}: the model is unconditional, got {labels!r}")


def check_options(model, method: str, accepted: frozenset[str], **options) -> dict:
    """The options that are set (not None), checked against what `model.<method>` takes: any other raises
    a `ValueError` naming it. `labels` go only to a conditional model; given to another, they raise. A
    `seed` (the pipelines' shorthand) is accepted where `generator` is, and becomes one."""
    kwargs = {}
    for name, value in options.items():
        if value is None:
            continue
        if name == "labels":
            _check_conditional(model, value)
        if name not in accepted and name != "labels" and not (name == "seed" and "generator" in accepted):
            raise ValueError(
                f"`{name}` is not an option of {type(model).__name__}.{method}, got {name}={value!r}; "
                f"it takes {sorted(accepted)}"
            )
        kwargs[name] = value
    if "seed" in kwargs:
        kwargs["generator"] = make_generator(kwargs.pop("generator", None), kwargs.pop("seed"))
    return kwargs


def is_code_prior(model) -> bool:
    """Whether `model` is a token prior over VQ-VAE codes (whose samples a VQ-VAE decodes)."""
    return type(model).input_kind == "tokens" and model.config.token_source == "vqvae_codes"


def resolve_vqvae(model, vqvae=None, **from_pretrained_kwargs):
    """The VQ-VAE a prior over VQ-VAE codes needs, checked against the prior; `None` for any other model.

    `vqvae` may be a model, a repo id / folder, or `None` for the one recorded in
    `model.config.vqvae_name_or_path` (loaded once, here, not on every call).
    """
    if not is_code_prior(model):
        if vqvae is not None:
            raise ValueError(
                f"`vqvae` must be None: only a token prior over VQ-VAE codes decodes through a VQ-VAE, got it for a "
                f"{type(model).__name__}"
            )
        return None
    if vqvae is None:
        return load_vqvae(model, **from_pretrained_kwargs)
    if isinstance(vqvae, str):  # its model_type is read first, then it loads strictly
        return load_vqvae(model, vqvae, name="vqvae", **from_pretrained_kwargs)
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


def as_labels(model, labels, batch_size: int) -> torch.Tensor | None:
    """User labels -> the class ids (batch_size,) the model methods take, through the model's own
    conversion (`model.class_ids`): an id or a class name for every image, a list mixing ids and names
    (`model.config.label_names`), or an integer tensor. `None` stays `None`."""
    if labels is None:
        return None
    _check_conditional(model, labels)
    return model.class_ids(labels, batch_size)


def sample_images(model, num_samples: int, *, vqvae=None, progress: bool = False, **options) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] from a generative model: `model.sample` for an image model, and
    `generate_images` (prior samples, then the VQ-VAE decoder or the pixel map) for a token prior.

    Options (`labels`, `guidance_scale`, `temperature`, the family's `sample_options`, `generator`) go to
    that method; one it does not take raises a `ValueError` naming it. `labels` may be class names
    (`as_labels`).
    """
    check_capability(
        model, "sample", "image generation",
        ": a VQ-VAE has no prior; sample with a token prior over its codes (and pass the VQ-VAE as `vqvae`)",
    )
    check_int("num_samples", num_samples, minimum=1)  # before the labels are expanded to it
    kwargs = check_options(model, "sample", SAMPLE_OPTIONS | type(model).sample_options, **options)
    if "labels" in kwargs:
        kwargs["labels"] = as_labels(model, kwargs["labels"], num_samples)
    if type(model).input_kind == "tokens":
        if is_code_prior(model) and vqvae is None:
            raise ValueError("`vqvae` must be the VQ-VAE whose codes the prior models, got None")
        return generate_images(model, num_samples, vqvae=vqvae, progress=progress, **kwargs)
    return model.sample(num_samples, **kwargs)
