"""The local chunk cache of the remote client: verified chunks by digest, size-bounded, least recently used out.

Layout: ``<root>/chunks/<xx>/<hex>``, one file per chunk, written to a unique temp
name and renamed (several processes may share a cache). A read re-verifies the
chunk's BLAKE3, drops a bad file and reports a miss, so a damaged cache costs a
download, never bad bytes. A hit touches the file's mtime; ``trim`` removes the
oldest files until the cache fits ``max_bytes``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import blake3

from modelkeep.errors import StorageError
from modelkeep.store.digest import Digest

__all__ = ["ChunkCache", "DEFAULT_CACHE_DIR", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_DIR = Path("~/.cache/modelkeep")
DEFAULT_CACHE_BYTES = 20 * 1024**3


class ChunkCache:
    def __init__(self, root: str | Path = DEFAULT_CACHE_DIR, *, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = Path(root).expanduser().absolute()
        self.max_bytes = max_bytes
        self._dir = self.root / "chunks"  # created by the first put

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _path(self, digest: Digest) -> Path:
        h = digest.hex
        return self._dir / h[:2] / h

    def get(self, digest: Digest) -> bytes | None:
        """The chunk's verified bytes, or None when absent (or damaged, then removed)."""
        if not self.enabled:
            return None
        p = self._path(digest)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None
        if blake3.blake3(data).digest() != digest.raw:
            p.unlink(missing_ok=True)
            return None
        try:
            os.utime(p)  # most recently used
        except FileNotFoundError:  # trimmed by another process meanwhile; we hold the bytes
            pass
        return data

    def __contains__(self, digest: Digest) -> bool:
        return self.enabled and self._path(digest).exists()

    def put(self, digest: Digest, data: bytes | memoryview) -> None:
        """Keep a chunk the caller has verified."""
        if not self.enabled:
            return
        p = self._path(digest)
        if p.exists():
            return
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write to the chunk cache {self._dir}: {exc.strerror}") from None

    def size(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[float, int, str]]:
        out = []
        if not self._dir.is_dir():
            return out
        for sub in os.scandir(self._dir):
            if not sub.is_dir():
                continue
            for e in os.scandir(sub.path):
                if e.name.startswith("."):
                    continue
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, st.st_size, e.path))
        return out

    def trim(self) -> int:
        """Remove least recently used chunks until the cache fits ``max_bytes``; returns bytes removed."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in sorted(entries):
            if total - removed <= self.max_bytes:
                break
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            removed += size
        return removed
