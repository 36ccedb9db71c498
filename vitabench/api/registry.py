"""Name → lazy ``module:attr`` registries, extended by third parties through entry points."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Generic, TypeVar

from vitabench.api.errors import VitabenchError

T = TypeVar("T")


class RegistryError(VitabenchError, LookupError):
    """An unknown name, or a target that cannot be imported."""


@dataclass(frozen=True)
class RegistryEntry:
    """One registered name: where it lives and who provided it."""

    name: str
    target: str
    source: str  # "builtin" or the distribution that declared the entry point
    aliases: tuple[str, ...] = ()


class Registry(Generic[T]):
    """Maps names to lazily imported factories; built-ins first, then the entry-point ``group``."""

    def __init__(self, kind: str, group: str, builtins: Callable[[], dict[str, str]]) -> None:
        self.kind = kind
        self.group = group
        self._builtins = builtins
        self._entries: dict[str, RegistryEntry] | None = None
        self._aliases: dict[str, str] = {}

    def register(self, name: str, target: str, *, aliases: tuple[str, ...] = (), source: str = "runtime") -> None:
        """Add ``name`` → ``"module:attr"`` at run time (tests, notebooks)."""
        entries = self._load()
        entries[name] = RegistryEntry(name, target, source, aliases)
        for alias in aliases:
            self._aliases[alias] = name

    def _load(self) -> dict[str, RegistryEntry]:
        if self._entries is None:
            entries: dict[str, RegistryEntry] = {}
            for name, target in self._builtins().items():
                names = name.split("|")
                entries[names[0]] = RegistryEntry(names[0], target, "builtin", tuple(names[1:]))
                for alias in names[1:]:
                    self._aliases[alias] = names[0]
            for ep in metadata.entry_points(group=self.group):
                if ep.name in entries:
                    continue  # a plugin cannot shadow a built-in
                dist = ep.dist.name if ep.dist is not None else "unknown"
                entries[ep.name] = RegistryEntry(ep.name, ep.value, dist)
            self._entries = entries
        return self._entries

    def entries(self) -> list[RegistryEntry]:
        """All entries, sorted by name."""
        return sorted(self._load().values(), key=lambda e: e.name)

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def canonical(self, name: str) -> str:
        """Resolve an alias; raise with the known names for an unknown one."""
        entries = self._load()
        name = self._aliases.get(name, name)
        if name not in entries:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            )
        return name

    def load(self, name: str) -> Any:
        """Import and return the target registered under ``name``."""
        entry = self._load()[self.canonical(name)]
        module_name, _, attr = entry.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise RegistryError(
                f"{self.kind} {entry.name!r} points to {entry.target!r} ({entry.source}), "
                f"which cannot be loaded: {exc}"
            ) from exc
        return obj
