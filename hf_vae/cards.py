"""Model cards: the Jinja templates of `model_cards/` rendered with huggingface_hub's `ModelCard`.

A card is built from what a run directory holds and nothing else: `config.json` (the hyper-parameters),
`metrics.json` (the measured numbers with their units and estimators, the recipe, the steps) and the
PNGs beside them. A number that is not in metrics.json never appears in the card.

    card = render_card("runs/vae_mnist5k", repo_id="me/vae-mnist5k")   # a huggingface_hub.ModelCard
    card.save("runs/vae_mnist5k/README.md")

Each family registers how its card is made (template, pipeline tag, tags, headline metrics) with
`register_card_family`; a new family adds `model_cards/<family>.md.j2` (which extends `_base.md.j2`)
and one `register_card_family(...)` call at the bottom of this file.

Templates are looked up in `$HF_VAE_MODEL_CARDS`, then in the source checkout (`<repo>/model_cards`,
editable installs), then where a wheel installs them (`<prefix>/share/hf_vae/model_cards`, see
`[tool.setuptools.data-files]` in pyproject.toml).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import site
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CARD_FAMILIES",
    "CardFamily",
    "PLACEHOLDER_REPO_ID",
    "TEMPLATE_DIR_ENV",
    "card_context",
    "find_template_dir",
    "hub_id",
    "register_card_family",
    "render_card",
]

TEMPLATE_DIR_ENV = "HF_VAE_MODEL_CARDS"
# What the usage snippet loads when the card is rendered without a repo id: never a local path.
PLACEHOLDER_REPO_ID = "<user>/<repo>"
BASE_TEMPLATE = "_base.md.j2"
# The PNGs a run writes (training.artifacts, training.pictures), by the name templates use: `<name>.png`.
CARD_IMAGES = {name: f"{name}.png" for name in ("samples", "reconstructions", "interpolation", "latent_map",
                                                "kl_per_dimension", "codebook_usage", "training_curves")}
# Short names for the model-index and the results table; anything else uses the Metric's description.
METRIC_LABELS = {
    "nll": "NLL",
    "bits_per_dim": "NLL",
    "elbo": "ELBO",
    "elbo_bits_per_dim": "Negative ELBO",
    "reconstruction_loss": "Reconstruction loss",
    "kl": "KL",
    "active_units": "Active latent units",
    "loss": "Loss",
}
# Scalar metrics that describe the evaluation rather than the model: never in the model-index.
NOT_RESULTS = ("num_examples", "latent_dim")


@dataclass(frozen=True)
class CardFamily:
    """How the card of one model family (a `config.model_type`) is made.

    Attributes:
        model_type: the family's `config.model_type`.
        template: file name of its template in the template folder (`<model_type>.md.j2` by default).
        pipeline_tag: the Hub task (`unconditional-image-generation`, ...).
        tags: extra Hub tags (`hf_vae`, `<model_type>` and `safetensors` are always added).
        index_metrics: metrics.json entries that go into the `model-index`, in order; `None` means every
            scalar number except bookkeeping (`num_examples`, `latent_dim`).
        template_dir: where `template` lives, when it is not in the shared template folder (plug-ins).
    """

    model_type: str
    template: str
    pipeline_tag: str = "unconditional-image-generation"
    tags: tuple[str, ...] = ()
    index_metrics: tuple[str, ...] | None = None
    template_dir: Path | None = None


CARD_FAMILIES: dict[str, CardFamily] = {}


def register_card_family(
    model_type: str,
    *,
    template: str | None = None,
    pipeline_tag: str = "unconditional-image-generation",
    tags: tuple[str, ...] | list[str] = (),
    index_metrics: tuple[str, ...] | list[str] | None = None,
    template_dir: str | os.PathLike | None = None,
) -> CardFamily:
    """Register (or replace) how cards of `model_type` are rendered; returns the `CardFamily`."""
    if not isinstance(model_type, str) or not model_type:
        raise ValueError(f"`model_type` must be a non-empty string, got {model_type!r}")
    family = CardFamily(
        model_type=model_type,
        template=template or f"{model_type}.md.j2",
        pipeline_tag=pipeline_tag,
        tags=tuple(tags),
        index_metrics=None if index_metrics is None else tuple(index_metrics),
        template_dir=None if template_dir is None else Path(template_dir),
    )
    CARD_FAMILIES[model_type] = family
    return family


# ---------------------------------------------------------------------------------------------
# Finding the templates
# ---------------------------------------------------------------------------------------------


def _candidate_template_dirs() -> list[Path]:
    candidates = []
    if os.environ.get(TEMPLATE_DIR_ENV):
        candidates.append(Path(os.environ[TEMPLATE_DIR_ENV]).expanduser())
    candidates.append(Path(__file__).resolve().parents[1] / "model_cards")  # source checkout / editable install
    # A wheel installs the templates as data files under <prefix>/share/hf_vae/model_cards: look above the
    # installed package first (venv, --user and --prefix installs alike), then in the scheme's data roots.
    package = Path(__file__).resolve().parent
    data_roots = [str(package.parents[i]) for i in range(1, min(5, len(package.parents)))]
    data_roots += [sysconfig.get_path("data"), sys.prefix, sys.base_prefix]
    try:
        data_roots.append(sysconfig.get_path("data", f"{os.name}_user"))
    except KeyError:
        pass
    data_roots.append(site.getuserbase())
    for root in data_roots:
        if root:
            candidates.append(Path(root) / "share" / "hf_vae" / "model_cards")
    return candidates


def find_template_dir() -> Path:
    """The folder holding the model card templates (the first candidate that has `_base.md.j2`)."""
    candidates = _candidate_template_dirs()
    for folder in candidates:
        if (folder / BASE_TEMPLATE).is_file():
            return folder
    raise FileNotFoundError(
        f"hf_vae model card templates not found (no {BASE_TEMPLATE} in any of {[str(c) for c in candidates]}); "
        f"reinstall hf_vae or set ${TEMPLATE_DIR_ENV} to the repository's model_cards/ folder"
    )


# ---------------------------------------------------------------------------------------------
# The context a template sees
# ---------------------------------------------------------------------------------------------


def _format_number(value: Any) -> str:
    """Numbers as a card prints them: ints exactly, floats with 4 significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _hyperparameters(config) -> dict[str, Any]:
    """The family's own config fields (not PreTrainedConfig's generic ones), in declaration order."""
    from transformers import PreTrainedConfig

    base = {f.name for f in dataclasses.fields(PreTrainedConfig)} if dataclasses.is_dataclass(PreTrainedConfig) else set()
    if dataclasses.is_dataclass(config):
        names = [f.name for f in dataclasses.fields(config) if f.name not in base and not f.name.startswith("_")]
    else:  # a config class that is not a dataclass: its non-default keys
        names = [k for k in config.to_diff_dict() if k not in ("transformers_version", "model_type", "auto_map", "architectures")]
    return {name: getattr(config, name) for name in names}


