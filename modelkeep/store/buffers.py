"""Byte buffers reused across requests and batches.

Fresh memory costs a page fault per 4 KiB the first time it is touched: ~1-4 us
each on the VMs we measure, i.e. 0.3-1 s per GiB, as much as hashing and
compressing those bytes. Code that fills large buffers over and over (an upload
body, the grouped planes of a batch) borrows them from a pool instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BufferPool"]


class BufferPool:
    """At most ``keep`` idle buffers, each reused for any request up to its size."""

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._free: list[bytearray] = []
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

    def take(self, n: int) -> bytearray:
        """A buffer of at least ``n`` bytes; hand it back with ``give`` once no view of it is used."""
        with self._lock:
            for i, buf in enumerate(self._free):
                if len(buf) >= n:
                    return self._free.pop(i)
        return bytearray(n)

    def give(self, buf: bytearray) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)
            else:  # keep the largest ones: they serve every request
                smallest = min(range(len(self._free)), key=lambda i: len(self._free[i]), default=None)
                if smallest is not None and len(self._free[smallest]) < len(buf):
                    self._free[smallest] = buf
