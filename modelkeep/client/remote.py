"""RemoteRegistry: the Registry interface over HTTP to a modelkeep server.

``modelkeep.open("http://host:8080")`` or ``MODELKEEP_URI=http://host:8080``
gives one; ``MODELKEEP_TOKEN`` is sent as the bearer token. One method per row
of ``registry/operations.py`` is generated from the ABC's signature, so
arguments are checked exactly as the interface declares them and results come
back as the same records (``registry/wire.py``). Errors come back as the same
classes (``client/_http.py``). Deviations from ``registry/api.py``:

* the actor recorded on changes is the token's user, not ``MODELKEEP_USER``;
* ``push`` and ``pull`` go through ``client/transfer.py`` (chunk-level transfer:
  only missing chunks travel; pulls go through the local chunk cache).
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelkeep.client import transfer
from modelkeep.client._http import Http
from modelkeep.client.cache import ChunkCache
from modelkeep.registry.api import Progress, RefLike, Registry
from modelkeep.registry.operations import OPERATIONS, Operation
from modelkeep.registry.types import Version
from modelkeep.registry.wire import from_wire, to_wire
from modelkeep.store.manifest import Manifest

__all__ = ["RemoteRegistry"]

API = "/api/v1"


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    wired = to_wire(value)
    return wired if isinstance(wired, str) else json.dumps(wired)


def _operation_method(op: Operation) -> Callable[..., Any]:
    fn = getattr(Registry, op.method)
    sig = inspect.signature(fn)
    returns = typing.get_type_hints(fn).get("return", Any)

    def method(self: RemoteRegistry, *args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(self, *args, **kwargs)
        arguments = {k: v for k, v in bound.arguments.items() if k not in ("self", "progress")}
        return self._call(op, arguments, returns)

    method.__name__ = op.method
    method.__qualname__ = f"RemoteRegistry.{op.method}"
    method.__doc__ = fn.__doc__
    method.__signature__ = sig  # type: ignore[attr-defined]
    return method


class RemoteRegistry(Registry):
    """``RemoteRegistry("http://host:8080", token=...)``."""

    def __init__(
        self, url: str, *, token: str | None = None, timeout: float = 300.0, cache: ChunkCache | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = Http(self.url, token=token, timeout=timeout)
        self._cache = cache  # chunks pulled before; None: ~/.cache/modelkeep

    @property
    def http(self) -> Http:
        return self._http

    def _call(self, op: Operation, arguments: dict[str, Any], returns: Any) -> Any:
        path = API + op.path
        if op.verb in ("GET", "DELETE"):
            params = {k: _query_value(v) for k, v in arguments.items() if v is not None}
            resp = self._http.request(op.verb, path, params=params)
        else:
            resp = self._http.request(op.verb, path, json=to_wire(arguments))
        return from_wire(returns, resp.json())

    # One method per operation of the table; the ABC refuses to instantiate if one is missing.
    for _op in OPERATIONS:
        locals()[_op.method] = _operation_method(_op)
    del _op

    # -- transfer -------------------------------------------------------------------

    def push(self, path: str | Path, name: str, **kwargs: Any) -> Version:  # type: ignore[override]
        bound = inspect.signature(Registry.push).bind(self, path, name, **kwargs)
        extra = {k: v for k, v in bound.arguments.items() if k not in ("self", "path", "name")}
        return transfer.push_files(self._http, path, name, **extra)

    def pull(self, ref: RefLike, dest: str | Path, *, progress: Progress | None = None) -> Version:
        return transfer.pull_files(self._http, str(ref), dest, progress, cache=self._cache)

    def commit_manifest(self, name: str, manifest: Manifest, **kwargs: Any) -> Version:  # type: ignore[override]
        bound = inspect.signature(Registry.commit_manifest).bind(self, name, manifest, **kwargs)
        extra = {k: v for k, v in bound.arguments.items() if k not in ("self", "name", "manifest")}
        body = {"name": name, "manifest": manifest.to_doc(), **to_wire(extra)}
        return from_wire(Version, self._http.request("POST", f"{API}/chunks/commit", json=body).json())

    def manifest(self, ref: RefLike) -> tuple[Version, Manifest]:
        doc = self._http.request("GET", f"{API}/chunks/manifest", params={"ref": str(ref)}).json()
        return from_wire(Version, doc["version"]), Manifest.from_doc(doc["manifest"])

    def close(self) -> None:
        self._http.close()
