"""The one training loop of every family, on Accelerate.

A recipe (YAML, see `training/configs/`) names the model family and config, the dataset and the
optimisation. `train(recipe)` builds the model, opens the data through `hf_vae.data`, and only logs and
backpropagates the model's own `loss`. It checkpoints with `accelerator.save_state` (atomically, with
the step/epoch/early-stopping position in a registered `TrainState`, since `load_state` restores
neither the counter nor the step), resumes exactly with `resume=True`, and ends with `save_pretrained`,
`metrics.json`, and sample / reconstruction / training-curve PNGs in the run directory.

Run it with `hf-vae train RECIPE.yaml` or `accelerate launch training/train.py RECIPE.yaml`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState
from accelerate.utils import ProjectConfiguration
from accelerate.tracking import GeneralTracker, on_main_process
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, get_scheduler
from transformers.utils import logging as transformers_logging

from . import data as hf_data
from .evaluation import Metric, evaluate, to_flat_dict
from .images import image_grid
from .modeling_utils import pixels_to_tokens

# ---------------------------------------------------------------------------------------------
# The recipe: every key known, every value checked before training starts
# ---------------------------------------------------------------------------------------------


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
    """`data:` section: which dataset and how its images become tensors."""

    dataset: str = "mnist5k"
    revision: str | None = None
    train_split: str = "train"
    test_split: str = "test"
    validation_size: int = 0  # examples carved (stratified) from train for evaluation / early stopping
    image_column: str | None = None
    label_column: str | None = None
    image_size: int | None = None
    num_channels: int | None = None
    train_binarize: str = "none"  # none | static | dynamic (dynamic: a fresh Bernoulli draw every step)
    eval_binarize: str = "none"  # none | static (the fixed binarization the benchmarks report on)
    binarize_seed: int = 0


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
    trackers: list = field(default_factory=lambda: ["tensorboard", "jsonl"])
    progress: bool = True
    max_time_minutes: float | None = None  # stop (and save) after this wall-clock budget


@dataclass
class EvaluationArgs:
    """`evaluation:` section: the final test evaluation and the PNGs."""

    batch_size: int = 100
    num_importance_samples: int = 1000  # k of the final test NLL (0: ELBO only)
    validation_importance_samples: int = 0  # k during training (0: ELBO only, fast)
    max_examples: int | None = None
    num_sample_images: int = 64


@dataclass
class HubArgs:
    """`hub:` section: push the finished run to the Hub."""

    push_to_hub: bool = False
    hub_model_id: str | None = None
    private: bool = False


@dataclass
class Recipe:
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    training: TrainingArgs = field(default_factory=TrainingArgs)
    evaluation: EvaluationArgs = field(default_factory=EvaluationArgs)
    hub: HubArgs = field(default_factory=HubArgs)

    @classmethod
    def from_dict(cls, raw: dict) -> Recipe:
        """Build a recipe, rejecting unknown sections and keys by name."""
        if not isinstance(raw, dict):
            raise ValueError(f"recipe must be a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs = {}
        for section, values in raw.items():
            if section not in sections:
                raise ValueError(f"recipe section `{section}` is unknown; expected one of {sorted(sections)}")
            section_cls = globals()[sections[section]] if isinstance(sections[section], str) else sections[section]
            known = {f.name for f in dataclasses.fields(section_cls)}
            values = values or {}
            for key in values:
                if key not in known:
                    raise ValueError(f"recipe key `{section}.{key}` is unknown; expected one of {sorted(known)}")
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
                raise ValueError(f"override must look like `section.key=value`, got {override!r}")
            section, _, name = key.partition(".")
            target = raw.setdefault(section, {}) or {}
            raw[section] = target
            if section == "model" and name.startswith("config."):
                target.setdefault("config", {})[name.removeprefix("config.")] = _load_yaml(value)
            else:
                target[name] = _load_yaml(value)
        return cls.from_dict(raw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Reject bad values before anything is built, naming the recipe field."""
        t, d, e = self.training, self.data, self.evaluation

        def positive(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"recipe field `{name}` must be an int >= 1, got {value!r}")

        for name in ("batch_size", "max_steps", "log_every", "eval_every", "save_every", "gradient_accumulation_steps", "save_total_limit"):
            positive(f"training.{name}", getattr(t, name))
        positive("evaluation.batch_size", e.batch_size)
        if not isinstance(t.learning_rate, (int, float)) or not t.learning_rate > 0:
            raise ValueError(f"recipe field `training.learning_rate` must be a number > 0, got {t.learning_rate!r}")
        if t.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"recipe field `training.mixed_precision` must be one of ('no', 'bf16', 'fp16'), got {t.mixed_precision!r}")
        for name in ("train_binarize", "eval_binarize"):
            if getattr(d, name) not in hf_data.BINARIZE_MODES:
                raise ValueError(f"recipe field `data.{name}` must be one of {hf_data.BINARIZE_MODES}, got {getattr(d, name)!r}")
        if d.eval_binarize == "dynamic":
            raise ValueError("recipe field `data.eval_binarize` must be 'none' or 'static' (evaluation needs fixed data), got 'dynamic'")
        unknown_trackers = set(t.trackers) - {"tensorboard", "jsonl"}
        if unknown_trackers:
            raise ValueError(f"recipe field `training.trackers` must list 'tensorboard' and/or 'jsonl', got {t.trackers!r}")
        if self.hub.push_to_hub and not self.hub.hub_model_id:
            raise ValueError("recipe field `hub.hub_model_id` must be set when `hub.push_to_hub` is true, got None")


