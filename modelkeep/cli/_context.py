"""Per-invocation state: the settings built once by ``main`` and the registry opened on first use."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from modelkeep.config import Settings
from modelkeep.registry.api import Registry

__all__ = ["State", "state", "registry", "open_registry"]


def open_registry(settings: Settings) -> Registry:
    """The registry the CLI talks to; the one place that picks an implementation."""
    import modelkeep  # deferred: `mk --help` should not pay for SQLAlchemy and the store

    return modelkeep.open(settings)


@dataclass
class State:
    settings: Settings
    _registry: Registry | None = field(default=None, repr=False)

    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = open_registry(self.settings)
        return self._registry

    def close(self) -> None:
        if self._registry is not None:
            reg, self._registry = self._registry, None
            reg.close()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    assert isinstance(obj, State), "main callback did not run"
    return obj


def registry(ctx: typer.Context) -> Registry:
    return state(ctx).registry()
