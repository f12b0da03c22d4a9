"""The config base every family shares: a `PreTrainedConfig` that checks its fields when built.

transformers 5 configs are dataclasses; `@strict` would raise its own error types, so the families
validate in `__post_init__` and raise `ValueError` naming the field, the expected and the received value.
"""

from __future__ import annotations

import numbers

from transformers import PreTrainedConfig


def _fail(name: str, expected: str, value) -> None:
    raise ValueError(f"`{name}` must be {expected}, got {value!r}")


def check_int(name: str, value, minimum: int | None = None) -> None:
    """`value` is an int (not a bool) and at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, "an int", value)
    if minimum is not None and value < minimum:
        _fail(name, f"an int >= {minimum}", value)


def check_float(name: str, value, minimum: float | None = None, maximum: float | None = None,
                exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> None:
    """`value` is a finite real number in the given range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        _fail(name, "a finite number", value)
    low = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum}"
    high = "" if maximum is None else f"{'<' if exclusive_maximum else '<='} {maximum}"
    expected = "a number " + " and ".join(part for part in (low, high) if part)
    if minimum is not None and (value < minimum or (exclusive_minimum and value == minimum)):
        _fail(name, expected, value)
    if maximum is not None and (value > maximum or (exclusive_maximum and value == maximum)):
        _fail(name, expected, value)


def check_choice(name: str, value, choices) -> None:
    """`value` is one of `choices`."""
    if value not in choices:
        _fail(name, f"one of {tuple(choices)}", value)


def check_int_list(name: str, value, minimum: int = 1) -> None:
    """`value` is a non-empty list/tuple of ints, each at least `minimum`."""
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        _fail(name, f"a non-empty list of ints >= {minimum}", value)
    for item in value:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < minimum:
            _fail(name, f"a non-empty list of ints >= {minimum}", value)


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
