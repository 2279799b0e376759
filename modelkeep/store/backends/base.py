"""The Backend protocol: immutable named objects, nothing more.

Object names are ``/``-separated relative keys such as ``packs/ab/ab12….pack``.
An object, once written under a name, is never rewritten with other bytes;
``put`` is atomic (readers see the whole object or nothing).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["Backend", "ObjectInfo"]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    mtime: float  # seconds since the epoch


class Backend(abc.ABC):
    """Storage of immutable named objects. Implementations: local, memory."""

    url: str

    @abc.abstractmethod
    def put(self, name: str, data: bytes | memoryview) -> None:
        """Store ``data`` under ``name`` atomically and durably."""

    @abc.abstractmethod
    def put_file(self, name: str, path: str) -> None:
        """Move or copy the finished local file ``path`` to ``name`` atomically and durably.

        The caller has written and fsynced ``path``; it no longer belongs to the caller.
        """

    @abc.abstractmethod
    def get(self, name: str) -> bytes:
        """Return the whole object. Raises ChunkNotFound when absent."""

    @abc.abstractmethod
    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``. Raises ChunkNotFound when absent."""

    def read_into(self, name: str, offset: int, view: memoryview) -> None:
        """Fill ``view`` with the bytes at ``offset``. Raises ChunkNotFound when absent or short."""
        view[:] = self.get_range(name, offset, len(view))

    def will_read(self, name: str, offset: int, length: int) -> None:
        """A hint that ``read_into`` will soon ask for these bytes; never raises. Default: nothing."""

    @abc.abstractmethod
    def open_reader(self, name: str) -> BinaryIO:
        """A seekable binary reader of the object (caller closes it)."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def stat(self, name: str) -> ObjectInfo:
        """Raises ChunkNotFound when absent."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix`` (no order promised)."""

    @abc.abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object; absent objects are not an error."""

    @abc.abstractmethod
    def lock(self, exclusive: bool) -> AbstractContextManager[None]:
        """Shared lock for pushes, exclusive for gc.

        ``exclusive=True`` raises StoreLocked at once when a push holds the store;
        a shared request waits for a running gc.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release open handles."""

    def local_temp_dir(self) -> str | None:
        """A local directory for the temp files of packs being written (None: the system's).

        The local backend's is on the store's filesystem, so a pack is renamed
        into place; others upload from it. ``gc`` removes files in it older than
        its grace period: those of pushes that were killed.
        """
        return None

    def sweep_incomplete(self, before: float) -> int:
        """Drop writes that began before ``before`` (epoch seconds) and never finished; how many."""
        return 0
