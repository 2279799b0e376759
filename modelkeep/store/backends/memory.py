"""In-process backend for tests: objects live in a dict shared by name."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from modelkeep.errors import ChunkNotFound, StoreLocked
from modelkeep.store.backends.base import Backend, ObjectInfo

__all__ = ["MemoryBackend"]

_SPACES: dict[str, dict[str, tuple[bytes, float]]] = {}
_SPACES_LOCK = threading.Lock()


class MemoryBackend(Backend):
    def __init__(self, space: str = "default") -> None:
        self.url = f"memory://{space}"
        with _SPACES_LOCK:
            self._objects = _SPACES.setdefault(space, {})
        self._lock = threading.Lock()
        self._readers = 0
        self._gc = False

    def put(self, name: str, data: bytes | memoryview) -> None:
        self._objects[name] = (bytes(data), time.time())

    def put_file(self, name: str, path: str) -> None:
        p = Path(path)
        self.put(name, p.read_bytes())
        p.unlink()

    def _entry(self, name: str) -> tuple[bytes, float]:
        try:
            return self._objects[name]
        except KeyError:
            raise ChunkNotFound(f"object {name} is missing from the store") from None

    def get(self, name: str) -> bytes:
        return self._entry(name)[0]

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        data = self._entry(name)[0][offset : offset + length]
        if len(data) != length:
            raise ChunkNotFound(f"object {name} is shorter than expected ({offset}+{length})")
        return data

    def open_reader(self, name: str) -> BinaryIO:
        return io.BytesIO(self.get(name))

    def exists(self, name: str) -> bool:
        return name in self._objects

    def stat(self, name: str) -> ObjectInfo:
        data, mtime = self._entry(name)
        return ObjectInfo(name, len(data), mtime)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for name, (data, mtime) in list(self._objects.items()):
            if name.startswith(prefix):
                yield ObjectInfo(name, len(data), mtime)

    def delete(self, name: str) -> None:
        self._objects.pop(name, None)

    def set_mtime(self, name: str, mtime: float) -> None:
        """Tests age objects to exercise gc's grace period."""
        data, _ = self._entry(name)
        self._objects[name] = (data, mtime)

    @contextmanager
    def lock(self, exclusive: bool) -> Iterator[None]:
        with self._lock:
            if exclusive and (self._readers or self._gc):
                raise StoreLocked("a push is in progress on this store; gc will not run now")
            if exclusive:
                self._gc = True
            else:
                self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                if exclusive:
                    self._gc = False
                else:
                    self._readers -= 1

    def close(self) -> None:
        pass