def _load_config(run_dir: Path):
    from transformers import AutoConfig

    from .families import load_families

    load_families()  # the card families of the model classes
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"`run_dir` must hold a saved hf_vae model (config.json), got {str(run_dir)!r}")
    model_type = json.loads((run_dir / "config.json").read_text()).get("model_type")
    if model_type not in CARD_FAMILIES:
        raise ValueError(
            f"`model_type` {model_type!r} of {str(run_dir / 'config.json')!r} has no model card family; "
            f"registered: {sorted(CARD_FAMILIES)} (hf_vae.cards.register_card_family)"
        )
    return AutoConfig.from_pretrained(run_dir), CARD_FAMILIES[model_type]


def _class_names(config) -> list[tuple[int, str]]:
    """(id, name) of a conditional model's classes when it has names (`hf_vae.set_label_names`); else []
    (transformers' placeholder `LABEL_0`, `LABEL_1` is not names)."""
    from .configuration_utils import has_label_names

    return sorted(config.id2label.items()) if has_label_names(config) else []


def _load_metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"`run_dir` holds a metrics.json that is not JSON ({error}): {str(path)!r}") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("test", {}), dict):
        raise ValueError(f"metrics.json must be an object with a `test` mapping of metrics, got {str(path)!r}")
    return summary


def _metric_rows(test: dict) -> dict[str, dict]:
    """metrics.json `test` entries -> rows the template prints (scalars only, with labels and text values)."""
    rows = {}
    for name, metric in test.items():
        if not isinstance(metric, dict) or "value" not in metric:
            raise ValueError(f"metrics.json `test.{name}` must be a Metric dict (value, unit, estimator, description), got {metric!r}")
        value = metric["value"]
        row = {
            "name": name,
            "value": value,
            "text": _format_number(value) if not isinstance(value, list) else None,
            "unit": metric.get("unit") or "",
            "estimator": metric.get("estimator") or "",
            "description": metric.get("description") or name,
            "label": METRIC_LABELS.get(name, metric.get("description") or name),
            "is_scalar": isinstance(value, (int, float)) and not isinstance(value, bool),
            "is_list": isinstance(value, list),
        }
        rows[name] = row
    return rows


