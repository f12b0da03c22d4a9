"""The config base every family shares: a `PreTrainedConfig` that checks its fields when built.

transformers 5 configs are dataclasses; `@strict` would raise its own error types, so the families
validate in `__post_init__` and raise `ValueError` naming the field, the expected and the received value.
"""

from __future__ import annotations


from transformers import PreTrainedConfig


class HfVaeConfig(PreTrainedConfig):
    """Base of the hf_vae configs: subclasses declare fields and implement `_check_fields`."""

    def __post_init__(self, **kwargs):
        # JSON turns tuples into lists; keep one type so a reloaded config compares equal.
        for field_name, field_value in list(vars(self).items()):
            if isinstance(field_value, tuple):
                setattr(self, field_name, list(field_value))
        self._check_fields()
        super().__post_init__(**kwargs)

    def _check_fields(self) -> None:
        raise NotImplementedError
