"""The family registry: each model family registers itself from its own `models/<family>/__init__.py`.

A family is a config class and a model class. The model class declares, as class attributes, what
callers need to know (see `HfVaePreTrainedModel`): what `forward` reads, whether it takes the
training step, which evaluator and card template it uses, and what it can do (`capabilities`). The
trainer, `evaluate`, the pipelines, the cards and the Hub helpers read those declarations, never a
`model_type` list or a method signature, so a new family is one folder plus one `register_family` call.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from .cards import register_card_family

FAMILIES: dict[str, type] = {}

# The model-index metrics of families evaluated by `evaluate_gaussian_latent` (VAE, CVAE).
GAUSSIAN_LATENT_METRICS = ("nll", "bits_per_dim", "elbo", "elbo_bits_per_dim", "reconstruction_loss", "kl", "active_units")


def register_family(
    config_class,
    model_class,
    *,
    tags: tuple[str, ...] = (),
    pipeline_tag: str = "unconditional-image-generation",
    index_metrics: tuple[str, ...] | None = None,
    template_dir=None,
) -> None:
    """Register a family with `AutoConfig` / `AutoModel`, hf_vae's registry and the model cards.

    Args:
        config_class: the family's `HfVaeConfig` subclass (its `model_type` names the family).
        model_class: the family's `HfVaePreTrainedModel` subclass, with the protocol attributes set.
        tags: extra Hub tags of its model card.
        pipeline_tag: the Hub task of its model card.
        index_metrics: the `metrics.json` entries that go into the card's `model-index` (None: every scalar).
        template_dir: the folder of `card_template` when it is not in hf_vae's `model_cards/` (a family
            that lives outside the package).
    """
    model_type = config_class.model_type
    for attribute in ("input_kind", "evaluator", "card_template", "capabilities"):
        if getattr(model_class, attribute, None) is None:
            raise ValueError(f"`{model_class.__name__}.{attribute}` must be declared to register a family, got None")
    AutoConfig.register(model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    FAMILIES[model_type] = model_class
    register_card_family(model_type, template=model_class.card_template, pipeline_tag=pipeline_tag, tags=tags,
                         index_metrics=index_metrics, template_dir=template_dir)


def model_types() -> tuple[str, ...]:
    """The `model_type`s of every registered family, sorted."""
    return tuple(sorted(FAMILIES))
