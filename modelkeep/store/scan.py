"""A file's chunks and digest, computed without storing anything.

``scan_file`` cuts and hashes a file exactly as a push does, so the entry it
returns is the one a push would record: ``mk digest`` prints it, and a remote
push hands each chunk to its uploader on the way.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from modelkeep.errors import InvalidPath
from modelkeep.store.buffers import BufferRing
from modelkeep.store.chunking import cut, segments
from modelkeep.store.digest import MAPPED, Digest, hash_chunks
from modelkeep.store.manifest import ChunkRef, FileEntry

__all__ = ["scan_file", "open_source", "map_range", "OnChunk"]

# (digest, bytes, element size, phase): the bytes are valid only during the call
OnChunk = Callable[[bytes, memoryview, int, int], None]


def open_source(path: str | Path) -> BinaryIO:
    """A file to push or scan, opened for reading. Raises InvalidPath."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise InvalidPath(f"cannot read {path}: {exc.strerror}") from None


@contextmanager
def map_range(path: str | Path, start: int, end: int) -> Iterator[memoryview | None]:
    """Bytes ``start:end`` of the file at ``path`` through a read-only mapping, as
    a view indexed by file offset minus ``start``; None where files cannot be
    mapped or their bytes read safely through a mapping (see ``digest.MAPPED``).

    Read the view only with ``digest.hash_mapped`` and ``digest.copy_mapped``:
    they turn the SIGBUS of a file truncated meanwhile into an answer. Views
    taken from it must not outlive the block.
    """
    if not MAPPED or end <= start:
        yield None
        return
    lead = start % mmap.ALLOCATIONGRANULARITY  # a mapping starts on a page
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            m = mmap.mmap(fd, end - start + lead, access=mmap.ACCESS_READ, offset=start - lead)
        finally:
            os.close(fd)
    except (OSError, ValueError):  # a file that cannot be mapped is read instead
        yield None
        return
    view = memoryview(m)
    piece = view[lead:]
    try:
        yield piece
    finally:
        piece.release()
        view.release()
        try:
            m.close()  # unmapped now: the pages hashed do not count in this process's memory
        except BufferError:  # a view still refers to it: unmapped when the last one goes
            pass


def scan_file(path: str | Path, rel: str, on_chunk: OnChunk | None = None) -> FileEntry:
    """The entry of the file at ``path`` named ``rel``. Raises InvalidPath."""
    with open_source(path) as f:
        st = os.fstat(f.fileno())
        refs: list[ChunkRef] = []
        buf = BufferRing(1)  # one block buffer, reused: on_chunk copies what it keeps
        for seg in segments(f, st.st_size, rel):
            for block_off, view, cuts in cut(f, seg, into=buf.take):
                for (off, ln), d in zip(cuts, hash_chunks(view, cuts)):
                    refs.append(ChunkRef(Digest(d), ln))
                    if on_chunk is not None:
                        phase = (block_off + off - seg.start) % seg.elem if seg.elem else 0
                        on_chunk(d, view[off : off + ln], seg.elem, phase)
    entry = FileEntry.of_chunks(rel, refs, bool(st.st_mode & 0o111))
    if entry.size != st.st_size:
        raise InvalidPath(f"{path} changed while being read")
    return entry
