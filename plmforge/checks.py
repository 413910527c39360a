"""Small validators shared by the config sections and the method option classes; each error names
the field, the bad value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable

from plmforge.errors import ConfigError, choice_error


def positive(field: str, value: float | int, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{field} must be {bound}, got {value!r}")


def fraction(field: str, value: float) -> None:
    """A value in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{field} must be in [0, 1), got {value!r}")


def one_of(field: str, value: object, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise choice_error(field, value, choices)
