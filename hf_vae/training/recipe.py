"""The recipe: a YAML file of five sections (`model`, `data`, `training`, `evaluation`, `hub`), every key
known and every value checked before anything is built, plus `--set section.key=value` overrides.

See `hf_vae/recipes/` for the recipes of every family.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import SchedulerType

from ..data import BAD_IMAGE_POLICIES, BINARIZE_MODES
from ..validation import check_bool, check_choice, check_float, check_int
from .tracking import resolve_trackers

__all__ = ["DataArgs", "EvaluationArgs", "HubArgs", "ModelArgs", "Recipe", "TrainingArgs", "build_model"]


class _RecipeLoader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; recipes and `--set` read it as the float people mean."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_RecipeLoader)


@dataclass
class ModelArgs:
    """`model:` section. `family` is the model_type (vae, cvae, vqvae, ...); `config` its fields."""

    family: str = "vae"
    config: dict = field(default_factory=dict)


@dataclass
class DataArgs:
    """`data:` section: which dataset, which splits, how they are read, and how images become tensors."""

    dataset: str = "mnist5k"  # embedded name, Hub dataset id or local folder (or `train(recipe, dataset=...)`)
    config_name: str | None = None  # the dataset's configuration (datasets.load_dataset(name=...))
    revision: str | None = None  # Hub branch, tag or commit; the commit it resolved to goes to metrics.json
    train_split: str = "train"
    test_split: str = "test"
    validation_split: str | None = None  # an existing split for evaluation during training / early stopping
    test_size: int | float | None = None  # carve the test split from train (count or fraction) when there is none
    validation_size: int | float = 0  # carve (stratified) a validation split from train: count or fraction
    streaming: bool = False  # read as a stream (IterableDataset): nothing is downloaded or converted up front
    shuffle_buffer_size: int = 1000  # streaming: examples in the shuffle buffer (0: stored order)
    in_memory: str | bool = "auto"  # auto: splits that fit in 512 MiB as float32 are decoded once into tensors
    num_workers: int = 2  # DataLoader workers that decode on-the-fly splits (streams are read in the main process)
    prefetch_factor: int = 2  # batches each worker reads ahead
    image_column: str | None = None
    label_column: str | None = None
    image_size: int | None = None
    center_crop: int | None = None  # a centred square of this side, before resizing to image_size
    num_channels: int | None = None
    train_binarize: str = "none"  # none | static | dynamic (dynamic: a fresh Bernoulli draw every step)
    eval_binarize: str = "none"  # none | static (the fixed binarization the benchmarks report on)
    binarize_seed: int = 0  # also seeds the carving of held-out splits
    on_bad_image: str = "raise"  # raise | skip: an undecodable image names its split and row, or is skipped and counted
    # Translate each training image by an integer offset in [-n, n] down and across, zero fill (0: off); drawn
    # from the step's seed, before dynamic binarization. Train split only.
    augment_shift: int = 0


@dataclass
class TrainingArgs:
    """`training:` section: optimisation, logging, evaluation and checkpoint cadence."""

    output_dir: str = "runs/run"
    seed: int = 0
    batch_size: int = 64
    max_steps: int = 1000
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"  # no | bf16 | fp16
    channels_last: bool = False  # NHWC convolutions (faster with oneDNN on CPU, esp. with bf16)
    log_every: int = 50
    eval_every: int = 500
    save_every: int = 500
    save_total_limit: int = 2
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    keep_best: bool = True  # end with the weights of the best validation evaluation
    # Any of Accelerate's trackers (tensorboard, wandb, trackio, mlflow, ...) and jsonl; a name, a list, or `all`.
    trackers: list | str = field(default_factory=lambda: ["tensorboard", "jsonl"])
    gradient_checkpointing: bool = False  # recompute the repeated blocks in the backward pass: less memory, more time
    progress: bool = True
    max_time_minutes: float | None = None  # stop (validate and save the last step) after this wall-clock budget
    on_nonfinite: str = "stop"  # stop | skip: a non-finite loss term raises, or its optimizer step is skipped
    # Evaluate, select and save an exponential moving average of the weights (e.g. 0.999; null: off), averaged
    # from optimizer step `ema_start_step` on (the trained weights are evaluated until then).
    ema_decay: float | None = None
    ema_start_step: int = 0


@dataclass
class EvaluationArgs:
    """`evaluation:` section: the final test evaluation and the PNGs."""

    batch_size: int = 100
    num_importance_samples: int = 1000  # k of the final test NLL (0: ELBO only)
    validation_importance_samples: int = 0  # k during training (0: ELBO only, fast)
    # "bf16": the test NLL's decoder passes under bf16 autocast (VAE/CVAE only): ~2.4x less CPU time, error of the
    # mean ~0.002 nats (benchmarks/results/iwae_speed.md); the estimator then says "bf16 decoder".
    decoder_precision: str = "fp32"
    max_examples: int | None = None
    num_samples: int = 64  # images in samples.png


@dataclass
class HubArgs:
    """`hub:` section: push the finished run to the Hub."""

    push_to_hub: bool = False
    hub_model_id: str | None = None
    private: bool = False


@dataclass
class Recipe:
    """A whole training run: `Recipe.from_yaml(path, overrides)`, then `hf_vae.training.train(recipe)`."""

    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    training: TrainingArgs = field(default_factory=TrainingArgs)
    evaluation: EvaluationArgs = field(default_factory=EvaluationArgs)
    hub: HubArgs = field(default_factory=HubArgs)

    @classmethod
    def from_dict(cls, raw: dict) -> Recipe:
        """Build a recipe, rejecting unknown sections and keys by name."""
        if not isinstance(raw, dict):
            raise ValueError(f"`recipe` must be a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f.default_factory for f in dataclasses.fields(cls)}  # section name -> its dataclass
        kwargs = {}
        for section, values in raw.items():
            check_choice("recipe section", section, sorted(sections))
            section_cls = sections[section]
            known = {f.name for f in dataclasses.fields(section_cls)}
            values = values or {}
            for key in values:
                if key not in known:
                    raise ValueError(f"recipe key `{section}.{key}` must be one of the `{section}` keys {sorted(known)}, got {key!r}")
            kwargs[section] = section_cls(**values)
        recipe = cls(**kwargs)
        recipe.check()
        return recipe

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
        """Load a YAML recipe; `overrides` are `section.key=value` strings (value parsed as YAML)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"`recipe` must be a YAML file, got {str(path)!r} which does not exist")
        raw = _load_yaml(path.read_text()) or {}
        for override in overrides or []:
            key, sep, value = override.partition("=")
            if not sep or "." not in key:
                raise ValueError(f"`override` must look like `section.key=value`, got {override!r}")
            section, _, name = key.partition(".")
            target = raw.setdefault(section, {}) or {}
            raw[section] = target
            if section == "model" and name.startswith("config."):
                target.setdefault("config", {})[name.removeprefix("config.")] = _load_yaml(value)
            else:
                target[name] = _load_yaml(value)
        return cls.from_dict(raw)

    def to_dict(self) -> dict:
        """The recipe as nested plain dicts (what `metrics.json` records)."""
        return dataclasses.asdict(self)

    def to_flat_dict(self) -> dict:
        """`{"section.key": value}` (and `"model.config.field"`) with scalar values, for the trackers' hparams."""
        flat = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                items = {f"{key}.{sub}": v for sub, v in value.items()} if isinstance(value, dict) else {key: value}
                for name, item in items.items():
                    flat[f"{section}.{name}"] = item if isinstance(item, (int, float, str, bool)) else str(item)
        return flat

    def check(self) -> None:
        """Reject bad values before anything is built, naming the recipe field: every number of every
        section (counts are ints, rates finite floats), the model config (an unknown key is named with
        the family's fields), and the Hub repo id, so nothing fails only after training."""
        t, d, e, h = self.training, self.data, self.evaluation, self.hub
        for name in ("batch_size", "max_steps", "log_every", "eval_every", "save_every", "gradient_accumulation_steps", "save_total_limit"):
            check_int(f"training.{name}", getattr(t, name), minimum=1)
        for name in ("seed", "warmup_steps", "ema_start_step"):
            check_int(f"training.{name}", getattr(t, name), minimum=0)
        if t.early_stopping_patience is not None:
            check_int("training.early_stopping_patience", t.early_stopping_patience, minimum=1)
        check_float("training.learning_rate", t.learning_rate, minimum=0, exclusive_minimum=True)
        check_float("training.weight_decay", t.weight_decay, minimum=0)
        for name in ("adam_beta1", "adam_beta2"):
            check_float(f"training.{name}", getattr(t, name), minimum=0, maximum=1, exclusive_maximum=True)
        if t.max_grad_norm is not None:  # 0 turns clipping off
            check_float("training.max_grad_norm", t.max_grad_norm, minimum=0)
        if t.ema_decay is not None:
            check_float("training.ema_decay", t.ema_decay, minimum=0, maximum=1, exclusive_maximum=True)
        elif t.ema_start_step:
            raise ValueError(f"`training.ema_start_step` must be 0 without `training.ema_decay` (no EMA), got {t.ema_start_step}")
        if t.max_time_minutes is not None:
            check_float("training.max_time_minutes", t.max_time_minutes, minimum=0, exclusive_minimum=True)
        for name in ("channels_last", "gradient_checkpointing", "keep_best", "progress"):
            check_bool(f"training.{name}", getattr(t, name))
        check_choice("training.lr_scheduler", t.lr_scheduler, [kind.value for kind in SchedulerType])
        check_choice("training.mixed_precision", t.mixed_precision, ("no", "bf16", "fp16"))
        check_choice("training.on_nonfinite", t.on_nonfinite, ("stop", "skip"))
        resolve_trackers(t.trackers, "training.trackers")  # known names whose packages are installed
        if t.gradient_checkpointing:
            _check_gradient_checkpointing(self.model.family)

        for name in ("batch_size", "num_samples"):
            check_int(f"evaluation.{name}", getattr(e, name), minimum=1)
        for name in ("num_importance_samples", "validation_importance_samples"):  # 0: ELBO only
            check_int(f"evaluation.{name}", getattr(e, name), minimum=0)
        if e.max_examples is not None:
            check_int("evaluation.max_examples", e.max_examples, minimum=1)
        from ..families import check_decoder_precision  # imported here, as `build_config` imports the registry

        check_decoder_precision("evaluation.decoder_precision", e.decoder_precision, self.model.family)
        k = self.model.config.get("train_importance_samples")
        if isinstance(k, int) and k > 1 and e.validation_importance_samples == 0:
            # The IWAE objective maximises a tighter bound than the ELBO, not the ELBO, so choosing the best
            # checkpoint by -ELBO can keep an earlier, worse model (vae_ablation.py's IWAE rows select by NLL).
            warnings.warn(f"`evaluation.validation_importance_samples` is 0 with model.config.train_importance_samples={k}: "
                          "the best checkpoint then follows the validation -ELBO, which this objective does not minimise; "
                          "set it (e.g. 50) to keep the checkpoint with the best validation NLL", UserWarning, stacklevel=3)
        _check_data(d)

        check_bool("hub.push_to_hub", h.push_to_hub)
        check_bool("hub.private", h.private)
        if h.push_to_hub and not h.hub_model_id:
            raise ValueError("`hub.hub_model_id` must be set when `hub.push_to_hub` is true, got None")
        if h.hub_model_id is not None:
            from ..hub import validate_repo_id

            validate_repo_id(h.hub_model_id, name="hub.hub_model_id")
        build_config(self)  # the model config checks its fields (and rejects unknown keys) on construction


