"""Backends: where packs, index files and locks live. ``open_backend(url)`` picks one by scheme."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from modelkeep.errors import InvalidURI
from modelkeep.store.backends.base import Backend, ObjectInfo

__all__ = ["Backend", "ObjectInfo", "open_backend", "SCHEMES"]

SCHEMES = ("file", "memory")


def open_backend(url: str) -> Backend:
    """``file:///abs/path`` (or a plain path), ``memory://name``. Unknown schemes raise InvalidURI."""
    parts = urlsplit(url)
    scheme = parts.scheme or "file"
    if scheme == "file":
        from modelkeep.store.backends.local import LocalBackend

        path = unquote(parts.path) if parts.scheme else url
        if parts.netloc and parts.netloc != "localhost":
            raise InvalidURI(f"file URL with a host is not supported: {url!r} (use file:///absolute/path)")
        if not path:
            raise InvalidURI(f"file URL without a path: {url!r}")
        return LocalBackend(path)
    if scheme == "memory":
        from modelkeep.store.backends.memory import MemoryBackend

        return MemoryBackend(parts.netloc or "default")
    raise InvalidURI(f"unknown store scheme {scheme!r} ({', '.join(SCHEMES)})")
