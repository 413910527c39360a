"""Error types that the CLI (and later the UI) render as one short message, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PlmforgeError(Exception):
    """Base class for every error caused by the user's input rather than by a bug."""

    exit_code = 2

    def render(self) -> str:
        return f"error: {self}"


class ConfigError(PlmforgeError):
    """A config value or option is invalid: the message names the field, the value and what is allowed."""


class DataError(PlmforgeError):
    """A data file is malformed: carries where (file, row, column, position) and how to fix it."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | str | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.row = row
        self.column = column
        self.hint = hint

    def where(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(f"column '{self.column}'")
        return ", ".join(parts)

    def render(self) -> str:
        where = self.where()
        text = f"data error: {where}: {self.message}" if where else f"data error: {self.message}"
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


class RunDirError(PlmforgeError):
    """The output directory is in a state that would lose earlier results, or lacks what a command needs."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' suffix when a close match exists, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choice_error(field: str, value: object, choices: Iterable[str]) -> ConfigError:
    choices = list(choices)
    return ConfigError(
        f"{field} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        f"{did_you_mean(str(value), choices)}"
    )