# ---------------------------------------------------------------------------------------------
# State that Accelerate's load_state does not restore by itself
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Registered with `accelerator.register_for_checkpointing`, so a resume restores the position."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    best_metric: float = math.inf  # lowest validation -ELBO (or loss) so far
    best_step: int = -1
    evals_without_improvement: int = 0
    elapsed_seconds: float = 0.0
    step_seconds: float = 0.0  # time inside training steps only (no evaluation or checkpointing)
    images_seen: int = 0  # training images over all processes

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class JSONLTracker(GeneralTracker):
    """Appends `{"step": ..., **values}` lines to `<run>/logs/metrics.jsonl` (works offline, easy to plot)."""

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(logging_dir) / "metrics.jsonl"

    @on_main_process
    def start(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def tracker(self):
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict):
        (self.path.parent / "recipe.json").write_text(json.dumps(values, indent=2, default=str))

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs):
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    @staticmethod
    def truncate(path: Path, last_step: int) -> None:
        """Drop lines logged after `last_step` (a resumed run logs those steps again)."""
        if path.exists():
            lines = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= last_step]
            path.write_text("".join(line + "\n" for line in lines))


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def build_model(recipe: Recipe):
    """A fresh model of `recipe.model.family` from `recipe.model.config` (config errors name the field)."""
    import hf_vae  # noqa: F401  (registers the families with AutoConfig / AutoModel)

    try:
        config = AutoConfig.for_model(recipe.model.family, **recipe.model.config)
    except ValueError as error:
        if "Unrecognized model identifier" in str(error):
            raise ValueError(f"recipe field `model.family` must be an hf_vae model type, got {recipe.model.family!r}") from None
        raise ValueError(f"recipe field `model.config`: {error}") from None
    return AutoModel.from_config(config)


def _materialize(view: torch.utils.data.Dataset) -> dict[str, torch.Tensor]:
    """Decode a whole split once into tensors: small image datasets fit in memory, and decoding PNGs
    every step would dominate a CPU training step."""
    loader = torch.utils.data.DataLoader(view, batch_size=512, shuffle=False)
    batches = list(loader)
    return {key: torch.cat([b[key] for b in batches]) for key in batches[0]}


