"""Packs: many chunks in one immutable object, with the index of its chunks at the end.

Layout (format 2, little endian; format 1 differs only in having no nib4 planes)::

    blob 0 | blob 1 | ... | header | trailer

    header  = entry * count, entry = digest (32) | offset u64 | stored u32 | raw u32 | codec u8
    trailer = magic b"MKPK" | format u16 | reserved u16 | header length u64          (16 bytes)

A pack is named ``packs/<xx>/<hex>.pack`` where ``<hex>`` is the BLAKE3 of its
header: the header lists every chunk digest, offset and codec, so it names the
content. A pack is written to a unique temp file, fsynced, renamed into place
and its directory fsynced; only then do its chunks enter the index.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

from modelkeep.errors import CorruptData
from modelkeep.store.backends.base import Backend
from modelkeep.store.buffers import anonymous
from modelkeep.store.digest import hash_bytes
from modelkeep.store.planes import gather

__all__ = ["PackEntry", "PackWriter", "read_header", "read_header_bytes", "pack_name", "trim_staging", "PACK_TARGET", "FORMAT"]

MAGIC = b"MKPK"
FORMAT = 2  # 2: chunks may use the nib4 plane method (codec.py); format 1 packs are read as ever
READABLE = (1, 2)
TRAILER = struct.Struct("<4sHHQ")
ENTRY = struct.Struct("<32sQIIB")
PACK_TARGET = 32 * 1024 * 1024  # seal a pack once it holds this many stored bytes


@dataclass(frozen=True, slots=True)
class PackEntry:
    digest: bytes  # raw 32-byte chunk digest
    offset: int
    stored: int  # bytes in the pack
    raw: int  # bytes once decoded
    codec: int


def pack_name(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}.pack"


def encode_header(entries: Sequence[PackEntry]) -> bytes:
    return b"".join(ENTRY.pack(e.digest, e.offset, e.stored, e.raw, e.codec) for e in entries)


def decode_entries(data: bytes | memoryview, count: int) -> list[PackEntry]:
    return [PackEntry(*ENTRY.unpack_from(data, i * ENTRY.size)) for i in range(count)]


class PackWriter:
    """Appends encoded chunks to a temp file; ``seal`` makes it a durable pack.

    A pack is fsynced the moment it is sealed, so when it lives on this machine's
    disk (the local backend) its bytes bypass the page cache: they are copied into
    an aligned staging buffer and written with O_DIRECT in large aligned writes.
    Through the page cache the same bytes cost a copy plus a fresh cache page per
    4 KiB, then the writeback that fsync waits for; direct writes go to the disk
    while the next chunks are encoded, and the fsync has almost nothing left to
    do. Where O_DIRECT is refused (tmpfs, some network filesystems) the writer
    falls back to ordinary writes; the pack's bytes are the same either way.
    """

    def __init__(self, backend: Backend) -> None:
        tmpdir = backend.local_temp_dir()
        self._path = os.path.join(tmpdir or tempfile.gettempdir(), f".pack-{uuid.uuid4().hex}.tmp")
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._backend = backend
        self._allocated = 0
        self._stage: _Stage | None = _Stage.open(self._fd, tmpdir) if tmpdir is not None else None
        self.entries: list[PackEntry] = []
        self.size = 0

    @property
    def direct(self) -> bool:
        """Whether bytes go to the disk with O_DIRECT."""
        return self._stage is not None

    def add_many(self, items: Iterable[tuple[bytes, int, Sequence[bytes | memoryview], int]]) -> None:
        """Append (digest, codec, parts, raw length) items with as few system calls as possible."""
        iov: list[bytes | memoryview] = []
        pos = self.size
        for digest, codec, parts, raw in items:
            start = pos
            for p in parts:
                n = len(p)
                if n:
                    iov.append(p)
                    pos += n
            self.entries.append(PackEntry(digest, start, pos - start, raw, codec))
        self._reserve(pos)
        self._write(iov)
        self.size = pos

    def add(self, digest: bytes, codec: int, parts: Sequence[bytes | memoryview], raw: int) -> None:
        self.add_many([(digest, codec, parts, raw)])

    def _write(self, iov: list[bytes | memoryview]) -> None:
        if self._stage is not None:
            self._stage.write(iov)
            return
        for i in range(0, len(iov), _IOV_MAX):
            _writev_all(self._fd, iov[i : i + _IOV_MAX])

    def _reserve(self, end: int) -> None:
        # Allocating blocks ahead of the writes avoids the slow path of delayed
        # allocation for large sequential writes (2-6x faster writes on ext4).
        if end > self._allocated and end > _ALLOC_STEP // 8:  # small packs: not worth a call
            step = max(end - self._allocated, _ALLOC_STEP)
            try:
                os.posix_fallocate(self._fd, self._allocated, step)
            except OSError:  # filesystems without fallocate: plain writes still work
                pass
            self._allocated += step

    def seal(self) -> tuple[str, list[PackEntry]]:
        """Finish, fsync and move the pack into place. Returns (pack id, entries)."""
        header = encode_header(self.entries)
        pack_id = hash_bytes(header).hex
        tail = header + TRAILER.pack(MAGIC, FORMAT, 0, len(header))
        self._write([tail])
        if self._stage is not None:
            self._stage.finish()  # the last partial block, padded: truncated below
        os.ftruncate(self._fd, self.size + len(tail))
        os.fsync(self._fd)
        self._release()
        self._backend.put_file(pack_name(pack_id), self._path)
        return pack_id, self.entries

    def discard(self) -> None:
        self._release()
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass

    def _release(self) -> None:
        if self._stage is not None:
            self._stage.free()
            self._stage = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Stage:
    """Bytes on their way to an O_DIRECT file, staged in aligned buffers.

    Whole buffers go to the disk on an I/O thread while the next one fills, so
    the caller never waits for the disk unless both buffers are still being
    written. ``flushed`` counts the bytes handed to the disk; ``buf[:fill]``
    holds the bytes that follow them. Buffers are reused across packs (fresh
    memory costs a page fault per 4 KiB).
    """

    ALIGN = 4096  # covers 512-byte and 4 KiB logical sectors
    SIZE = 4 * 1024 * 1024
    _free: ClassVar[list[mmap.mmap]] = []
    _checked: ClassVar[dict[str, bool]] = {}  # folder -> whether it takes O_DIRECT writes
    _lock = threading.Lock()
    _io: ThreadPoolExecutor | None = None

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.maps = [self._take(), self._take()]
        self.writes: list[Future | None] = [None, None]
        self.cur = 0
        self.buf = memoryview(self.maps[0])
        self.fill = 0
        self.flushed = 0

    @classmethod
    def open(cls, fd: int, where: str) -> _Stage | None:
        """A stage for ``fd`` (a new file in folder ``where``), or None where the filesystem refuses O_DIRECT.

        The first file of a folder is checked with one write; the answer is kept.
        """
        direct = getattr(os, "O_DIRECT", 0)
        if not direct or cls._checked.get(where) is False:
            return None
        stage = cls(fd)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | direct)
            if where not in cls._checked:
                stage.buf[: cls.ALIGN] = bytes(cls.ALIGN)
                os.pwrite(fd, stage.buf[: cls.ALIGN], 0)  # rewritten by the pack's first bytes
                cls._checked[where] = True
        except OSError:
            cls._checked[where] = False
            stage.free()
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~direct)
            except OSError:
                pass
            return None
        return stage

    @classmethod
    def trim(cls) -> int:
        """Unmap the idle buffers (those of stages being written are not idle); the bytes let go."""
        with cls._lock:
            idle, cls._free = cls._free, []
        for m in idle:
            m.close()
        return len(idle) * cls.SIZE

    @classmethod
    def _take(cls) -> mmap.mmap:
        with cls._lock:
            if cls._free:
                return cls._free.pop()
        return anonymous(cls.SIZE)  # page aligned, as O_DIRECT needs

    @classmethod
    def _pool(cls) -> ThreadPoolExecutor:
        with cls._lock:
            if cls._io is None:
                cls._io = ThreadPoolExecutor(2, thread_name_prefix="mk-pack-io")
            return cls._io

    def write(self, iov: list[bytes | memoryview]) -> None:
        """Stage ``iov`` (bytes or byte memoryviews), flushing every buffer that fills.

        The parts are copied by ``gather``, whole batches per call and without the
        interpreter lock (threads hashing and encoding beside this one need it).
        """
        pending = iov
        while pending:
            self.fill, k = gather(self.buf, self.fill, pending)
            if k == len(pending):
                return
            # the next part runs past the end of the buffer: its head fills it
            part = memoryview(pending[k]).cast("B")
            room = self.SIZE - self.fill
            self.fill, _ = gather(self.buf, self.fill, (part[:room],))
            self._flush(self.SIZE)
            pending = [part[room:], *pending[k + 1 :]]

    def finish(self) -> None:
        """Write out everything staged and wait for it; the last block is zero-padded (the caller truncates)."""
        if self.fill:
            end = -(-self.fill // self.ALIGN) * self.ALIGN
            self.buf[self.fill : end] = bytes(end - self.fill)
            self._flush(end)
        self._wait(0)
        self._wait(1)

    def _flush(self, n: int) -> None:
        """Hand ``buf[:n]`` (whole blocks) to the disk; what follows moves to the other buffer."""
        rest = self.fill - n
        other = 1 - self.cur
        self._wait(other)
        nxt = memoryview(self.maps[other])
        if rest > 0:
            nxt[:rest] = self.buf[n : self.fill]
        self.writes[self.cur] = self._pool().submit(_pwrite_direct, self.fd, self.buf[:n], self.flushed)
        self.flushed += n
        self.cur, self.buf, self.fill = other, nxt, max(rest, 0)

    def _wait(self, i: int) -> None:
        fut, self.writes[i] = self.writes[i], None
        if fut is not None:
            fut.result()

    def free(self) -> None:
        """Give the buffers back once no write reads them (errors are the caller's, from ``finish``)."""
        for i in (0, 1):
            try:
                self._wait(i)
            except OSError:
                pass
        self.buf.release()
        with self._lock:
            while self.maps and len(self._free) < 16:  # two per pack being written
                self._free.append(self.maps.pop())
        for m in self.maps:
            m.close()
        self.maps = []


def trim_staging() -> int:
    """Unmap the idle staging buffers of O_DIRECT pack writes; the bytes let go."""
    return _Stage.trim()


def _after_fork_in_child() -> None:
    # A forked child has none of the parent's threads: an executor made before the
    # fork would queue writes that nothing runs, and a lock held at the fork would
    # stay held. The child starts its own.
    _Stage._lock = threading.Lock()
    _Stage._io = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _pwrite_direct(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        w = os.pwrite(fd, data[done:], offset + done)
        if w <= 0 or w % _Stage.ALIGN:
            raise OSError(errno.EIO, f"short direct write ({w} of {len(data) - done} bytes)")
        done += w


_IOV_MAX = 1024
_ALLOC_STEP = 8 * 1024 * 1024


def _writev_all(fd: int, parts: list[bytes | memoryview]) -> None:
    # Parts are bytes or byte memoryviews (len() counts bytes); a view is made
    # only of the part a short write left unfinished.
    pending = parts
    while pending:
        n = os.writev(fd, pending)
        i = 0
        while i < len(pending) and n >= len(pending[i]):
            n -= len(pending[i])
            i += 1
        if i == len(pending):
            return
        pending = [memoryview(pending[i]).cast("B")[n:], *pending[i + 1 :]]


def read_header(backend: Backend, name: str) -> list[PackEntry]:
    """Entries of a pack, from its trailer; raises CorruptData on a malformed pack."""
    raw = read_header_bytes(backend, name)
    return decode_entries(raw, len(raw) // ENTRY.size)


def read_header_bytes(backend: Backend, name: str) -> bytes:
    """A pack's entries as encoded in its header, checked; raises CorruptData on a malformed pack."""
    size = backend.stat(name).size
    if size < TRAILER.size:
        raise CorruptData(f"pack {name} is truncated ({size} bytes)")
    magic, fmt, _, hlen = TRAILER.unpack(backend.get_range(name, size - TRAILER.size, TRAILER.size))
    if magic != MAGIC:
        raise CorruptData(f"pack {name} has no pack trailer")
    if fmt not in READABLE:
        raise CorruptData(
            f"pack {name} has format {fmt}; this modelkeep reads pack formats {', '.join(map(str, READABLE))}"
            " (a newer modelkeep wrote it: upgrade to read it)"
        )
    if hlen % ENTRY.size or hlen > size - TRAILER.size:
        raise CorruptData(f"pack {name} has a malformed header length {hlen}")
    header = backend.get_range(name, size - TRAILER.size - hlen, hlen)
    pack_id = name.rsplit("/", 1)[-1].removesuffix(".pack")
    if hash_bytes(header).hex != pack_id:
        raise CorruptData(f"pack {name}: header does not match the pack's name")
    body = size - TRAILER.size - hlen
    for _, offset, stored, _, _ in ENTRY.iter_unpack(header):
        if offset + stored > body:
            raise CorruptData(f"pack {name}: entry points past the end of the data")
    return bytes(header)
