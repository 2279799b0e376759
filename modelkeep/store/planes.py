"""Byte-plane grouping: the native helper when it was built, numpy otherwise.

``shuffle(src, elem, dst)`` writes the ``elem`` byte planes of ``src`` (byte 0 of
every element, then byte 1, ...) one after another into ``dst``; ``unshuffle``
does the reverse from a sequence of planes. Both give the same bytes either way;
the native loops (modelkeep/store/_planes.c) are ~4-5x faster and release the GIL.
``gather`` copies parts back to back into a buffer, natively without the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["shuffle", "shuffle_many", "unshuffle", "gather", "NATIVE"]

try:
    from modelkeep.store._planes import gather as _gather
    from modelkeep.store._planes import shuffle as _shuffle
    from modelkeep.store._planes import shuffle_many as _shuffle_many
    from modelkeep.store._planes import unshuffle as _unshuffle

    NATIVE = True
except ImportError:  # built without a C compiler
    NATIVE = False


def shuffle(src: bytes | memoryview, elem: int, dst: bytearray | memoryview) -> None:
    """Group the bytes of ``len(src) // elem`` whole elements by significance into ``dst``."""
    if NATIVE:
        _shuffle(src, elem, dst)
        return
    import numpy as np

    if elem not in (2, 4, 8):
        raise ValueError("element size must be 2, 4 or 8")
    if len(src) % elem or len(dst) < len(src):
        raise ValueError("source is not whole elements, or the destination is shorter")
    n = len(src) // elem
    out = np.frombuffer(dst, dtype=np.uint8, count=n * elem).reshape(elem, n)
    out[...] = np.frombuffer(src, dtype=np.uint8, count=n * elem).reshape(n, elem).T


def shuffle_many(items: list[tuple[bytes | memoryview, int, bytearray | memoryview]]) -> None:
    """``shuffle`` of each ``(src, elem, dst)``; natively in one call (one hand-off of the interpreter lock)."""
    if NATIVE:
        _shuffle_many(items)
        return
    for src, elem, dst in items:
        shuffle(src, elem, dst)


def unshuffle(planes: Sequence[bytes | memoryview], dst: bytearray | memoryview) -> None:
    """Interleave ``len(planes)`` equal planes back into elements, filling ``dst`` exactly."""
    if NATIVE:
        _unshuffle(planes, dst)
        return
    import numpy as np

    e = len(planes)
    if e not in (2, 4, 8):
        raise ValueError("element size must be 2, 4 or 8")
    n = len(dst) // e
    if n * e != len(dst) or any(len(p) != n for p in planes):
        raise ValueError("planes do not fill the destination")
    grid = np.frombuffer(dst, dtype=np.uint8).reshape(n, e)
    for i, p in enumerate(planes):
        grid[:, i] = np.frombuffer(p, dtype=np.uint8)


def gather(dst: bytearray | memoryview, offset: int, parts: Sequence[bytes | memoryview]) -> tuple[int, int]:
    """Copy ``parts`` (byte buffers) back to back into ``dst`` from ``offset``, as many whole ones as fit.

    Returns the offset after the last part copied and how many were copied.
    """
    if NATIVE:
        return _gather(dst, offset, parts)
    if not 0 <= offset <= len(dst):
        raise ValueError("offset outside the destination")
    count = 0
    for part in parts:
        n = memoryview(part).nbytes
        if n > len(dst) - offset:
            break
        dst[offset : offset + n] = memoryview(part).cast("B")
        offset += n
        count += 1
    return offset, count
