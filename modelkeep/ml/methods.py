"""ML conveniences as methods of the registries ``modelkeep.open()`` returns.

The layers forbid ``registry/`` to import ``ml/``, so the ``Registry`` ABC
cannot carry ``log_model``. Instead ``modelkeep.open()`` builds its registry
from :func:`with_model_methods`: the implementation class (embedded or remote)
with :class:`ModelMethods` mixed in. Each method is one line over the
functions of ``ml/`` that take the registry as first argument, which remain
the documented API (``modelkeep.log_model(reg, obj, "fraud")`` and
``reg.log_model(obj, "fraud")`` do the same thing).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelkeep.ml.bundles import Bundle
    from modelkeep.ml.flavors import LoadedModel
    from modelkeep.ml.runs import Run
    from modelkeep.registry.api import Registry
    from modelkeep.registry.types import Version

__all__ = ["ModelMethods", "with_model_methods"]


class ModelMethods:
    """Mixin for a ``Registry`` subclass; see the functions each method names for the contract."""

    def log_model(self, obj: Any, name: str, **options: Any) -> Version:
        """:func:`modelkeep.ml.flavors.log_model` on this registry."""
        from modelkeep.ml.flavors import log_model

        return log_model(self._registry(), obj, name, **options)

    def load_model(self, ref: str, **options: Any) -> LoadedModel:
        """:func:`modelkeep.ml.flavors.load_model` on this registry."""
        from modelkeep.ml.flavors import load_model

        return load_model(self._registry(), ref, **options)

    @contextmanager
    def run(self, name: str, **options: Any) -> Iterator[Run]:
        """:func:`modelkeep.ml.runs.run` on this registry."""
        from modelkeep.ml.runs import run

        with run(name, registry=self._registry(), **options) as r:
            yield r

    def create_bundle(self, name: str, members: Any, **options: Any) -> Version:
        """:func:`modelkeep.ml.bundles.create_bundle` on this registry."""
        from modelkeep.ml.bundles import create_bundle

        return create_bundle(self._registry(), name, members, **options)

    def update_bundle(self, name: str, members: Any, **options: Any) -> Version:
        """:func:`modelkeep.ml.bundles.update_bundle` on this registry."""
        from modelkeep.ml.bundles import update_bundle

        return update_bundle(self._registry(), name, members, **options)

    def resolve_bundle(self, ref: str) -> list[Version]:
        """:func:`modelkeep.ml.bundles.resolve_bundle` on this registry."""
        from modelkeep.ml.bundles import resolve_bundle

        return resolve_bundle(self._registry(), ref)

    def bundle(self, ref: str) -> Bundle:
        """:func:`modelkeep.ml.bundles.bundle` on this registry."""
        from modelkeep.ml.bundles import bundle

        return bundle(self._registry(), ref)

    def variant(self, ref: str, variant: str) -> Version:
        """:func:`modelkeep.ml.bundles.find_variant` on this registry."""
        from modelkeep.ml.bundles import find_variant

        return find_variant(self._registry(), ref, variant)

    def _registry(self) -> Registry:
        from modelkeep.registry.api import Registry

        assert isinstance(self, Registry), "ModelMethods is a mixin for Registry classes"
        return self


@cache
def with_model_methods(cls: type[Registry]) -> type[Registry]:
    """``cls`` with :class:`ModelMethods` mixed in (one class per implementation, same name)."""
    return type(cls.__name__, (ModelMethods, cls), {"__module__": cls.__module__, "__doc__": cls.__doc__})
