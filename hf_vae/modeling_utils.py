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

from .distributions import nats_to_bits_per_dim, uniform
from .images import quantize as quantize_images
from .modeling_outputs import ScoreOutput
from .sampling import LogitsFn, check_sampling_args, is_guided, sample_tokens
from .strict_loading import check_loaded, check_model_source, check_model_type
from .validation import check_float, check_generator, check_int, to_class_ids

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
    #: Keyword options of `reconstruct(pixel_values, labels=None, **options)` (e.g. `sample_posterior`).
    reconstruct_options: ClassVar[frozenset[str]] = frozenset()
    #: Keyword options of `score(pixel_values, labels=None, **options) -> ScoreOutput` that a user may set
    #: (e.g. `num_importance_samples`); pipelines reject any other option by name.
    score_options: ClassVar[frozenset[str]] = frozenset()

    def schedule_values(self, global_step: int) -> dict[str, float]:
        """Training-schedule values the model applies at `global_step` (e.g. `{"kl_weight": ...}`), for logging."""
        return {}

    @property
    def is_conditional(self) -> bool:
        """Whether the model takes class `labels` (a conditional family, or a prior with `num_classes` set)."""
        return False

    def class_ids(self, labels, batch_size: int, name: str = "labels") -> torch.Tensor | None:
        """`labels` as a user passes them -> checked class ids (batch_size,) long (`hf_vae.validation.to_class_ids`):
        an id or a class name (`config.label_names`) for every example, a list mixing them, or an integer
        tensor. `None` stays `None`; an unconditional model rejects anything else."""
        num_classes = self.config.num_classes if self.is_conditional else None
        return to_class_ids(labels, num_classes, batch_size, self.config.label_names, name)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's default init for conv/linear/embedding/norm layers. transformers guards the
        # torch.nn.init functions during `from_pretrained`, so loaded weights are never overwritten.
        if module is not self and hasattr(module, "reset_parameters"):
            module.reset_parameters()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, strict: bool = True, **kwargs):
        """`PreTrainedModel.from_pretrained`, strict and reading safetensors only unless the caller opts out.

        With `strict=True` (the default) loading raises a `ValueError` instead of warning when:
        the folder does not exist (a path, not a repo id) or has no `config.json`; the config's
        `model_type` is not this class's (e.g. a VAE folder given to `VQVAEModel`); any weight is missing
        (a `config.json` edited to add a layer), unexpected or of another shape; or any loaded parameter
        or buffer is not finite (flipped bytes). `strict=False` gives transformers' behaviour (random
        init of what is missing, with a warning), for surgery on checkpoints you trust.

        transformers would otherwise unpickle a `pytorch_model.bin` silently (pickle runs code); pass
        `use_safetensors=False` to accept such weights from a source you trust.
        """
        kwargs.setdefault("use_safetensors", True)
        if not strict:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        name = check_model_source(pretrained_model_name_or_path, "pretrained_model_name_or_path")
        check_model_type(cls, name, kwargs)  # before anything is instantiated
        return_info = kwargs.pop("output_loading_info", False)
        # Mismatched shapes are listed with the other problems by check_loaded, not raised by transformers alone.
        kwargs.setdefault("ignore_mismatched_sizes", True)
        model, info = super().from_pretrained(name, *args, output_loading_info=True, **kwargs)
        check_loaded(model, info, name)
        return (model, info) if return_info else model

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` (safetensors only) plus the modeling code and `auto_map`, and
        the model's image processor (`preprocessor_config.json`; see `save_model_image_processor`).

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
            try:  # absolute, in a try: this file is also the repo's remote code, which runs without hf_vae
                from hf_vae.image_processing import save_model_image_processor
            except ImportError:
                pass  # remote code where hf_vae is not installed: the folder's own preprocessor_config.json stays
            else:
                save_model_image_processor(self, save_directory)
        return result

    def _upload_modified_files(self, working_dir, repo_id, files_timestamps, **kwargs):
        """The last step of `push_to_hub` and `save_pretrained(push_to_hub=True)`: the hf_vae card
        (`hf_vae.hub.write_push_card`, with the run's metrics when there are any) replaces transformers'
        boilerplate README.md, and the card's files are uploaded with it."""
        try:  # an absolute import in a try: this file is also the repo's remote code, which runs without hf_vae
            from hf_vae.hub import write_push_card
        except ImportError:  # remote code where hf_vae is not installed: transformers' own README.md
            return super()._upload_modified_files(working_dir, repo_id, files_timestamps, **kwargs)
        card_files = write_push_card(working_dir, repo_id, self)
        files_timestamps = {name: t for name, t in files_timestamps.items() if name not in card_files}
        return super()._upload_modified_files(working_dir, repo_id, files_timestamps, **kwargs)


# ---------------------------------------------------------------------------------------------
# Token grids: the inputs of the autoregressive priors (VQ-VAE codes or quantized pixels)
# ---------------------------------------------------------------------------------------------


def pixels_to_indices(pixel_values: torch.Tensor, levels: int, name: str = "pixel_values", num_channels: int = 1) -> torch.Tensor:
    """Images (B, C, H, W) with values on the grid t / (levels - 1) -> long indices t, one token per subpixel:
    (B, H, W) for single-channel images (`num_channels=1`), (B, C, H, W) for colour ones.

    Values off the grid raise (quantize first, e.g. binarize for `levels=2`): never silently rounded.
    """
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        got = pixel_values.dtype if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"`{name}` must be a floating-point tensor with values in [0, 1], got {got}")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != num_channels:
        raise ValueError(f"`{name}` must have shape (batch, {num_channels}, H, W), got {tuple(pixel_values.shape)}")
    scaled = pixel_values * (levels - 1)
    tokens = scaled.round()
    if not torch.all((scaled - tokens).abs() <= 1e-4) or tokens.min() < 0 or tokens.max() > levels - 1:
        raise ValueError(f"`{name}` must hold values on the {levels}-level grid t / {levels - 1} in [0, 1], got values off it")
    tokens = tokens.long()
    return tokens[:, 0] if num_channels == 1 else tokens


def indices_to_pixels(indices: torch.Tensor, levels: int) -> torch.Tensor:
    """Indices t, (B, H, W) or colour (B, C, H, W) -> images t / (levels - 1), shape (B, C, H, W) in [0, 1]."""
    pixels = indices.float() / (levels - 1)
    return pixels.unsqueeze(1) if indices.ndim == 3 else pixels


class SamplingMixin:
    """`sample` with the shared vocabulary, written and checked once for every family that samples.

    `sample(num_samples, *, generator=None, labels=None, temperature=1.0, guidance_scale=1.0, **options)`
    checks the shared arguments and the family's options (its `sample_options`), turns the labels (ids or
    class names) into (N,) class ids (`class_ids`), then calls the family's `_draw(num_samples, *,
    generator, labels, temperature, guidance_scale, **options)`, which draws.
    """

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        *,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | int | str | list[int | str] | None = None,
        temperature: float = 1.0,
        guidance_scale: float = 1.0,
        **options,
    ) -> torch.Tensor:
        """Draw `num_samples` new examples (images, or token grids for a prior); see the family's `_draw`.

        Args:
            num_samples: N, how many to draw.
            generator: drives every draw (reproducible samples).
            labels: a conditional model's classes: (N,) ids (a tensor, or a list that may mix ids and class
                names such as `["3", "cat"]`, see `config.label_names`), or one id or name for all N; `None`
                draws from the unconditional model (the null label). Must be None for an unconditional model.
            temperature: scale of the randomness (> 0; < 1 gives more typical samples).
            guidance_scale: classifier-free guidance (>= 0; 1 = none); != 1 needs `labels`.
            options: the family's `sample_options` (e.g. the VAE's `output`, the priors' `top_k`, `top_p`).
        """
        check_int("num_samples", num_samples, minimum=1)
        check_generator(generator)
        check_float("temperature", temperature, minimum=0.0, exclusive_minimum=True)
        for name, value in options.items():
            if name not in self.sample_options:
                raise ValueError(f"`{name}` must be a sample option of {type(self).__name__} "
                                 f"({sorted(self.sample_options) or 'none'}), got {value!r}")
        labels = self.class_ids(labels, num_samples)
        self._check_guidance(guidance_scale, labels)
        return self._draw(num_samples, generator=generator, labels=labels, temperature=temperature,
                            guidance_scale=guidance_scale, **options)

    def _check_guidance(self, guidance_scale, labels) -> None:
        """`guidance_scale` is a finite number >= 0, and 1 unless there are `labels` to guide towards."""
        check_float("guidance_scale", guidance_scale, minimum=0.0)
        if guidance_scale != 1 and labels is None:
            kind = "a conditional model without `labels`" if self.is_conditional else "an unconditional model"
            raise ValueError(f"`guidance_scale` must be 1 for {kind} (guidance contrasts conditional and "
                             f"unconditional outputs), got {guidance_scale!r}")


def check_prior_matches_vqvae(prior, vqvae) -> None:
    """Raise unless the prior's vocabulary and grid are the VQ-VAE's codebook and code grid."""
    if getattr(vqvae.config, "model_type", None) != "vqvae":
        raise ValueError(f"`vqvae` must be a VQ-VAE, got model_type {getattr(vqvae.config, 'model_type', None)!r}")
    if prior.config.vocab_size != vqvae.config.codebook_size:
        raise ValueError(f"`prior.config.vocab_size` ({prior.config.vocab_size}) must equal the VQ-VAE codebook_size ({vqvae.config.codebook_size})")
    if prior.config.grid_size != vqvae.config.code_grid_size:
        raise ValueError(f"`prior.config.grid_size` ({prior.config.grid_size}) must equal the VQ-VAE code grid ({vqvae.config.code_grid_size})")


class TokenPriorPreTrainedModel(SamplingMixin, HfVaePreTrainedModel):
    """Base of the autoregressive token priors: the conditioning, `sample`, the bits and the token <->
    pixel mapping, written once for every prior family.

    A family implements the network and two hooks: `log_likelihood(indices, labels=None)` and
    `_next_token_logits(condition_ids, **decoding_options)`, the `logits_fn` that `hf_vae.sampling.sample_tokens`
    calls once per position.
    """

    main_input_name = "indices"
    input_kind = "tokens"
    evaluator = "token_prior"
    capabilities = frozenset({"sample", "score"})
    score_options = frozenset({"quantize"})
    #: Keyword options of `sample` that change how a family decodes, never what it draws (the transformer's
    #: `use_cache`); `_draw` passes them to `_next_token_logits`. A family with decoding options adds
    #: them to its `sample_options`.
    decoding_options: ClassVar[frozenset[str]] = frozenset()
    sample_options = frozenset({"top_k", "top_p", "progress"})

    @property
    def is_conditional(self) -> bool:
        return self.config.num_classes is not None

    @property
    def null_label(self) -> int | None:
        """The class id that means "no label" (label dropout, classifier-free guidance); None if unconditional."""
        return self.config.num_classes

    def _condition_ids(self, labels, batch_size: int, generator=None, drop_labels: bool = False) -> torch.Tensor:
        """Labels (B,) (ids or class names, see `class_ids`) -> the ids (B,) the network is conditioned on.

        A conditional prior reads the class ids, with the null label where labels are missing or dropped
        (label dropout when `drop_labels`, drawn with `generator`). An unconditional prior reads 0 for
        every example: the transformer's single BOS token; the PixelCNN has no class bias to read it with.
        """
        labels = self.class_ids(labels, batch_size)
        if self.config.num_classes is None:
            return torch.zeros(batch_size, dtype=torch.long, device=self.device)
        if labels is None:
            if self.config.label_dropout == 0:
                raise ValueError(
                    "`labels` must be class ids (required: this prior is class-conditional and has no unconditional "
                    "mode without label dropout, label_dropout=0), got None"
                )
            return torch.full((batch_size,), self.null_label, dtype=torch.long, device=self.device)
        labels = labels.to(self.device)
        if drop_labels and self.config.label_dropout > 0:
            drop = uniform((batch_size,), generator=generator, device=labels.device) < self.config.label_dropout
            labels = labels.masked_fill(drop, self.null_label)
        return labels

    def _next_token_logits(self, condition_ids: torch.Tensor, **decoding_options) -> LogitsFn:
        """The `logits_fn(tokens, position, state) -> (logits (rows, vocab_size), state)` that samples this
        prior with one condition id per row (see `hf_vae.sampling`)."""
        raise NotImplementedError

    def _draw(self, num_samples: int, *, generator, labels, temperature, guidance_scale, top_k: int | None = None,
                top_p: float | None = None, progress: bool = True, **decoding_options) -> torch.Tensor:
        """`sample` for token priors: N token grids (N, grid_size, grid_size) drawn in raster order by
        `hf_vae.sampling.sample_tokens`, every argument checked before the first draw.

        Options: `top_k`, `top_p` (see `hf_vae.sampling.sample_from_logits`), `progress` (a progress bar
        over the grid positions) and the family's `decoding_options` (the transformer's `use_cache`).
        Without labels, a conditional prior samples its unconditional model (the null label, which needs
        `label_dropout > 0`); so does guidance.
        """
        check_sampling_args(temperature, top_k, top_p, guidance_scale)
        guided = is_guided(guidance_scale)
        if guided and self.config.label_dropout == 0:
            raise ValueError(
                "`guidance_scale` must be 1 unless `labels` are given to a prior trained with label dropout "
                f"(label_dropout={self.config.label_dropout}), got {guidance_scale!r}"
            )
        condition_ids = self._condition_ids(labels, num_samples)
        if guided:  # one null-label row per sample: the unconditional half of classifier-free guidance
            condition_ids = torch.cat([condition_ids, torch.full_like(condition_ids, self.null_label)])
        size, channels = self.config.grid_size, self.config.num_channels
        tokens = sample_tokens(
            self._next_token_logits(condition_ids, **decoding_options), num_samples, self.num_tokens,
            temperature=temperature, top_k=top_k, top_p=top_p, guidance_scale=guidance_scale,
            generator=generator, device=self.device, progress=progress,
        )
        if channels == 1:
            return tokens.view(num_samples, size, size)
        # Colour pixels are drawn pixel by pixel, R -> G -> B within a pixel: (N, H, W, C) -> (N, C, H, W).
        return tokens.view(num_samples, size, size, channels).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def score(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, *, vqvae=None,
              quantize: bool | None = None) -> ScoreOutput:
        """-log p per image in nats, exactly: of the image's VQ-VAE code grid (a prior over codes, given the
        `vqvae`), or of the image as pixel tokens (a prior over pixels; the image is first rounded to the
        `pixel_levels` grid unless `quantize=False`, which requires images already on it). Any float dtype
        is taken (the pixels become integer tokens); integer images raise, as their scale is unknown."""
        if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
            got = pixel_values.dtype if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(f"`pixel_values` must be a floating-point tensor with values in [0, 1], got {got}")
        if self.config.token_source == "vqvae_codes":
            if quantize is not None:
                raise ValueError(f"`quantize` must be None for a prior over VQ-VAE codes (only pixel priors quantize), got {quantize!r}")
            if vqvae is None:
                raise ValueError("`vqvae` must be the VQ-VAE whose codes the prior models, got None")
            check_prior_matches_vqvae(self, vqvae)
            indices = vqvae.encode_to_indices(pixel_values.to(vqvae.device, vqvae.dtype))
            return ScoreOutput(score=-self.log_likelihood(indices, labels),
                               estimator="exact, -log p(codes) of the VQ-VAE code grid", num_dims=None)
        if vqvae is not None:
            raise ValueError(f"`vqvae` must be None for a prior over pixels, got {type(vqvae).__name__}")
        levels = self.config.pixel_levels
        estimator = "exact"
        if quantize is not False:
            pixel_values, estimator = quantize_images(pixel_values, levels), f"exact, image quantized to {levels} levels"
        score = -self.log_likelihood(self.pixels_to_indices(pixel_values), labels)
        return ScoreOutput(score=score, estimator=estimator, num_dims=pixel_values[0].numel())

    @property
    def num_tokens(self) -> int:
        """Tokens per example: H * W, times the channels for colour pixel tokens (one token per subpixel)."""
        return self.config.num_channels * self.config.grid_size**2

    def bits_per_token(self, indices: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-log2 p(indices) / num_tokens per example, shape (B,)."""
        return nats_to_bits_per_dim(-self.log_likelihood(indices, labels), self.num_tokens)

    def bits_per_dim(self, indices: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Bits per dimension of quantized images, -log2 p(x) / (C * H * W) with one token per subpixel
        (the 8-bit convention for 256 levels), shape (B,).

        Only pixel tokens have pixels to count; for VQ-VAE codes use `bits_per_token`.
        """
        if self.config.token_source != "pixels":
            raise ValueError(
                "`token_source` must be 'pixels' for bits per dim (one token per pixel); "
                f"got {self.config.token_source!r}: use bits_per_token for VQ-VAE codes"
            )
        return self.bits_per_token(indices, labels)

    def pixels_to_indices(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Quantized images (B, C, H, W) on the grid t / (pixel_levels - 1) -> indices (B, H, W), or
        (B, C, H, W) for colour (`num_channels` > 1)."""
        if self.config.token_source != "pixels":
            raise ValueError(f"`token_source` must be 'pixels' to convert pixels, got {self.config.token_source!r}")
        return pixels_to_indices(pixel_values, self.config.pixel_levels, num_channels=self.config.num_channels)

    def indices_to_pixels(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, H, W) or colour (B, C, H, W) -> images t / (pixel_levels - 1), shape (B, C, H, W)."""
        if self.config.token_source != "pixels":
            raise ValueError(f"`token_source` must be 'pixels' to convert tokens, got {self.config.token_source!r}")
        return indices_to_pixels(indices, self.config.pixel_levels)
