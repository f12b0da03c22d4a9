"""The family registry: each model family registers itself from its own `models/<family>/__init__.py`.

A family is a config class and a model class. The model class declares, as class attributes, what
callers need to know (see `HfVaePreTrainedModel`): what `forward` reads, whether it takes the
training step, which evaluator and card template it uses, and what it can do (`capabilities`). The
trainer, `evaluate`, the pipelines, the cards and the Hub helpers read those declarations, never a
`model_type` list or a method signature, so a new family is one folder plus one `register_family` call.

The shipped families name their model class by its dotted path, so `import hf_vae` imports only their
configs (transformers' `modeling_utils`, which every `PreTrainedModel` needs, takes over a second to
import): the model classes are imported and registered with `AutoModel` and the cards by `load_families()`,
which runs the moment transformers' `AutoModel` module is imported (by anyone; see `hf_vae.import_hooks`),
or an hf_vae model class is used.

transformers' `modeling_layers` (which every hf_vae model file imports) imports `AutoModel` half-way through
its own import, so `load_families` never imports a model file while one of `PREREQUISITE_MODULES` (the modules
the model files import) or the family's own module is still being imported: a hook on each of them calls it
again when it completes.
"""

from __future__ import annotations

import importlib

from transformers import AutoConfig

from .cards import register_card_family
from .import_hooks import is_initializing, when_imported

#: model_type -> model class, of every family whose model class is loaded and registered.
FAMILIES: dict[str, type] = {}
#: model_type -> (config class, dotted path of the model class, registration options) of the families
#: registered by path whose model class `load_families` has not imported yet.
_PENDING: dict[str, tuple[type, str, dict]] = {}
_loading = False
#: The modules every model file imports (transformers' and hf_vae's shared bases, which import transformers');
#: `install_import_hooks` hooks each.
PREREQUISITE_MODULES = (
    "transformers.models.auto.modeling_auto",
    "transformers.modeling_utils",
    "transformers.modeling_layers",
    "hf_vae.modeling_utils",
    "hf_vae.models.modeling_autoencoder",
)

# The model-index metrics of families evaluated by `evaluate_gaussian_latent` (VAE, CVAE).
GAUSSIAN_LATENT_METRICS = ("nll", "bits_per_dim", "elbo", "elbo_bits_per_dim", "reconstruction_loss", "kl", "active_units")


def register_family(
    config_class,
    model_class: type | str,
    *,
    tags: tuple[str, ...] = (),
    pipeline_tag: str = "unconditional-image-generation",
    index_metrics: tuple[str, ...] | None = None,
    template_dir=None,
) -> None:
    """Register a family with `AutoConfig` / `AutoModel`, hf_vae's registry and the model cards.

    Args:
        config_class: the family's `HfVaeConfig` subclass (its `model_type` names the family).
        model_class: the family's `HfVaePreTrainedModel` subclass, with the protocol attributes set, or its
            dotted path (`"hf_vae.models.vae.modeling_vae.VAEModel"`): then only the config is registered
            now, and the model when `load_families()` runs.
        tags: extra Hub tags of its model card.
        pipeline_tag: the Hub task of its model card.
        index_metrics: the `metrics.json` entries that go into the card's `model-index` (None: every scalar).
        template_dir: the folder of `card_template` when it is not in hf_vae's `model_cards/` (a family
            that lives outside the package).
    """
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    options = dict(tags=tags, pipeline_tag=pipeline_tag, index_metrics=index_metrics, template_dir=template_dir)
    if isinstance(model_class, str):
        _PENDING[config_class.model_type] = (config_class, model_class, options)
        _load_when_imported(model_class.rsplit(".", 1)[0])
    else:
        _register_model(config_class, model_class, options)