def _index_name(row: dict) -> str:
    """"NLL (IWAE, k=1000) [nats]": the estimator and the unit always travel with the name."""
    return row["label"] + (f" ({row['estimator']})" if row["estimator"] else "") + (f" [{row['unit']}]" if row["unit"] else "")


def hub_id(name) -> str | None:
    """`name` if it can only mean a Hub repo id; None for an embedded dataset (`mnist5k`, `digits`), a
    local path, or anything that is not a valid repo id. Card metadata names Hub ids only."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from .data import EMBEDDED_DATASETS

    if not isinstance(name, str) or name in EMBEDDED_DATASETS or os.path.isabs(name) or os.path.exists(name):
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def card_context(run_dir: str | os.PathLike, repo_id: str | None = None, *, dataset_id: str | None = None,
                 model_name: str | None = None, subfolder: str | None = None) -> dict[str, Any]:
    """Everything a template may use, built from `run_dir` (config.json, metrics.json, PNGs).

    Args:
        run_dir: a training run directory or any folder written by `save_pretrained`.
        repo_id: the Hub repo the card is for; the usage snippet loads it. `None`: the placeholder
            `PLACEHOLDER_REPO_ID` (never a local path), and the card says to replace it.
        dataset_id: Hub id of the training data for the card metadata, e.g. after `push_embedded_dataset`;
            defaults to the recipe's `data.dataset` when that is a Hub id (an embedded name is not one).
        model_name: title of the card; defaults to the repo name (or the folder name).
        subfolder: where config.json and the weights are inside `run_dir` (a diffusers pipeline's
            component, e.g. "vae"); metrics.json and the PNGs stay at the top.
    """
    if dataset_id is not None and hub_id(dataset_id) is None:
        raise ValueError(f"`dataset_id` must be a Hub dataset id such as 'user/mnist5k' (see push_embedded_dataset), got {dataset_id!r}")
    run_dir = Path(run_dir)
    config, family = _load_config(run_dir / subfolder if subfolder else run_dir)
    summary = _load_metrics(run_dir)
    recipe = summary.get("recipe") or {}
    training = recipe.get("training") or {}
    if os.path.isabs(str(training.get("output_dir", ""))):  # a card never shows the machine's paths
        recipe = {**recipe, "training": {**training, "output_dir": f"runs/{Path(training['output_dir']).name}"}}
    metrics = _metric_rows(summary.get("test") or {})
    data = recipe.get("data") or {}
    dataset = dataset_id or data.get("dataset")
    images = {key: file for key, file in CARD_IMAGES.items() if (run_dir / file).is_file()}
    name = model_name or (repo_id.split("/")[-1] if repo_id else run_dir.resolve().name)
    model_id = repo_id or PLACEHOLDER_REPO_ID
    return {
        "model_name": name,
        "repo_id": repo_id,
        "model_id": model_id,  # what from_pretrained takes in the usage snippet
        # The arguments of every from_pretrained in the snippets: the repo id, and the component's subfolder.
        "load_args": f'"{model_id}"' + (f', subfolder="{subfolder}"' if subfolder else ""),
        "subfolder": subfolder,
        "placeholder": PLACEHOLDER_REPO_ID if repo_id is None else None,
        "vqvae_id": hub_id(getattr(config, "vqvae_name_or_path", None)),  # a prior's VQ-VAE, when on the Hub
        "model_type": family.model_type,
        "family": family,
        "config": _hyperparameters(config),
        "config_class": type(config).__name__,
        "class_names": _class_names(config),
        "metrics": metrics,
        "scalar_metrics": [row for row in metrics.values() if not row["is_list"]],
        "index_metrics": _index_rows(metrics, family),
        "has_metrics": bool(metrics),
        "recipe": recipe,
        "recipe_yaml": yaml.safe_dump(recipe, sort_keys=False).strip() if recipe else "",
        "training_command": "hf-vae train recipe.yaml" if recipe else "",
        "steps": summary.get("steps"),
        "ema": summary.get("ema"),  # weight-EMA runs: decay, start_step, updates, weights ("ema" or "trained")
        "dataset": dataset,
        "dataset_id": hub_id(dataset),  # the metadata's `datasets` and model-index: Hub ids only
        "dataset_split": data.get("test_split", "test") if recipe else None,
        "eval_binarize": data.get("eval_binarize") if recipe else None,
        # metrics.json "data" (the revision asked and the commit it resolved to); older runs have only the recipe's.
        "dataset_revision": (summary.get("data") or {}).get("revision", data.get("revision")),
        "dataset_commit": (summary.get("data") or {}).get("commit"),
        "images": images,
        "fmt": _format_number,
    }


def _index_rows(metrics: dict[str, dict], family: CardFamily) -> list[dict]:
    if family.index_metrics is None:
        names = [n for n, row in metrics.items() if row["is_scalar"] and n not in NOT_RESULTS]
    else:
        names = [n for n in family.index_metrics if n in metrics and metrics[n]["is_scalar"]]
    return [metrics[n] for n in names]


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _card_data(context: dict):
    from huggingface_hub import EvalResult, ModelCardData

    family: CardFamily = context["family"]
    tags = ["hf_vae", family.model_type, *family.tags, "safetensors"]
    tags = list(dict.fromkeys(tags))  # unique, in order
    dataset = context["dataset_id"]
    eval_results = None
    if dataset and context["index_metrics"]:
        eval_results = [
            EvalResult(
                task_type=family.pipeline_tag,
                task_name=family.pipeline_tag.replace("-", " ").capitalize(),
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=context["dataset_split"],
                metric_type=row["name"],
                metric_name=_index_name(row),
                metric_value=row["value"],
            )
            for row in context["index_metrics"]
        ]
    return ModelCardData(
        library_name="hf_vae",
        pipeline_tag=family.pipeline_tag,
        tags=tags,
        datasets=[dataset] if dataset else None,
        base_model=context["vqvae_id"],
        model_name=context["model_name"] if eval_results else None,
        eval_results=eval_results,
    )


def _undefined_name(error: Exception) -> str:
    message = str(error)
    match = re.search(r"has no attribute '([^']+)'", message) or re.search(r"'([^']+)' is undefined", message)
    return match.group(1) if match else message


def _template_line(error: Exception) -> str:
    """"vae.md.j2, line 12": the innermost template frame of the error (jinja maps frames to template lines)."""
    where = ""
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename.endswith(".j2"):
            where = f"{Path(frame.f_code.co_filename).name}, line {lineno}"
    return where


def render_card(
    run_dir: str | os.PathLike,
    repo_id: str | None = None,
    *,
    dataset_id: str | None = None,
    model_name: str | None = None,
    template_dir: str | os.PathLike | None = None,
    subfolder: str | None = None,
):
    """Render the model card of `run_dir` from its family's template; returns a `huggingface_hub.ModelCard`.

    The YAML metadata carries `library_name: hf_vae`, the pipeline tag, tags, the training dataset and a
    `model-index` whose results are the metrics.json numbers (each name carries its estimator and unit);
    `datasets`, the model-index and `base_model` (a prior's VQ-VAE) name Hub ids only (`hub_id`).
    Arguments as in `card_context`.
    A template that uses a field the context lacks raises `ValueError` naming the template and the field.
    """
    import jinja2
    from huggingface_hub import ModelCard

    context = card_context(run_dir, repo_id, dataset_id=dataset_id, model_name=model_name, subfolder=subfolder)
    family: CardFamily = context["family"]
    folder = Path(template_dir) if template_dir is not None else (family.template_dir or find_template_dir())
    search = [str(folder)]
    if family.template_dir is not None and template_dir is None:
        search.append(str(find_template_dir()))  # a plug-in template may extend the shared base
    if not (folder / family.template).is_file():
        raise FileNotFoundError(f"model card template {family.template!r} of family {family.model_type!r} not found in {str(folder)!r}")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    environment.filters["fmt"] = _format_number
    environment.filters["cell"] = lambda value: str(value).replace("|", "\\|")  # inside a Markdown table
    context["card_data"] = _card_data(context).to_yaml()
    try:
        content = environment.get_template(family.template).render(**context)
    except jinja2.UndefinedError as error:
        where = _template_line(error)
        raise ValueError(
            f"model card template {family.template!r} needs field `{_undefined_name(error)}`, which the card "
            f"context of {str(run_dir)!r} does not provide" + (f" ({where})" if where else "")
        ) from None
    except jinja2.TemplateError as error:
        raise ValueError(f"model card template {family.template!r} is invalid: {error}") from None
    content = re.sub(r"\n{3,}", "\n\n", content)  # blocks that render empty leave blank runs
    card = ModelCard(content)
    if "```python" not in card.text:
        raise ValueError(f"model card template {family.template!r} must render a ```python usage block")
    for key in ("library_name", "pipeline_tag", "tags"):
        if not getattr(card.data, key, None):
            raise ValueError(f"model card template {family.template!r} must keep the metadata field `{key}` (render {{{{ card_data }}}})")
    return card
