"""Backends: where packs, index files and locks live. ``open_backend(url)`` picks one by scheme."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from modelkeep.errors import InvalidURI
from modelkeep.store.backends.base import Backend, ObjectInfo

__all__ = ["Backend", "ObjectInfo", "open_backend", "SCHEMES"]

SCHEMES = ("file", "memory", "s3")


def open_backend(url: str) -> Backend:
    """``file:///abs/path`` (or a plain path), ``memory://name``, ``s3://bucket/prefix``.

    Unknown schemes raise InvalidURI. The s3 backend needs the ``s3`` extra (boto3).
    """
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
    if scheme == "s3":
        try:
            from modelkeep.store.backends.s3 import parse_url
        except ImportError as exc:
            raise InvalidURI(f"s3 stores need boto3: pip install 'modelkeep[s3]' ({exc})") from None
        return parse_url(url)
    raise InvalidURI(f"unknown store scheme {scheme!r} ({', '.join(SCHEMES)})")
