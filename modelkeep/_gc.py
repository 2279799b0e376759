"""Pausing the cyclic garbage collector around bulk steps that create many objects and no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block (or, as ``@collector_paused()``, the function) with the cyclic garbage
    collector off; its previous state comes back after.

    A pull builds a record per chunk (~16k per GiB) and per run of chunks; each
    few hundred new objects triggered a collection that walked every object the
    process holds (the ORM's, the framework's), ~5 % of a 1 GiB pull; a remote
    push's client, likewise, per chunk it cuts and queues; a local push ran ~80
    collections per GiB (~7 ms, holding the interpreter lock). Reference
    counting still frees everything the block drops; only cycles wait for the
    collector's next run. Another thread may toggle the collector meanwhile:
    the worst that can happen is that it runs during the block, or stays off
    until the outermost block that turned it off ends.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