def load_data(recipe: Recipe) -> dict[str, dict[str, torch.Tensor]]:
    """{"train", "validation" (maybe empty), "test"} -> {"pixel_values", "labels"?} tensors.

    Training images stay grey when `train_binarize` is dynamic: the loop draws a fresh binarization
    per step from the step's seed, which is what makes resuming exact.
    """
    d = recipe.data
    common = dict(image_size=d.image_size, num_channels=d.num_channels, image_column=d.image_column,
                  label_column=d.label_column, seed=d.binarize_seed)
    train_mode = "static" if d.train_binarize == "static" else "none"
    train = _materialize(hf_data.load_split(d.dataset, d.train_split, revision=d.revision, binarize=train_mode, **common))
    test = _materialize(hf_data.load_split(d.dataset, d.test_split, revision=d.revision, binarize=d.eval_binarize, **common))
    splits = {"train": train, "test": test, "validation": {}}
    if d.validation_size:
        from sklearn.model_selection import train_test_split

        n = len(train["pixel_values"])
        if not 0 < d.validation_size < n:
            raise ValueError(f"recipe field `data.validation_size` must be in [0, {n}), got {d.validation_size}")
        stratify = train["labels"].numpy() if "labels" in train else None
        keep, held = train_test_split(np.arange(n), test_size=d.validation_size, random_state=d.binarize_seed, stratify=stratify)
        keep, held = torch.from_numpy(np.sort(keep)), torch.from_numpy(np.sort(held))
        validation = {k: v[held] for k, v in train.items()}
        if d.train_binarize == "dynamic" and d.eval_binarize == "static":
            # The held-out images are evaluated like the test split: one fixed binarization.
            g = torch.Generator().manual_seed(d.binarize_seed + 1)
            validation["pixel_values"] = torch.bernoulli(validation["pixel_values"], generator=g)
        splits["validation"] = validation
        splits["train"] = {k: v[keep] for k, v in train.items()}
    return splits


def check_compatible(model, splits: dict, dynamic_binarization: bool = False) -> None:
    """Fail before training when the model and the dataset disagree (channels, size, labels)."""
    config = model.config
    if "input_ids" in splits["train"]:
        grid = tuple(splits["train"]["input_ids"].shape[1:])
        if grid != (config.grid_size, config.grid_size):
            raise ValueError(f"recipe field `model.config.grid_size` is {config.grid_size} but the VQ-VAE codes are {grid[0]}x{grid[1]}")
        _check_labels_fit(config, splits)
        return
    images = splits["train"]["pixel_values"]
    channels, height, width = images.shape[1:]
    if is_token_prior(model):
        if config.token_source != "pixels":
            raise ValueError(f"recipe field `model.config.token_source` is {config.token_source!r} but no VQ-VAE codes were prepared")
        if channels != 1 or (height, width) != (config.grid_size, config.grid_size):
            raise ValueError(f"recipe field `model.config.grid_size` is {config.grid_size} but the dataset images are {channels}x{height}x{width} (need 1 channel, grid_size x grid_size)")
        if config.pixel_levels == 2 and not (_is_binary(splits["test"]) and (dynamic_binarization or _is_binary(splits["train"]))):
            raise ValueError("recipe fields `data.train_binarize` and `data.eval_binarize` must binarize the images "
                             "for a prior over binary pixel tokens (pixel_levels=2)")
        _check_labels_fit(config, splits)
        return
    if hasattr(config, "num_channels") and config.num_channels != channels:
        raise ValueError(f"recipe field `model.config.num_channels` is {config.num_channels} but the dataset images have {channels} channels (set data.num_channels to convert)")
    if hasattr(config, "image_size") and (config.image_size, config.image_size) != (height, width):
        raise ValueError(f"recipe field `model.config.image_size` is {config.image_size} but the dataset images are {height}x{width} (set data.image_size to resize)")
    _check_labels_fit(config, splits)


def _is_binary(split: dict) -> bool:
    images = split["pixel_values"]
    return bool(((images == 0) | (images == 1)).all())


def _check_labels_fit(config, splits: dict) -> None:
    num_classes = getattr(config, "num_classes", None)
    if num_classes is not None:
        if "labels" not in splits["train"]:
            raise ValueError("recipe field `model.family` is conditional (num_classes set) but the dataset has no label column (set data.label_column)")
        top = int(splits["train"]["labels"].max())
        if top >= num_classes:
            raise ValueError(f"recipe field `model.config.num_classes` is {num_classes} but the dataset has label {top}")


def is_token_prior(model) -> bool:
    """Priors read token grids (`input_ids`), the autoencoders read images (`pixel_values`)."""
    return model.main_input_name == "input_ids"


