"""One generic registry per axis (pruner, quantizer, distiller, model source, task kind)."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

from suite.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to components. `key` is the config key that selects a member (for errors)."""

    def __init__(self, key: str):
        self.key = key
        self._items: dict[str, T] = {}
        self._configs: dict[str, type] = {}

    def register(self, name: str, *, config: type | None = None) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.key}: '{name}' is registered twice")
            self._items[name] = obj
            if config is not None:
                self._configs[name] = config
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(self.key, self._unknown(name))
        return self._items[name]

    def config_class(self, name: str) -> type:
        self.get(name)
        return self._configs[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def _unknown(self, name: str) -> str:
        hint = difflib.get_close_matches(name, self.names(), n=1)
        tip = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"unknown value '{name}'; allowed: {', '.join(self.names())}{tip}"


def import_members(package: str) -> None:
    """Import every module of `package` (e.g. suite.prune), so a method registers itself by
    existing: adding one is its module plus its YAML, no list to edit."""
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package}.{info.name}")
