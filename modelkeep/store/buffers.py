"""Byte buffers reused across requests and batches.

Fresh memory costs a page fault per 4 KiB the first time it is touched: ~1-4 us
each on the VMs we measure, i.e. 0.3-1 s per GiB, as much as hashing and
compressing those bytes. Code that fills large buffers over and over (an upload
body, the grouped planes of a batch) borrows them from a pool instead.

A large buffer is an anonymous private mapping (``fresh``), not a bytearray:
``bytearray(n)`` zeroes its n bytes at once, taking every page fault while it
holds the interpreter lock, so a server making its first buffers stalled every
other request meanwhile. A mapping's pages are faulted in by whatever first
writes them, usually a native copy that runs without the lock.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

__all__ = ["Buffer", "BufferPool", "BufferRing", "anonymous", "fresh"]

_GRANULE = 1024 * 1024
_MAPPED_FROM = 256 * 1024  # smaller buffers come from malloc, whose memory is reused


Buffer = bytearray | mmap.mmap


_ANONYMOUS = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)  # 0 where mmap takes no flags


def anonymous(n: int) -> mmap.mmap:
    """``n`` bytes of private anonymous memory: page aligned, zero, untouched until written.

    Private, not mmap's default of shared: shared anonymous memory is a file in
    memory, whose page faults cost more.
    """
    return mmap.mmap(-1, n, flags=_ANONYMOUS) if _ANONYMOUS else mmap.mmap(-1, n)


def fresh(n: int) -> Buffer:
    """A new writable buffer of ``n`` bytes (contents zero), its pages not yet touched when large."""
    if n < _MAPPED_FROM or not _ANONYMOUS:
        return bytearray(n)
    return anonymous(n)


class BufferPool:
    """At most ``keep`` idle buffers, each reused for any request up to its size."""

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._free: list[Buffer] = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self, n: int) -> Iterator[memoryview]:
        """A buffer of at least ``n`` bytes (contents undefined) as a view of exactly ``n``.

        The buffer goes back to the pool when the block ends: views of it must not
        be used after that.
        """
        buf = self.take(n)
        try:
            yield memoryview(buf)[:n]
        finally:
            self.give(buf)

    def take(self, n: int) -> Buffer:
        """A buffer of at least ``n`` bytes; hand it back with ``give`` once no view of it is used."""
        with self._lock:
            for i, buf in enumerate(self._free):
                if len(buf) >= n:
                    return self._free.pop(i)
        # Sizes rounded up, so the next request of about this size (an upload batch
        # is a few bytes longer or shorter each time) finds this buffer big enough.
        return fresh(-(-n // _GRANULE) * _GRANULE if n > _GRANULE else n)

    def trim(self) -> int:
        """Let every idle buffer go (its memory back to the system); the bytes let go.

        Buffers in use are not touched: they are kept or dropped as usual when given back.
        """
        with self._lock:
            idle, self._free = self._free, []
        freed = 0
        for buf in idle:
            freed += len(buf)
            if isinstance(buf, mmap.mmap):
                try:
                    buf.close()  # unmapped now, not when the collector gets to it
                except BufferError:  # a view of it outlived its borrow: unmapped with the view
                    pass
        return freed

    def give(self, buf: Buffer) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)
            else:  # keep the largest ones: they serve every request
                smallest = min(range(len(self._free)), key=lambda i: len(self._free[i]), default=None)
                if smallest is not None and len(self._free[smallest]) < len(buf):
                    self._free[smallest] = buf


class BufferRing:
    """Block buffers one thread reuses in turn, each free again once the work reading it is done.

    ``take`` moves to the next slot, first waiting for the futures ``hold`` recorded
    against it (a digest, a write still reading the slot's bytes), so no buffer is
    overwritten while in use. Each slot also has a ``scratch`` buffer for bytes
    derived from its block. Buffers grow to the largest request seen.
    """

    def __init__(self, slots: int) -> None:
        self._bufs: list[Buffer] = [bytearray() for _ in range(slots)]
        self._scratch: list[Buffer] = [bytearray() for _ in range(slots)]
        self._held: list[list[Future]] = [[] for _ in range(slots)]
        self._slot = slots - 1

    def take(self, n: int) -> memoryview:
        self._slot = (self._slot + 1) % len(self._bufs)
        held, self._held[self._slot] = self._held[self._slot], []
        _wait_all(held)
        if len(self._bufs[self._slot]) < n:
            self._bufs[self._slot] = fresh(n)
        return memoryview(self._bufs[self._slot])[:n]

    def scratch(self, n: int) -> memoryview:
        if len(self._scratch[self._slot]) < n:
            self._scratch[self._slot] = fresh(n)
        return memoryview(self._scratch[self._slot])[:n]

    def hold(self, fut: Future) -> None:
        """The current slot's buffers stay untouched until ``fut`` is done."""
        self._held[self._slot].append(fut)

    def drain(self) -> None:
        """Wait for everything still reading these buffers; raise the first failure."""
        BufferRing.drain_all([self])

    @staticmethod
    def drain_all(rings: Iterable[BufferRing]) -> None:
        """``drain`` of every ring, waiting for all of them even after a failure; raise the first."""
        held: list[Future] = []
        for ring in rings:
            held += [f for slot in ring._held for f in slot]
            ring._held = [[] for _ in ring._held]
        _wait_all(held)


def _wait_all(futures: Iterable[Future]) -> None:
    # every one, even after a failure: none may still read a buffer once this returns
    failure: BaseException | None = None
    for fut in futures:
        try:
            fut.result()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
