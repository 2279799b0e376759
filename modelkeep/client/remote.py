"""RemoteRegistry: the Registry interface over HTTP to a modelkeep server.

``modelkeep.open("http://host:8080")`` or ``MODELKEEP_URI=http://host:8080``
gives one; ``MODELKEEP_TOKEN`` is sent as the bearer token. One method per row
of ``registry/operations.py`` is generated from the ABC's signature, so
arguments are checked exactly as the interface declares them and results come
back as the same records (``registry/wire.py``). Errors come back as the same
classes (``client/_http.py``). Deviations from ``registry/api.py``:

* the actor recorded on changes is the token's user, not ``MODELKEEP_USER``;
* ``push`` and ``pull`` go through ``client/transfer.py`` (chunk-level transfer)
  when it is installed, else through whole-file uploads and a tar download;
  with the latter, provenance is captured on the server, not on the client.
"""

from __future__ import annotations

import inspect
import json
import os
import stat
import typing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from modelkeep.client._http import Http
from modelkeep.client.cache import ChunkCache
from modelkeep.errors import CorruptData, InvalidPath
from modelkeep.registry import tree
from modelkeep.registry.api import Progress, RefLike, Registry
from modelkeep.registry.operations import OPERATIONS, Operation
from modelkeep.registry.types import Version
from modelkeep.registry.wire import from_wire, to_wire
from modelkeep.store.manifest import Manifest, normalize_path

__all__ = ["RemoteRegistry"]

API = "/api/v1"
_BLOCK = 1024 * 1024


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
        progress: Progress | None = bound.arguments.get("progress")
        extra = {k: v for k, v in bound.arguments.items() if k not in ("self", "path", "name", "progress")}
        transfer = _transfer()
        if transfer is not None:
            return transfer.push_files(self._http, path, name, progress=progress, **extra)
        return self._push_whole_files(path, name, extra, progress)

    def pull(self, ref: RefLike, dest: str | Path, *, progress: Progress | None = None) -> Version:
        transfer = _transfer()
        if transfer is not None:
            return transfer.pull_files(self._http, ref, dest, progress, cache=self._cache)
        return self._pull_archive(ref, dest, progress)

    def commit_manifest(self, name: str, manifest: Manifest, **kwargs: Any) -> Version:  # type: ignore[override]
        bound = inspect.signature(Registry.commit_manifest).bind(self, name, manifest, **kwargs)
        extra = {k: v for k, v in bound.arguments.items() if k not in ("self", "name", "manifest")}
        body = {"name": name, "manifest": json.loads(manifest.to_bytes()), **to_wire(extra)}
        return from_wire(Version, self._http.request("POST", f"{API}/chunks/commit", json=body).json())

    def manifest(self, ref: RefLike) -> tuple[Version, Manifest]:
        doc = self._http.request("GET", f"{API}/chunks/manifest", params={"ref": str(ref)}).json()
        return from_wire(Version, doc["version"]), Manifest.from_bytes(json.dumps(doc["manifest"]).encode())

    def close(self) -> None:
        self._http.close()

    # -- whole-file transfer (until client/transfer.py lands) -----------------------------

    def _push_whole_files(self, path: str | Path, name: str, extra: dict[str, Any], progress: Progress | None) -> Version:
        files = tree.collect(path)
        upload = self._http.request("POST", f"{API}/uploads", json={"name": name}).json()["id"]
        try:
            for f in files:
                size = f.path.stat().st_size
                executable = bool(f.path.stat().st_mode & stat.S_IXUSR)
                self._http.request(
                    "PUT",
                    f"{API}/uploads/{upload}/files",
                    params={"path": f.rel, "executable": "true" if executable else "false"},
                    content=_read_blocks(f.path, progress),
                    headers={"Content-Length": str(size)},
                )
            resp = self._http.request("POST", f"{API}/uploads/{upload}/commit", json=to_wire(extra))
        except BaseException:
            try:
                self._http.request("DELETE", f"{API}/uploads/{upload}")
            except Exception as cleanup:  # the first error is the one to report; this one rides along
                cleanup.__suppress_context__ = True
            raise
        return from_wire(Version, resp.json())

    def _pull_archive(self, ref: RefLike, dest: str | Path, progress: Progress | None) -> Version:
        import tarfile

        root = Path(dest).expanduser().absolute()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidPath(f"cannot create {root}: {exc.strerror}") from None
        real_root = root.resolve()
        with self._http.stream("GET", f"{API}/archive", params={"ref": str(ref)}) as resp:
            exact = resp.headers["X-Modelkeep-Version"]
            reader = _StreamReader(resp.iter_bytes(_BLOCK))
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    if not member.isfile():
                        raise CorruptData(f"the server sent a non-file entry {member.name!r}")
                    rel = normalize_path(member.name)
                    if rel != member.name:
                        raise CorruptData(f"the server sent an unnormalized path {member.name!r}")
                    target = root / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    parent = target.parent.resolve()
                    if parent != real_root and real_root not in parent.parents:
                        raise InvalidPath(f"refusing to write {rel}: a symlink under {root} leads outside it")
                    src = tar.extractfile(member)
                    assert src is not None
                    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
                    try:
                        with open(tmp, "wb") as out:
                            while block := src.read(_BLOCK):
                                out.write(block)
                                if progress is not None:
                                    progress(len(block))
                        if member.mode & 0o100:
                            tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
                        os.replace(tmp, target)
                    except BaseException:
                        tmp.unlink(missing_ok=True)
                        raise
        return self.get(exact)


def _read_blocks(path: Path, progress: Progress | None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            if progress is not None:
                progress(len(block))
            yield block


class _StreamReader:
    """A read-only file over an iterator of byte blocks (what tarfile's stream mode needs)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._buf = bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            block = next(self._blocks, None)
            if block is None:
                break
            self._buf += block
        if n < 0:
            n = len(self._buf)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


def _transfer() -> Any:
    """``modelkeep.client.transfer`` when it exists (chunk-level push and pull), else None."""
    try:
        from modelkeep.client import transfer
    except ImportError:
        return None
    return transfer

