"""A file's chunks and digest, computed without storing anything.

``scan_file`` cuts and hashes a file exactly as a push does, so the entry it
returns is the one a push would record: ``mk digest`` prints it, and a remote
push hands each chunk to its uploader on the way.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import BinaryIO

from modelkeep.errors import InvalidPath
from modelkeep.store.buffers import BufferRing
from modelkeep.store.chunking import Segment, cut, pieces, segments, tensor_blocks
from modelkeep.store.digest import MAPPED, Digest, hash_chunks, hash_mapped
from modelkeep.store.manifest import ChunkRef, FileEntry

__all__ = ["scan_file", "open_source", "map_range", "mapped_blocks", "hashed_blocks", "OnChunk", "MAP_PIECE", "MAPPED_BLOCK"]

# (digest, bytes, element size, phase, offset in the file): the bytes are valid only
# during the call, and may lie in a mapping of the file: copy them with digest.copy_mapped
OnChunk = Callable[[bytes, memoryview, int, int, int], None]


MAP_PIECE = 16 * 1024 * 1024  # a tensor is mapped this much at a time (pages hashed leave the process)
MAPPED_BLOCK = 4 * 1024 * 1024  # bytes of a mapping hashed per call


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


def mapped_blocks(path: str | Path, seg: Segment, mapped: memoryview, block: int = MAPPED_BLOCK):
    """Blocks of tensor segment ``seg`` through ``mapped`` (its ``map_range``) with their chunks' digests:
    (file offset, bytes, cuts, digests), as ``cut`` and ``hash_chunks`` give them. Raises InvalidPath
    when the file shrinks meanwhile."""
    for pos, size, cuts in tensor_blocks(seg, block):
        view = mapped[pos - seg.start : pos - seg.start + size]
        digests = hash_mapped(view, cuts)
        if digests is None:
            raise InvalidPath(f"{path} changed while being read")
        yield pos, view, cuts, digests


def hashed_blocks(path: str | Path, f: BinaryIO, seg: Segment, into: Callable[[int], memoryview], mapped: memoryview | None):
    """Blocks of ``seg`` with their chunks' digests: (file offset, bytes, cuts, digests).

    Through ``mapped`` (the segment's ``map_range``) when given; else read from
    ``f`` (the file at ``path``) into buffers from ``into``, as ``cut`` does.
    """
    if mapped is not None:
        yield from mapped_blocks(path, seg, mapped)
        return
    for block_off, view, cuts in cut(f, seg, into=into):
        yield block_off, view, cuts, hash_chunks(view, cuts)


def scan_file(path: str | Path, rel: str, on_chunk: OnChunk | None = None) -> FileEntry:
    """The entry of the file at ``path`` named ``rel``. Raises InvalidPath.

    Tensors are hashed through a mapping of the file, a piece at a time (no
    copy of bytes nobody keeps); ``on_chunk`` copies what it keeps with
    ``digest.copy_mapped``.
    """
    with open_source(path) as f:
        st = os.fstat(f.fileno())
        refs: list[ChunkRef] = []
        buf = BufferRing(1)  # one block buffer, reused: on_chunk copies what it keeps
        for seg in segments(f, st.st_size, rel):
            for piece in pieces(seg, MAP_PIECE) if seg.tensor and MAPPED else [seg]:
                with map_range(path, piece.start, piece.end) if piece.tensor else nullcontext() as mapped:
                    blocks = hashed_blocks(path, f, piece, buf.take, mapped)
                    for block_off, view, cuts, digests in blocks:
                        for (off, ln), d in zip(cuts, digests):
                            refs.append(ChunkRef(Digest(d), ln))
                            if on_chunk is not None:
                                phase = (block_off + off - seg.start) % seg.elem if seg.elem else 0
                                on_chunk(d, view[off : off + ln], seg.elem, phase, block_off + off)
                        del view
                    del blocks
    entry = FileEntry.of_chunks(rel, refs, bool(st.st_mode & 0o111))
    if entry.size != st.st_size:
        raise InvalidPath(f"{path} changed while being read")
    return entry
