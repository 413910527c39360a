"""One registry type for every name-keyed table of plmforge (problem types, metrics, heads, methods,
model families, zoo entries): registering a name twice is a bug, and looking up an unknown name is a
user error that lists the choices. The CLI choices, the UI dropdowns, the docs and the tests read
these registries; nothing keeps a parallel list."""

from __future__ import annotations

from typing import Generic, TypeVar

from plmforge.errors import choice_error

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str, item: T) -> T:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self[name] = item
        return item

    def lookup(self, name: str, field: str) -> T:
        """The entry called `name`; a ConfigError naming `field` and the choices when there is none."""
        if name not in self:
            raise choice_error(field, name, self)
        return self[name]

