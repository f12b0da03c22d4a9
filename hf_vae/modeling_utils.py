"""What every hf_vae model shares: input checks, weight init, and saving its own code beside the weights.

`save_pretrained` writes the modeling files flat into the folder (relative imports rewritten to
`from .x import`) and an `auto_map` in config.json, so the folder, or a Hub repo made from it, loads
with `AutoModel.from_pretrained(..., trust_remote_code=True)` where hf_vae is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from .distributions import nats_to_bits_per_dim
from .sampling import check_sampling_args, is_guided
from .validation import check_choice, check_float, check_generator, check_int

CAPABILITIES = frozenset({"sample", "encode", "reconstruct", "score", "interpolate"})

# `from .x import`, `from ..x import`, `from ...x import`, `from ..family.x import`: the package's own modules.

_RELATIVE_IMPORT = re.compile(r"^(\s*from\s+)(\.+)(\w+(?:\.\w+)*)(\s+import\b)", flags=re.MULTILINE)


def _resolve(module, dots: str, name: str) -> str:
    return importlib.util.resolve_name(dots + name, module.__package__)


def remote_code_sources(module_name: str) -> dict[str, str]:
    """The source of `module_name` and of every package module it imports relatively, flattened.

    Returns {file name: source with relative imports rewritten to one dot}. File names must be
    unique across the package for the flat layout to work (the families keep them so).
    """
    sources: dict[str, str] = {}
    pending = [module_name]
    while pending:
        module = importlib.import_module(pending.pop())
        path = Path(module.__file__)
        if path.name in sources:
            continue
        text = path.read_text(encoding="utf-8")
        for match in _RELATIVE_IMPORT.finditer(text):
            pending.append(_resolve(module, match.group(2), match.group(3)))
        # Flat layout: `from ..vae.modeling_vae import` becomes `from .modeling_vae import`.
        sources[path.name] = _RELATIVE_IMPORT.sub(lambda m: f"{m[1]}.{m[3].rsplit('.', 1)[-1]}{m[4]}", text)
    return sources


class HfVaePreTrainedModel(PreTrainedModel):
    """Base class of the hf_vae models (weight init, input checks, self-contained `save_pretrained`)."""

    main_input_name = "pixel_values"
    base_model_prefix = "model"
    # The AutoModel class that loads this family from its own saved code.
    _remote_auto_class = "AutoModel"

    # -- The family protocol: what callers (trainer, `evaluate`, pipelines, cards, Hub) read instead of
    # model types or method signatures. Every family sets these on its model class (docs/design.md).
    #: What `forward` reads: `"images"` (`pixel_values` (B, C, H, W) in [0, 1]) or `"tokens"` (`indices`
    #: (B, h, w) integer grids); `main_input_name` is the keyword it reads them under.
    input_kind: ClassVar[str | None] = None
    #: Whether `forward` takes `global_step` (the optimizer step, e.g. for a KL warm-up).
    takes_global_step: ClassVar[bool] = False
    #: The `hf_vae.evaluation.EVALUATORS` entry that `evaluate` runs for this family.
    evaluator: ClassVar[str | None] = None
    #: The family's model card template in `model_cards/`.
    card_template: ClassVar[str | None] = None
    #: What the family can do, a subset of `CAPABILITIES`: `"sample"` (`sample(num_samples, *, generator,
    #: labels, temperature, guidance_scale)`), `"encode"` (`encode`/`decode`), `"reconstruct"`,
    #: `"score"` (`log_likelihood` or an equivalent per-example score), `"interpolate"`.
    capabilities: ClassVar[frozenset[str] | None] = None
    #: Keyword options of `sample` beyond the shared `generator`, `labels`, `temperature`, `guidance_scale`
    #: (e.g. `top_k`, `top_p` for the token priors); pipelines reject any other option by name.
    sample_options: ClassVar[frozenset[str]] = frozenset()

    def schedule_values(self, global_step: int) -> dict[str, float]:
        """Training-schedule values the model applies at `global_step` (e.g. `{"kl_weight": ...}`), for logging."""
        return {}

    @property
    def is_conditional(self) -> bool:
        """Whether the model takes class `labels` (a conditional family, or a prior with `num_classes` set)."""
        return False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's default init for conv/linear/embedding/norm layers. transformers guards the
        # torch.nn.init functions during `from_pretrained`, so loaded weights are never overwritten.
        if module is not self and hasattr(module, "reset_parameters"):
            module.reset_parameters()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, reading safetensors only unless the caller opts in.

        transformers would otherwise unpickle a `pytorch_model.bin` silently (pickle runs code); pass
        `use_safetensors=False` to accept such weights from a source you trust.
        """
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(*args, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` (safetensors only) plus the modeling code and `auto_map`.

        The code files make the folder loadable with `trust_remote_code=True` without hf_vae.
        """
        if kwargs.get("safe_serialization") is False:
            raise ValueError("`safe_serialization` must be True: hf_vae writes safetensors only, got False")
        config_module = type(self.config).__module__
        model_module = type(self).__module__
        self.config.auto_map = {
            "AutoConfig": f"{config_module.rsplit('.', 1)[-1]}.{type(self.config).__name__}",
            self._remote_auto_class: f"{model_module.rsplit('.', 1)[-1]}.{type(self).__name__}",
        }
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            sources = remote_code_sources(config_module) | remote_code_sources(model_module)
            for file_name, text in sources.items():
                Path(save_directory, file_name).write_text(text, encoding="utf-8")
        return result


# ---------------------------------------------------------------------------------------------
# Token grids: the inputs of the autoregressive priors (VQ-VAE codes or quantized pixels)
# ---------------------------------------------------------------------------------------------

TOKEN_SOURCES = ("vqvae_codes", "pixels")


def check_token_prior_fields(config) -> None:
    """Validate the fields every token-prior config shares (same names in each prior family).

    `pixel_levels` None means `vocab_size` for pixel tokens; it is filled in so a saved config is explicit.
    """
    check_int("vocab_size", config.vocab_size, minimum=2)
    check_int("grid_size", config.grid_size, minimum=1)
    if config.num_classes is not None:
        check_int("num_classes", config.num_classes, minimum=1)
    check_float("label_dropout", config.label_dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)
    if config.num_classes is None and config.label_dropout != 0:
        raise ValueError(
            f"`label_dropout` must be 0 for an unconditional prior (num_classes=None), got {config.label_dropout!r}"
        )
    for name in ("vqvae_name_or_path", "vqvae_revision"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"`{name}` must be a string or None, got {value!r}")
    check_choice("token_source", config.token_source, TOKEN_SOURCES)
    if config.token_source == "pixels":
        if config.pixel_levels is None:
            config.pixel_levels = config.vocab_size
        check_int("pixel_levels", config.pixel_levels, minimum=2)
        if config.pixel_levels != config.vocab_size:
            raise ValueError(
                f"`pixel_levels` must equal vocab_size={config.vocab_size} for pixel tokens, got {config.pixel_levels!r}"
            )
    elif config.pixel_levels is not None:
        raise ValueError(f"`pixel_levels` must be None unless token_source='pixels', got {config.pixel_levels!r}")


def pixels_to_tokens(pixel_values: torch.Tensor, levels: int, name: str = "pixel_values") -> torch.Tensor:
    """Single-channel images (B, 1, H, W) with values on the grid t / (levels - 1) -> tokens t (B, H, W) long.

    Values off the grid raise (quantize first, e.g. binarize for `levels=2`): never silently rounded.
    """
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        got = pixel_values.dtype if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"`{name}` must be a floating-point tensor with values in [0, 1], got {got}")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != 1:
        raise ValueError(f"`{name}` must have shape (batch, 1, H, W), got {tuple(pixel_values.shape)}")
    scaled = pixel_values[:, 0] * (levels - 1)
    tokens = scaled.round()
    if not torch.all((scaled - tokens).abs() <= 1e-4) or tokens.min() < 0 or tokens.max() > levels - 1:
        raise ValueError(f"`{name}` must hold values on the {levels}-level grid t / {levels - 1} in [0, 1]")
    return tokens.long()


def tokens_to_pixels(tokens: torch.Tensor, levels: int) -> torch.Tensor:
    """Tokens t (B, H, W) -> single-channel images t / (levels - 1), shape (B, 1, H, W) in [0, 1]."""
    return (tokens.float() / (levels - 1)).unsqueeze(1)


class TokenPriorPreTrainedModel(HfVaePreTrainedModel):
    """Base of the autoregressive token priors: what follows from an exact `log_likelihood` and the
    token <-> pixel mapping, written once for every prior family."""

    main_input_name = "input_ids"
    input_kind = "tokens"
    evaluator = "token_prior"
    capabilities = frozenset({"sample", "score"})
    sample_options = frozenset({"top_k", "top_p"})

    @property
    def is_conditional(self) -> bool:
        return self.config.num_classes is not None

    @property
    def null_class(self) -> int | None:
        """The class index that means "no label" (label dropout, classifier-free guidance)."""
        return self.config.num_classes

    def _check_sampling(self, num_samples, labels, temperature, top_k, top_p, guidance_scale, generator):
        """Validate `sample`'s arguments; returns (labels as a (N,) tensor or None, whether guidance is on)."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be an int >= 1, got {num_samples!r}")
        check_sampling_args(temperature, top_k, top_p, guidance_scale)
        check_generator(generator)
        if isinstance(labels, int) and not isinstance(labels, bool):
            labels = torch.full((num_samples,), labels, dtype=torch.long)
        guided = is_guided(guidance_scale)
        if guided and (labels is None or self.config.label_dropout == 0):
            raise ValueError(
                "`guidance_scale` != 1 needs `labels` and a prior trained with label dropout "
                f"(label_dropout={self.config.label_dropout}), got {guidance_scale!r}"
            )
        return labels, guided

    def bits_per_token(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-log2 p(input_ids) / (H * W) per example, shape (B,)."""
        return nats_to_bits_per_dim(-self.log_likelihood(input_ids, labels), self.config.grid_size**2)

    def bits_per_dim(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Bits per pixel of single-channel quantized images (one token per pixel), shape (B,).

        Only pixel tokens have pixels to count; for VQ-VAE codes use `bits_per_token`.
        """
        if self.config.token_source != "pixels":
            raise ValueError(
                "`token_source` must be 'pixels' for bits per dim (one token per pixel); "
                f"got {self.config.token_source!r}: use bits_per_token for VQ-VAE codes"
            )
        return self.bits_per_token(input_ids, labels)

    def pixels_to_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Quantized single-channel images (B, 1, H, W) on the grid t / (pixel_levels - 1) -> tokens (B, H, W)."""
        if self.config.token_source != "pixels":
            raise ValueError(f"`token_source` must be 'pixels' to convert pixels, got {self.config.token_source!r}")
        return pixels_to_tokens(pixel_values, self.config.pixel_levels)

    def tokens_to_pixels(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (B, H, W) -> single-channel images t / (pixel_levels - 1), shape (B, 1, H, W)."""
        if self.config.token_source != "pixels":
            raise ValueError(f"`token_source` must be 'pixels' to convert tokens, got {self.config.token_source!r}")
        return tokens_to_pixels(tokens, self.config.pixel_levels)
