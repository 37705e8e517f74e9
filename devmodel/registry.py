"""Registries: name → entry, the way PyVISA picks a backend by name (docs/architecture.md).

Everything devmodel can be extended with — device technologies, chip URL schemes, export targets,
hardware-aware training methods — is found by name in a :class:`Registry`. Shared code asks the
registry; an unknown name is one :class:`~devmodel.errors.UnknownNameError` that lists the known
ones, never a silent fallback. Entries may be given as ``"package.module:attribute"`` strings and are
then imported on first use, so a registry costs nothing until an entry is used and a low layer can
name an implementation that lives in a higher one.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from devmodel.errors import UnknownNameError

T = TypeVar("T")


def load_object(spec: str) -> Any:
    """The object named ``"package.module:attribute"`` (imported now)."""
    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


class Registry(Generic[T]):
    """An ordered name → entry table; ``what`` names the kind of entry in error messages."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, entry: T | str) -> None:
        """Add ``entry`` (an object, or a ``"module:attribute"`` string loaded on first use)."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``; one sentence listing the known names otherwise."""
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = load_object(entry)
        return entry

    __getitem__ = get

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