def _check_split_size(name: str, value, allow_none: bool) -> None:
    if value is None and allow_none or value == 0 and not allow_none:
        return
    if isinstance(value, float) and not isinstance(value, bool):
        check_float(name, value, minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    else:
        check_int(name, value, minimum=1)


def _check_data(d: DataArgs) -> None:
    """The `data:` section's values, and the combinations that cannot work."""
    for name in ("dataset", "train_split", "test_split"):
        if not isinstance(getattr(d, name), str) or not getattr(d, name):
            raise ValueError(f"`data.{name}` must be a non-empty string, got {getattr(d, name)!r}")
    for name in ("config_name", "revision", "validation_split", "image_column", "label_column"):
        if getattr(d, name) is not None and not isinstance(getattr(d, name), str):
            raise ValueError(f"`data.{name}` must be a string or null, got {getattr(d, name)!r}")
    _check_split_size("data.test_size", d.test_size, allow_none=True)
    _check_split_size("data.validation_size", d.validation_size, allow_none=False)
    for name in ("binarize_seed", "shuffle_buffer_size", "num_workers", "augment_shift"):
        check_int(f"data.{name}", getattr(d, name), minimum=0)
    check_int("data.prefetch_factor", d.prefetch_factor, minimum=1)
    for name in ("image_size", "num_channels", "center_crop"):
        if getattr(d, name) is not None:
            check_int(f"data.{name}", getattr(d, name), minimum=1)
    check_bool("data.streaming", d.streaming)
    check_choice("data.in_memory", d.in_memory, ("auto", True, False))
    check_choice("data.on_bad_image", d.on_bad_image, BAD_IMAGE_POLICIES)
    check_choice("data.train_binarize", d.train_binarize, BINARIZE_MODES)
    # Evaluation needs fixed data: no dynamic binarization there.
    check_choice("data.eval_binarize", d.eval_binarize, ("none", "static"))
    if d.streaming and d.in_memory is True:
        raise ValueError("`data.in_memory` must be auto or false with `data.streaming: true`, got True")
    if d.streaming and d.train_binarize == "static":
        raise ValueError("`data.train_binarize` must be none or dynamic with `data.streaming: true` (a static "
                         "binarization is seeded by row, and a shuffled stream has no rows), got 'static'")


def _check_gradient_checkpointing(family: str) -> None:
    """`training.gradient_checkpointing: true` needs a family whose model supports it."""
    from ..families import FAMILIES, model_types

    check_choice("model.family", family, model_types())
    if not FAMILIES[family].supports_gradient_checkpointing:
        raise ValueError(f"`training.gradient_checkpointing` must be false for the {family!r} family "
                         "(its model does not support gradient checkpointing), got True")


def build_config(recipe: Recipe):
    """The config of `recipe.model.family` from `recipe.model.config` (config errors name the field)."""
    from transformers import AutoConfig

    from ..families import model_types  # importing hf_vae registers every family

    check_choice("model.family", recipe.model.family, model_types())
    if not isinstance(recipe.model.config, dict):
        raise ValueError(f"`model.config` must be a mapping of config fields, got {recipe.model.config!r}")
    try:
        return AutoConfig.for_model(recipe.model.family, **recipe.model.config)
    except ValueError as error:
        raise ValueError(f"{error} (recipe section `model.config`)") from None


def build_model(recipe: Recipe):
    """A fresh model of `recipe.model.family` from `recipe.model.config` (config errors name the field)."""
    from transformers import AutoModel

    return AutoModel.from_config(build_config(recipe))