def _register_model(config_class, model_class, options: dict) -> None:
    """`AutoModel`, hf_vae's registry and the model cards, for a family whose config is registered."""
    from transformers import AutoModel  # runs `load_families` first when this is its first import

    model_type = config_class.model_type
    for attribute in ("input_kind", "evaluator", "card_template", "capabilities"):
        if getattr(model_class, attribute, None) is None:
            raise ValueError(f"`{model_class.__name__}.{attribute}` must be declared to register a family, got None")
    AutoModel.register(config_class, model_class, exist_ok=True)
    FAMILIES[model_type] = model_class
    register_card_family(model_type, template=model_class.card_template, **options)


def load_families(imported: str | None = None) -> dict[str, type]:
    """Import the model class of every family registered by its path and register it (with `AutoModel` and
    the cards); returns `FAMILIES`. Idempotent; called from the import hooks (`imported`: the module whose
    import just completed) and wherever hf_vae needs the model classes.

    While a module of `PREREQUISITE_MODULES` is still being imported it does nothing, and it skips a family
    whose model file is: the hook on that module calls it again once it completes.
    """
    global _loading
    if _loading:  # re-entered through an import hook: the outer call registers everything
        return FAMILIES
    if any(is_initializing(name) for name in PREREQUISITE_MODULES if name != imported):
        return FAMILIES
    _loading = True
    try:
        from transformers import AutoModel  # noqa: F401  (imported before any model module, so the hook re-enters here, not mid-import)

        for model_type, (config_class, path, options) in list(_PENDING.items()):
            module_name, class_name = path.rsplit(".", 1)
            if module_name != imported and is_initializing(module_name):
                continue
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                # It imports another family's model file that is still being imported (the CVAE's reads the
                # VAE's): that file's hook calls again once it completes, when this import succeeds or raises.
                if any(is_initializing(path.rsplit(".", 1)[0]) for _, path, _ in _PENDING.values()):
                    continue
                raise
            _register_model(config_class, getattr(module, class_name), options)
            del _PENDING[model_type]
    finally:
        _loading = False
    return FAMILIES


def _load_when_imported(module_name: str) -> None:
    """Run `load_families` once `module_name`'s import completes (at once if it already has)."""
    when_imported(module_name, lambda: load_families(imported=module_name))


def install_import_hooks() -> None:
    """Hook `load_families` on transformers' `AutoModel` module and the other modules the model files import
    (`import hf_vae` calls it; `register_family` hooks each family's own module)."""
    for module_name in PREREQUISITE_MODULES:
        _load_when_imported(module_name)


def family_attribute(package: str, name: str) -> type:
    """The model class `name` of the family in `package` (its module `__getattr__`), loading the families."""
    for model_class in load_families().values():
        if model_class.__name__ == name and model_class.__module__.startswith(package + "."):
            return model_class
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def model_types() -> tuple[str, ...]:
    """The `model_type`s of every registered family (model class loaded or not), sorted."""
    return tuple(sorted(set(FAMILIES) | set(_PENDING)))


#: Precisions of the decoder passes of an importance-weighted NLL (`evaluate(..., decoder_precision=)`).
DECODER_PRECISIONS = ("fp32", "bf16")


def check_decoder_precision(name: str, value: str, model_type: str) -> None:
    """`value` must be one of `DECODER_PRECISIONS`, and bf16 needs a family whose test likelihood runs
    importance-weighted decoder passes (the Gaussian-latent evaluator: VAE, CVAE). The one rule behind a recipe's
    `evaluation.decoder_precision`, `hf-vae evaluate --decoder-precision` and `evaluate(decoder_precision=)`;
    errors name `name`."""
    from .validation import check_choice

    check_choice(name, value, DECODER_PRECISIONS)
    check_choice("model.family", model_type, model_types())
    if value != "fp32" and load_families()[model_type].evaluator != "gaussian_latent":
        raise ValueError(f"`{name}` must be fp32 for the {model_type!r} family (its test likelihood has no "
                         f"importance-weighted decoder passes), got {value!r}")