def model_inputs(model, batch: dict, *, generator: torch.Generator, global_step: int, dynamic_binarization: bool) -> dict:
    """The keyword arguments of `model.forward` for one batch of the tensors `load_data` made.

    Dynamic binarization draws a fresh Bernoulli image per step with the step's generator; pixel-token
    priors then read the binary pixels as tokens. Labels go only to conditional models.
    """
    inputs: dict[str, Any] = {"generator": generator}
    if "input_ids" in batch:
        inputs["input_ids"] = batch["input_ids"]
    else:
        pixel_values = batch["pixel_values"]
        if dynamic_binarization:
            pixel_values = torch.bernoulli(pixel_values, generator=generator)
        if is_token_prior(model):
            inputs["input_ids"] = pixels_to_tokens(pixel_values, model.config.pixel_levels)
        else:
            inputs["pixel_values"] = pixel_values
    if "global_step" in inspect.signature(model.forward).parameters:
        inputs["global_step"] = global_step
    if "labels" in batch and getattr(model.config, "num_classes", None) is not None:
        inputs["labels"] = batch["labels"]
    return inputs


def encode_to_codes(splits: dict, vqvae, batch_size: int = 256) -> dict:
    """Replace the images of every split by the VQ-VAE's code grids (`input_ids`), once, before training."""
    vqvae.eval()
    coded = {}
    for name, tensors in splits.items():
        if not tensors:
            coded[name] = tensors
            continue
        images = tensors["pixel_values"]
        with torch.no_grad():
            codes = torch.cat([vqvae.encode_to_indices(images[i : i + batch_size].to(vqvae.device)).cpu()
                               for i in range(0, len(images), batch_size)])
        coded[name] = {"input_ids": codes, **({"labels": tensors["labels"]} if "labels" in tensors else {})}
    return coded


def prepare_prior_data(model, splits: dict, recipe: Recipe, cache_dir: Path) -> dict:
    """For a prior over VQ-VAE codes, encode the dataset to codes once and cache them in the run dir."""
    if not is_token_prior(model) or model.config.token_source != "vqvae_codes":
        return splits
    if recipe.data.train_binarize == "dynamic":
        raise ValueError("recipe field `data.train_binarize` must be 'none' or 'static' for a prior over VQ-VAE codes "
                         "(codes are computed once), got 'dynamic'")
    from .generation import load_vqvae

    vqvae = load_vqvae(model)
    # The key holds the VQ-VAE's weights, not only its name: a VQ-VAE retrained in the same folder
    # must not reuse the old codes.
    weights = hashlib.sha256()
    for name, tensor in sorted(vqvae.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    key = {"vqvae": model.config.vqvae_name_or_path, "revision": model.config.vqvae_revision,
           "weights_sha256": weights.hexdigest(), "data": dataclasses.asdict(recipe.data)}
    cache = cache_dir / "codes.pt"
    if cache.exists():
        saved = torch.load(cache)
        if saved["key"] == key:
            return saved["splits"]
    coded = encode_to_codes(splits, vqvae)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "splits": coded}, cache)
    return coded


def _has_accelerator_device() -> bool:
    """A CUDA, XPU or MPS device is there for Accelerate to use."""
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or bool(mps and mps.is_available())


def _step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, micro, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


class _TensorDataset(torch.utils.data.Dataset):
    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self):
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index):
        return {k: v[index] for k, v in self.tensors.items()}


def _scalar_terms(output) -> dict[str, float]:
    """Every 0-dim tensor of a ModelOutput (the named loss terms and health numbers)."""
    return {k: float(v.detach()) for k, v in output.items() if isinstance(v, torch.Tensor) and v.ndim == 0}


