"""Drafter factories by name, so recipes and user code can build pools from names.

The registry is an explicit object (`DrafterRegistry`); `drafters.REGISTRY` is the one the
package fills with its own families, and `register` / `build` / `registered` act on it.
"""
from __future__ import annotations

from typing import Callable

from specsel.core.drafting import Drafter, DrafterError


class DrafterRegistry:
    """Name -> factory returning a Drafter."""

    def __init__(self, factories: dict[str, Callable[..., Drafter]] | None = None):
        self._factories: dict[str, Callable[..., Drafter]] = dict(factories or {})

    def register(self, name: str, factory: Callable[..., Drafter], overwrite: bool = False) -> None:
        """Register a drafter factory under `name`."""
        if name in self._factories and not overwrite:
            raise DrafterError(f"drafter '{name}' is already registered; pass overwrite=True to replace it")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def build(self, name: str, *args, **kwargs) -> Drafter:
        """Build the drafter registered as `name`."""
        if name not in self._factories:
            raise DrafterError(f"unknown drafter '{name}'; registered: {', '.join(self.names()) or 'none'}")
        drafter = self._factories[name](*args, **kwargs)
        drafter.name = name
        return drafter
