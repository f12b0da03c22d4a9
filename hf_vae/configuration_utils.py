"""The config bases: `HfVaeConfig` (every family, a `PreTrainedConfig` that checks its fields when built)
and `TokenPriorConfig` (the fields every token prior shares), and a conditional model's class names
(`set_label_names`, `has_label_names`).

transformers 5 configs are dataclasses; `@strict` would raise its own error types, so the families
validate in `__post_init__` and raise `ValueError` naming the field, the expected and the received value.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

from transformers import PreTrainedConfig

from .likelihoods import LIKELIHOODS
from .validation import check_choice, check_float, check_int, check_int_list, check_keys

#: The non-linearities of the convolutional autoencoder: config name -> `torch.nn` module class name
#: (`models/modeling_autoencoder.py` builds them; kept here so a config imports no modeling code).
ACTIVATIONS = {"silu": "SiLU", "relu": "ReLU", "gelu": "GELU", "elu": "ELU"}


@functools.cache
def _transformers_config_keys() -> frozenset[str]:
    """Keys a config takes besides its dataclass fields that transformers 5 itself knows.

    `PreTrainedConfig.__init__` sets the dataclass fields and hands every other keyword to `__post_init__`,
    which consumes some (`torch_dtype`, `num_labels`, the attention implementations, rope and generation
    parameters, ...) and sets the rest as attributes: a typo would be kept silently. The keys below are
    the ones `__post_init__` and `PreTrainedConfig.from_dict` read, plus those transformers tooling writes
    into config.json (`auto_map` for remote code, `custom_pipelines` for a saved pipeline,
    `quantization_config`, `_name_or_path` of older releases).
    """
    from transformers import GenerationConfig

    post_init_keys = {
        "torch_dtype", "num_labels", "name_or_path", "_name_or_path", "_commit_hash", "output_attentions",
        "attn_implementation", "experts_implementation", "per_layer_config", "rope_scaling", "rope_theta",
        "rope_parameters", "_attn_implementation_internal", "_experts_implementation_internal",
    }
    written_keys = {"auto_map", "custom_pipelines", "quantization_config", "model_type"}
    return frozenset(post_init_keys | written_keys | set(GenerationConfig._get_default_generation_params()))


class HfVaeConfig(PreTrainedConfig):
    """Base of the hf_vae configs: subclasses declare fields and implement `_check_fields`.

    An unknown keyword (a typo such as `latnt_dim`) raises a `ValueError` naming it and listing the
    family's fields; the keys transformers itself knows (`architectures`, `auto_map`, `dtype`,
    `transformers_version`, ...) and a prior's `legacy_field_names` still load.
    """

    @classmethod
    def field_names(cls) -> list[str]:
        """The family's own fields (the dataclass fields that `PreTrainedConfig` does not declare)."""
        base = {field.name for field in dataclasses.fields(PreTrainedConfig)}
        return [field.name for field in dataclasses.fields(cls) if field.name not in base]

    def __post_init__(self, **kwargs):
        # transformers names of our fields (`attribute_map`) are set before the checks, so they are checked too.
        for alias in set(self.attribute_map) & set(kwargs):
            setattr(self, alias, kwargs.pop(alias))
        check_keys(f"{type(self).__name__} fields", kwargs, self.field_names(), also_accepted=_transformers_config_keys())
        # JSON turns tuples into lists; keep one type so a reloaded config compares equal.
        for field_name, field_value in list(vars(self).items()):
            if isinstance(field_value, tuple):
                setattr(self, field_name, list(field_value))
        self._check_fields()
        super().__post_init__(**kwargs)  # turns the JSON's string keys of `id2label` back into ints
        _check_id2label(self)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """`PreTrainedConfig.from_dict`, then the checks again: it sets keyword overrides
        (`from_pretrained(path, beta=2.0)`) as attributes after construction, unchecked."""
        result = super().from_dict(config_dict, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        config._check_fields()
        _check_id2label(config)
        return result

    @property
    def label_names(self) -> list[str] | None:
        """A conditional model's class names, index = class id (`set_label_names`); `None` when none were set."""
        return _label_names(self)

    def _check_fields(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Class names: `id2label` / `label2id`, as transformers' classifiers store them
# ---------------------------------------------------------------------------------------------


def _is_placeholder(id2label: dict) -> bool:
    """transformers' own filler ({0: 'LABEL_0', 1: 'LABEL_1'} on every config): no names."""
    return all(value == f"LABEL_{key}" for key, value in id2label.items())


def _label_names(config) -> list[str] | None:
    num_classes = getattr(config, "num_classes", None)
    id2label = getattr(config, "id2label", None) or {}
    if num_classes is None or len(id2label) != num_classes or _is_placeholder(id2label):
        return None
    return [id2label.get(class_id) for class_id in range(num_classes)]


def _are_names(names, num_classes: int) -> bool:
    """`names` are `num_classes` unique non-empty strings (class id = position)."""
    return (isinstance(names, (list, tuple)) and len(names) == num_classes and len(set(names)) == num_classes
            and all(isinstance(label, str) and label for label in names))


def _check_id2label(config) -> None:
    """A conditional config's `id2label`, when it holds names, names every class 0..num_classes-1 once
    (catches a config.json edited by hand, or `from_pretrained(path, num_classes=...)` contradicting it)."""
    num_classes = getattr(config, "num_classes", None)
    id2label = getattr(config, "id2label", None) or {}
    if num_classes is None or _is_placeholder(id2label):
        return  # an unconditional model's id2label is transformers' business (the key still loads)
    if sorted(id2label) != list(range(num_classes)) or not _are_names(list(id2label.values()), num_classes):
        raise ValueError(f"`id2label` must map the class ids 0..{num_classes - 1} (num_classes={num_classes}) to "
                         f"unique non-empty names, got {id2label!r}")


def set_label_names(config, names: list[str]) -> None:
    """Give a conditional model's config its class names: `config.id2label = {id: name}` and
    `config.label2id = {name: id}` (saved in config.json, so they survive `save_pretrained` /
    `from_pretrained` and the Hub). Then `sample`, the pipelines and the CLI take `labels` by name.

    Args:
        config: the config of a conditional model (a CVAE, or a prior with `num_classes` set).
        names: `num_classes` unique non-empty strings, `names[i]` the name of class i (e.g. a dataset's
            `ClassLabel` names, `hf_vae.data.get_label_names(features)`).
    """
    num_classes = getattr(config, "num_classes", None)
    if not isinstance(config, HfVaeConfig) or num_classes is None:
        raise ValueError(f"`config` must be the config of a conditional hf_vae model (num_classes set), got "
                         f"{type(config).__name__}" + ("" if not isinstance(config, HfVaeConfig) else " with num_classes=None"))
    if not _are_names(names, num_classes):
        raise ValueError(f"`names` must be a list of {num_classes} unique non-empty strings (num_classes="
                         f"{num_classes}), got {names!r}")
    config.id2label = {class_id: str(label) for class_id, label in enumerate(names)}
    config.label2id = {label: class_id for class_id, label in config.id2label.items()}


def has_label_names(config) -> bool:
    """Whether `config` holds class names (`set_label_names`): transformers' placeholder
    `{0: 'LABEL_0', 1: 'LABEL_1'}`, found on every config, is not names (nor is any `LABEL_<id>` list)."""
    return _label_names(config) is not None


TOKEN_SOURCES = ("vqvae_codes", "pixels")


class TokenPriorConfig(HfVaeConfig):
    r"""Base of the token-prior configs: the fields every prior over a square grid of integer tokens shares.

    A prior family adds its network's fields (`hidden_size`, `num_layers`, ...) and checks them in
    `_check_fields` after calling this one.

    Args:
        vocab_size (`int`, defaults to 512): number of distinct tokens; ids live in [0, vocab_size).
        grid_size (`int`, defaults to 8): height and width of the square token grid.
        num_classes (`int`, *optional*): number of classes for class-conditional modelling; `None` is
            unconditional. A conditional prior also learns the null label (index `num_classes`).
        label_dropout (`float`, defaults to 0.0): probability that a training label is replaced by the
            null label, so one model is also unconditional (needed for classifier-free guidance).
        vqvae_name_or_path (`str`, *optional*): the VQ-VAE whose codes this prior models (recorded only).
        vqvae_revision (`str`, *optional*): its revision (recorded only).
        token_source (`str`, defaults to `"vqvae_codes"`): `"vqvae_codes"` or `"pixels"` (quantized pixels).
        pixel_levels (`int`, *optional*): for pixel tokens, the number of grey levels; token t is the pixel
            value t / (pixel_levels - 1). Must equal `vocab_size`; `None` fills it in. Must be `None` for codes.
        num_channels (`int`, defaults to 1): image channels of pixel tokens; 3 models RGB images with one
            token per subpixel, drawn R -> G -> B within each pixel (token grids (B, 3, H, W)). Must be 1 for
            VQ-VAE codes and for families that do not model channels.
    """

    #: Field names of earlier releases -> today's names. A config.json written with an old name loads
    #: into the new field (the old key is never written again).
    legacy_field_names: ClassVar[dict[str, str]] = {}

    vocab_size: int = 512
    grid_size: int = 8
    num_classes: int | None = None
    label_dropout: float = 0.0
    vqvae_name_or_path: str | None = None
    vqvae_revision: str | None = None
    token_source: str = "vqvae_codes"
    pixel_levels: int | None = None
    num_channels: int = 1

    def __post_init__(self, **kwargs):
        # Unknown keys arrive here (the dataclass fields are already set): rename the old ones before checking.
        for old_name, new_name in self.legacy_field_names.items():
            if old_name in kwargs:
                setattr(self, new_name, kwargs.pop(old_name))
        super().__post_init__(**kwargs)

    def _check_fields(self) -> None:
        """Validate the shared fields; `pixel_levels` None becomes `vocab_size` for pixel tokens (explicit when saved)."""
        check_int("vocab_size", self.vocab_size, minimum=2)
        check_int("grid_size", self.grid_size, minimum=1)
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, minimum=1)
        check_float("label_dropout", self.label_dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        if self.num_classes is None and self.label_dropout != 0:
            raise ValueError(
                f"`label_dropout` must be 0 for an unconditional prior (num_classes=None), got {self.label_dropout!r}"
            )
        for name in ("vqvae_name_or_path", "vqvae_revision"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"`{name}` must be a string or None, got {value!r}")
        check_choice("token_source", self.token_source, TOKEN_SOURCES)
        if self.token_source == "pixels":
            if self.pixel_levels is None:
                self.pixel_levels = self.vocab_size
            check_int("pixel_levels", self.pixel_levels, minimum=2)
            if self.pixel_levels != self.vocab_size:
                raise ValueError(
                    f"`pixel_levels` must equal vocab_size={self.vocab_size} for pixel tokens, got {self.pixel_levels!r}"
                )
        elif self.pixel_levels is not None:
            raise ValueError(f"`pixel_levels` must be None unless token_source='pixels', got {self.pixel_levels!r}")
        check_int("num_channels", self.num_channels, minimum=1)
        if self.num_channels > 1 and self.token_source != "pixels":
            raise ValueError(f"`num_channels` must be 1 for VQ-VAE codes (token_source={self.token_source!r}), got {self.num_channels!r}")


class AutoencoderConfig(HfVaeConfig):
    r"""Base of the convolutional autoencoder configs (VAE, CVAE, VQ-VAE): the fields of the shared
    encoder/decoder core (`hf_vae/models/modeling_autoencoder.py`) and of p(x|z), with their checks.

    Args:
        image_size (`int`, defaults to 28): height and width of the square input images.
        num_channels (`int`, defaults to 1): image channels (1 grey, 3 RGB).
        hidden_channels (`list[int]`, defaults to `[32, 64]`): encoder widths, one stride-2 stage each
            (the decoder mirrors them); `image_size` must be divisible by `2 ** len(hidden_channels)`.
        num_res_blocks (`int`, defaults to 1): residual blocks after each encoder stage and before each
            decoder stage.
        likelihood (`str`, defaults to `"bernoulli"`): p(x|z); `"bernoulli"` for binary images,
            `"gaussian"` for continuous ones, `"discretized_gaussian"` or `"discretized_logistic_mixture"`
            (PixelCNN++'s, channels conditioned R -> G -> B) for 8-bit images (honest bits/dim).
        likelihood_scale (`float`, *optional*): fixed standard deviation of the Gaussian likelihoods;
            `None` learns a per-pixel scale. Ignored by the others.
        num_mixtures (`int`, defaults to 5): components of `"discretized_logistic_mixture"` per pixel.
        dropout (`float`, defaults to 0.0): dropout inside the residual blocks.
        activation (`str`, defaults to `"silu"`): non-linearity of encoder and decoder.
    """

    image_size: int = 28
    num_channels: int = 1
    hidden_channels: list[int] | tuple[int, ...] = (32, 64)
    num_res_blocks: int = 1
    likelihood: str = "bernoulli"
    likelihood_scale: float | None = None
    num_mixtures: int = 5
    dropout: float = 0.0
    activation: str = "silu"

    def _check_fields(self) -> None:
        check_int("image_size", self.image_size, minimum=1)
        check_int("num_channels", self.num_channels, minimum=1)
        check_int_list("hidden_channels", self.hidden_channels)
        check_int("num_res_blocks", self.num_res_blocks, minimum=0)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        if self.likelihood_scale is not None:
            check_float("likelihood_scale", self.likelihood_scale, minimum=0.0, exclusive_minimum=True)
        check_int("num_mixtures", self.num_mixtures, minimum=1)
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, exclusive_maximum=True)
        check_choice("activation", self.activation, ACTIVATIONS)
        factor = 2 ** len(self.hidden_channels)
        if self.image_size % factor != 0:
            raise ValueError(
                f"`image_size` must be divisible by 2 ** len(hidden_channels) = {factor}, got {self.image_size}"
            )

    @property
    def latent_grid_size(self) -> int:
        """Side of the encoder's output grid: image_size / 2 ** len(hidden_channels)."""
        return self.image_size // 2 ** len(self.hidden_channels)