def _validation_metric(metrics: dict[str, Metric]) -> float:
    """Lower is better: -ELBO for latent-variable families, else NLL or the loss."""
    for name, sign in (("elbo", -1.0), ("nll", 1.0), ("loss", 1.0), ("reconstruction_loss", 1.0)):
        if name in metrics:
            return sign * float(metrics[name].value)
    raise ValueError(f"no validation metric among {sorted(metrics)}")


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def train(recipe: Recipe, resume: bool = False) -> Path:
    """Train `recipe`; returns the run directory (model, metrics.json, PNGs, logs, checkpoints)."""
    t = recipe.training
    run_dir = Path(t.output_dir)
    checkpoints_dir = run_dir / "checkpoints"
    # Accelerate keeps its state in a process-wide singleton; a second `train()` in the same Python
    # process (notebooks, tests) may ask for another precision, so start from a fresh state.
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        # On a machine without a GPU, `cpu=True` is what makes Accelerate join the gloo process group a
        # multi-process launcher set up; without it every process would train alone on the full data.
        cpu=not _has_accelerator_device(),
        mixed_precision=t.mixed_precision,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        # Each global batch is split across processes, so 1 and N processes see the same batches.
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True),
        log_with=[tr if tr != "jsonl" else JSONLTracker("hf_vae", run_dir / "logs") for tr in t.trackers],
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:
        raise RuntimeError(f"launched as {launched} processes (WORLD_SIZE) but Accelerate formed a group of "
                           f"{accelerator.num_processes}: the processes would train independently")
    if t.batch_size % accelerator.num_processes:
        raise ValueError(f"recipe field `training.batch_size` must be divisible by the {accelerator.num_processes} processes, got {t.batch_size}")
    if run_dir.exists() and not resume and any(run_dir.glob("checkpoints/checkpoint-*")):
        raise ValueError(f"`output_dir` {str(run_dir)!r} already holds checkpoints: pass --resume to continue, or choose another output_dir")
    set_seed(t.seed)

    splits = load_data(recipe)
    model = build_model(recipe)
    splits = prepare_prior_data(model, splits, recipe, run_dir)
    check_compatible(model, splits, dynamic_binarization=recipe.data.train_binarize == "dynamic")
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)

    optimizer = torch.optim.AdamW(model.parameters(), lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), weight_decay=t.weight_decay)
    scheduler = get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=t.warmup_steps, num_training_steps=t.max_steps)
    train_loader = torch.utils.data.DataLoader(
        _TensorDataset(splits["train"]), batch_size=t.batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(t.seed),
    )
    if len(train_loader) == 0:
        raise ValueError(f"recipe field `training.batch_size` ({t.batch_size}) exceeds the {len(train_loader.dataset)} training examples")
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    state = TrainState()
    accelerator.register_for_checkpointing(state)

    if resume:
        latest = _latest_checkpoint(checkpoints_dir)
        if latest is None:
            accelerator.print(f"--resume: no checkpoint in {checkpoints_dir}, starting from scratch")
        else:
            accelerator.load_state(str(latest))
            accelerator.print(f"resumed from {latest.name} at step {state.step}")
            if accelerator.is_main_process:
                JSONLTracker.truncate(run_dir / "logs" / "metrics.jsonl", state.step)
    accelerator.init_trackers("hf_vae", config=_flat_config(recipe))

    # Training autocasts explicitly (`accelerator.autocast()` below), so drop the autocast wrapper that
    # `prepare` put on `forward`: evaluation, the test metrics and the saved model then run in fp32.
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    running: dict[str, list[float]] = {}
    progress = tqdm(total=t.max_steps, initial=state.step, desc="train", disable=not (t.progress and accelerator.is_local_main_process), dynamic_ncols=True)
    start_time = time.time() - state.elapsed_seconds
    stop = False
    model.train()
    while state.step < t.max_steps and not stop:
        train_loader.set_epoch(state.epoch)
        loader = accelerator.skip_first_batches(train_loader, state.batches_in_epoch) if state.batches_in_epoch else train_loader
        step_start = time.perf_counter()
        for batch in loader:
            micro = state.batches_in_epoch
            generator = torch.Generator().manual_seed(_step_seed(t.seed, state.step, micro, accelerator.process_index))
            inputs = model_inputs(unwrapped, batch, generator=generator, global_step=state.step,
                                  dynamic_binarization=recipe.data.train_binarize == "dynamic")
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    output = model(**inputs)
                accelerator.backward(output.loss)
                if accelerator.sync_gradients and t.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_in_epoch += 1
            state.images_seen += len(inputs[unwrapped.main_input_name]) * accelerator.num_processes
            for key, value in _scalar_terms(output).items():
                running.setdefault(key, []).append(value)
            if not accelerator.sync_gradients:
                continue

            state.step += 1
            state.step_seconds += time.perf_counter() - step_start
            state.elapsed_seconds = time.time() - start_time
            progress.update(1)
            if state.step % t.log_every == 0 or state.step == t.max_steps:
                logs = {f"train/{k}": float(np.mean(v)) for k, v in running.items()}
                logs["train/lr"] = scheduler.get_last_lr()[0]
                logs.update({f"train/{name}": value for name, value in unwrapped.schedule_values(state.step).items()})
                running = {}
                accelerator.log(logs, step=state.step)
                progress.set_postfix({k.removeprefix("train/"): f"{v:.3g}" for k, v in logs.items() if k != "train/lr"})
            if state.step % t.eval_every == 0 or state.step == t.max_steps:
                stop = _evaluate_and_track(recipe, accelerator, unwrapped, splits, state, run_dir) or stop
                model.train()
            if t.max_time_minutes is not None and state.elapsed_seconds > 60 * t.max_time_minutes:
                accelerator.print(f"time budget of {t.max_time_minutes} min reached at step {state.step}")
                stop = True
            if state.step % t.save_every == 0 or state.step == t.max_steps or stop:
                _save_checkpoint(accelerator, checkpoints_dir, state, t.save_total_limit)
            if stop or state.step >= t.max_steps:
                break
            step_start = time.perf_counter()
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
    progress.close()
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        _finish(recipe, accelerator, unwrapped, splits, state, run_dir)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def _flat_config(recipe: Recipe) -> dict:
    flat = {}
    for section, values in recipe.to_dict().items():
        for key, value in values.items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    flat[f"{section}.{key}.{sub}"] = sub_value if isinstance(sub_value, (int, float, str, bool)) else str(sub_value)
            else:
                flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def _evaluate_and_track(recipe, accelerator, model, splits, state, run_dir) -> bool:
    """Evaluate on the validation split (or test when none is carved), log, keep the best weights.

    Only the main process evaluates (on the unwrapped model); the stop decision reaches every process
    through Accelerate's trigger. Returns True when early stopping fires.
    """
    t, e = recipe.training, recipe.evaluation
    split = "validation" if splits["validation"] else "test"
    if accelerator.is_main_process:
        with warnings.catch_warnings():
            # Early in training most units are inactive; the collapse warning is for the final model.
            warnings.simplefilter("ignore", UserWarning)
            metrics = evaluate(model, _TensorDataset(splits[split]), batch_size=e.batch_size,
                               num_importance_samples=e.validation_importance_samples, seed=t.seed, progress=False)
        accelerator.log(to_flat_dict(metrics, prefix=f"{split}/"), step=state.step)
        value = _validation_metric(metrics)
        if value < state.best_metric:
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
            if t.keep_best:
                _atomic_save_pretrained(model, run_dir / "best_model")
        else:
            state.evals_without_improvement += 1
            if t.early_stopping_patience is not None and state.evals_without_improvement >= t.early_stopping_patience:
                accelerator.print(f"early stopping at step {state.step}: best {split} value {state.best_metric:.3f} at step {state.best_step}")
                accelerator.set_trigger()
    return accelerator.check_trigger()


def _save_pretrained_quietly(model, target: Path) -> None:
    """`save_pretrained` without transformers' "Writing model shards" bar, which would break the training bar."""
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model.save_pretrained(target)
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def _atomic_save_pretrained(model, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_pretrained_quietly(model, tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def _latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    done = sorted(p for p in checkpoints_dir.glob("checkpoint-*") if p.is_dir() and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def _save_checkpoint(accelerator, checkpoints_dir: Path, state: TrainState, keep: int) -> None:
    """save_state into `checkpoint-N.tmp`, then rename: a kill mid-write never leaves a partial checkpoint."""
    target = checkpoints_dir / f"checkpoint-{state.step:08d}"
    tmp = target.with_name(target.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        for old in sorted(p for p in checkpoints_dir.glob("checkpoint-*") if not p.name.endswith(".tmp"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _finish(recipe, accelerator, model, splits, state, run_dir: Path) -> None:
    """Best weights -> final test evaluation -> save_pretrained, metrics.json and the PNGs."""
    t, e = recipe.training, recipe.evaluation
    best = run_dir / "best_model"
    if t.keep_best and best.exists():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(best / "model.safetensors"))
    model.eval()
    metrics = evaluate(model, _TensorDataset(splits["test"]), batch_size=e.batch_size,
                       num_importance_samples=e.num_importance_samples, seed=t.seed,
                       max_examples=e.max_examples, progress=t.progress)
    accelerator.log(to_flat_dict(metrics, prefix="test/"), step=state.step)
    _save_pretrained_quietly(model, run_dir)
    summary = {
        "recipe": recipe.to_dict(),
        "steps": state.step,
        "best_step": state.best_step,
        "train_seconds": round(state.elapsed_seconds, 1),
        "train_images_per_second": round(state.images_seen / max(state.step_seconds, 1e-9), 1),
        "num_processes": accelerator.num_processes,
        "test": {name: m.to_dict() for name, m in metrics.items()},
    }
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    save_pngs(model, splits["test"], run_dir, num_images=e.num_sample_images, seed=t.seed)
    plot_training_curves(run_dir / "logs" / "metrics.jsonl", run_dir / "training_curves.png")
    for name, metric in metrics.items():
        if not isinstance(metric.value, list):
            accelerator.print(f"  {name:>20}: {metric}")
    if recipe.hub.push_to_hub:
        from .hub import push_run

        commit = push_run(run_dir, recipe.hub.hub_model_id, private=recipe.hub.private)
        accelerator.print(f"pushed to {commit.commit_url}")


def save_pngs(model, test: dict[str, torch.Tensor], run_dir: Path, num_images: int = 64, seed: int = 0) -> None:
    """samples.png (a grid drawn with a seeded generator) and reconstructions.png (test images above
    their reconstructions)."""
    generator = torch.Generator().manual_seed(seed)
    num_classes = getattr(model.config, "num_classes", None)
    if is_token_prior(model):
        from .generation import generate_images

        labels = torch.arange(num_images) % num_classes if num_classes else None
        samples = generate_images(model, num_images, labels=labels, generator=generator, progress=False)
        image_grid(samples, nrow=int(math.sqrt(num_images)) or 1, scale=2).save(run_dir / "samples.png")
        return
    if hasattr(model, "sample"):
        with torch.no_grad():
            if num_classes:
                labels = torch.arange(num_images) % num_classes
                samples = model.sample(num_images, labels=labels, generator=generator)
            else:
                samples = model.sample(num_images, generator=generator)
        image_grid(samples, nrow=int(math.sqrt(num_images)) or 1, scale=2).save(run_dir / "samples.png")
    if hasattr(model, "reconstruct"):
        count = min(16, len(test["pixel_values"]))
        originals = test["pixel_values"][:count]
        kwargs = {"labels": test["labels"][:count]} if num_classes else {}
        with torch.no_grad():
            recon = model.reconstruct(originals.to(model.device), **kwargs).cpu()
        image_grid(torch.cat([originals, recon]), nrow=count, scale=2).save(run_dir / "reconstructions.png")


def plot_training_curves(log_path: Path, out_path: Path) -> None:
    """Reconstruction and KL terms and the (negative) ELBO over steps, from the JSONL log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log_path.exists():
        return
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    series: dict[str, tuple[list, list]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not key.startswith("test/"):
                steps, values = series.setdefault(key, ([], []))
                steps.append(row["step"])
                values.append(value)
    if "train/reconstruction_loss" in series and "train/kl_loss" in series:
        steps, recon = series["train/reconstruction_loss"]
        kl = series["train/kl_loss"][1]
        series["train/-elbo"] = (steps, [r + k for r, k in zip(recon, kl)])
    panels = [
        ("loss terms (nats)", [k for k in ("train/reconstruction_loss", "train/-elbo", "train/loss", "train/codebook_loss", "train/commitment_loss") if k in series]),
        ("KL (nats)", [k for k in ("train/kl_loss",) if k in series]),
        ("validation", [k for k in series if k.startswith(("validation/", "test/")) and k.endswith(("elbo", "nll", "reconstruction_loss"))]),
    ]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            ax.plot(*series[key], label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
