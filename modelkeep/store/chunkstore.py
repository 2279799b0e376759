"""ChunkStore: files in, verified files out, every chunk stored once.

Push (``UploadSession.put_file``) runs as a pipeline over blocks of the file.
A file is cut into segments (one per tensor of a safetensors file) and tensors
into pieces of a few blocks; two worker threads each take a piece, hash its
chunks (one native call per block), claim the chunks nobody stored yet and
encode them (grouping float bytes and compressing the planes that pay, one call
per block). A piece whose first chunk is stored already (a tensor a fine-tune
left alone) is hashed through a mapping of the file, where its pages lie; other
pieces are read into reused buffers, since their bytes must be copied to be
stored anyway. One thread appends encoded chunks to the open pack, whose
bytes go to disk with O_DIRECT; one seals finished packs. The file's digest
is computed from its chunk list at the end, so every byte is hashed once. At
most a few blocks per worker are in flight, so memory stays bounded whatever
the file size.

Pull (``read_file``) reads runs of chunks that lie back to back in a pack with
one call, decodes and verifies each run with one native call apiece, and
writes it with one call; two threads take turns over the runs.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import blake3

from modelkeep.errors import ChunkNotFound, CorruptData, InvalidInput, InvalidPath, StorageError
from modelkeep.store import codec
from modelkeep.store.backends import Backend, open_backend
from modelkeep.store.buffers import BufferPool, BufferRing
from modelkeep.store.chunking import MAX_CHUNK, pieces, segments, tensor_chunks
from modelkeep.store.digest import MAPPED, Digest, copy_mapped, hash_chunks, hash_views
from modelkeep.store.gc import GC_GENERATION
from modelkeep.store.index import Index
from modelkeep.store.manifest import ChunkRef, FileEntry, Manifest, normalize_path
from modelkeep.store.packs import PACK_TARGET, PackWriter, pack_name, trim_staging
from modelkeep.store.planes import shuffle_many
from modelkeep.store.scan import hashed_blocks, map_range, open_source

__all__ = [
    "ChunkStore",
    "UploadSession",
    "StoreStats",
    "StoreProblem",
    "StoreFsck",
    "StoreGc",
    "open_store",
]

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
# Pieces of 16 MiB, six ahead: against 4 MiB and three, a fine-tune's push took
# 0.31 s instead of 0.38 s (fewer tasks, futures and mappings; interleaved runs)
# and a first push the same time.
_IN_FLIGHT = 6  # pieces being cut and encoded ahead of the one whose chunk list is collected
_PIECE = 16 * 1024 * 1024  # push: tensors are cut and encoded in parts of this size
_READ_BATCH = 2 * 1024 * 1024  # pull: bytes of a run read, decoded and verified at once (stays in cache)


@dataclass(frozen=True, slots=True)
class StoreStats:
    packs: int
    chunks: int
    stored_bytes: int  # bytes the packs occupy
    unique_bytes: int  # uncompressed bytes of the distinct chunks


@dataclass(frozen=True, slots=True)
class StoreProblem:
    kind: str  # corrupt_chunk | missing_chunk | bad_pack | size_mismatch | bad_file_digest
    detail: str
    pack: str | None = None
    chunk: Digest | None = None
    file: Digest | None = None


@dataclass(frozen=True, slots=True)
class StoreFsck:
    packs_checked: int
    chunks_checked: int
    bytes_checked: int
    problems: tuple[StoreProblem, ...]


@dataclass(frozen=True, slots=True)
class StoreGc:
    packs_deleted: int
    packs_repacked: int
    chunks_deleted: int
    bytes_freed: int
    packs_kept_young: int
    dry_run: bool


class ChunkStore:
    """Content-addressed chunks in packs on a Backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._index: Index | None = None
        self.scratch = BufferPool(keep=4)  # put_chunks: grouped planes of a run of uploaded chunks

    def trim_buffers(self) -> int:
        """Let the reused buffers that are idle go (a server calls this once uploads stop); the bytes let go."""
        return self.scratch.trim() + trim_staging()

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def index(self) -> Index:
        if self._index is None:
            idx = Index(self.backend)
            idx.generation = self.gc_generation()
            idx.load()
            self._index = idx
        return self._index

    # -- writing -----------------------------------------------------------------

    def session(self) -> UploadSession:
        """A push: holds the store's shared lock until closed, so gc cannot run meanwhile."""
        return UploadSession(self)

    def missing(self, digests: Iterable[Digest], *, max_age: float = 0.0) -> set[Digest]:
        """The digests the store lacks.

        When some are absent, ``packs/`` is rescanned for chunks other processes
        wrote since, unless the last scan is younger than ``max_age`` seconds (a
        scan lists every pack: callers asking often pass a few seconds).
        """
        idx = self.index
        out = {d for d in digests if d.raw not in idx}
        if out and time.monotonic() - idx.scanned_at >= max_age:
            idx.refresh()
            out = {d for d in out if d.raw not in idx}
        return out

    # -- reading -----------------------------------------------------------------

    def _locate(self, digest: bytes):
        loc = self.index.get(digest)
        if loc is None:
            self.index.refresh()
            loc = self.index.get(digest)
        return loc

    def read_chunk(self, digest: Digest) -> bytes | memoryview:
        """The verified bytes of one chunk. Raises ChunkNotFound, CorruptData."""
        for attempt in (0, 1):
            loc = self._locate(digest.raw)
            if loc is None:
                raise ChunkNotFound(f"chunk {digest} is missing from the store")
            pack_id, off, stored, raw, kind = loc
            try:
                blob = self.backend.get_range(pack_name(pack_id), off, stored)
                break
            except ChunkNotFound:
                if attempt:  # a repack moved it: reload once and retry
                    raise
                self._index = None
        data = codec.decode(kind, blob, raw)
        if blake3.blake3(data).digest() != digest.raw:
            raise CorruptData(f"chunk {digest} in pack {pack_id} is corrupt (its bytes do not match its digest)")
        return data

    def read_file(self, entry: FileEntry, dest: Path, *, progress: Progress | None = None) -> None:
        """Write ``entry``'s bytes to ``dest``, verifying every chunk first.

        The bytes go to a unique temp file beside ``dest``, renamed over it only when
        every chunk has been verified, so ``dest`` never holds bad or partial bytes.
        Chunks that follow one another in a pack are read with one call, decoded
        straight into a reused buffer, verified, and written with one call; two
        threads take turns over such runs. Raises CorruptData naming the file and chunk.
        """
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.mk-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if entry.executable else 0o644)
        try:
            if entry.size:
                try:  # allocate up front: much faster large writes on ext4
                    os.posix_fallocate(fd, 0, entry.size)
                except OSError:
                    pass
            local = threading.local()

            def work(run: _Run) -> int:
                out = self._decode_run(entry, run, local)
                _pwrite_all(fd, out, run.file_offset)
                return len(out)

            runs = self._read_runs(entry)
            first = next(runs, None)
            second = next(runs, None)
            if second is None:  # at most one run (a small file): no threads
                if first is not None:
                    n = work(first)
                    if progress:
                        progress(n)
            else:
                # Runs are decoded as soon as they are planned: planning looks up every
                # chunk in the index (~16k per GiB), which used to delay the first write.
                with ThreadPoolExecutor(2, thread_name_prefix="mk-pull") as pool:
                    pending: deque[Future] = deque()
                    try:
                        for run in itertools.chain((first, second), runs):
                            self.backend.will_read(pack_name(run.pack), run.pack_offset, run.stored)
                            pending.append(pool.submit(work, run))
                            while pending and pending[0].done():
                                n = pending.popleft().result()
                                if progress:
                                    progress(n)
                        while pending:
                            n = pending.popleft().result()
                            if progress:
                                progress(n)
                    except BaseException:
                        for f in pending:
                            f.cancel()
                        raise
            os.ftruncate(fd, entry.size)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(tmp, dest)

    def _read_runs(self, entry: FileEntry) -> Iterator[_Run]:
        """The file's chunks grouped into runs that lie back to back in one pack, each yielded once complete."""
        run: _Run | None = None
        pos = 0
        get = self.index.get
        for c in entry.chunks:
            loc = get(c.digest.raw) or self._locate(c.digest.raw)  # _locate rescans the packs once
            if loc is None:
                raise CorruptData(f"{entry.path}: chunk {c.digest} is missing from the store")
            pack_id, off, stored, raw, kind = loc
            if raw != c.size:
                raise CorruptData(f"{entry.path}: chunk {c.digest} has {raw} bytes, expected {c.size}")
            if (
                run is None
                or run.pack != pack_id
                or run.pack_offset + run.stored != off
                or run.raw + raw > _READ_BATCH
            ):
                if run is not None:
                    yield run
                run = _Run(pack_id, off, pos)
            run.items.append((c, run.stored, stored, kind))
            run.desc.extend((run.stored, stored, kind, raw))
            run.stored += stored
            run.raw += raw
            pos += raw
        if run is not None:
            yield run

    def _decode_run(self, entry: FileEntry, run: _Run, local: threading.local) -> memoryview:
        """The verified bytes of one run, in this thread's reused output buffer."""
        ring = getattr(local, "ring", None)
        if ring is None:
            ring = local.ring = BufferRing(1)  # runs are decoded and written before the next
        blob = ring.take(run.stored)
        out = ring.scratch(run.raw)
        try:
            self.backend.read_into(pack_name(run.pack), run.pack_offset, blob)
        except ChunkNotFound:  # a repack moved these chunks since the index was read
            pos = 0
            for c, _, _, _ in run.items:
                try:
                    out[pos : pos + c.size] = self.read_chunk(c.digest)
                except (CorruptData, ChunkNotFound) as exc:
                    raise CorruptData(f"{entry.path}: {exc}") from None
                pos += c.size
            return out
        bad = codec.decode_run(blob, run.desc, out)
        if bad is not None:
            c = run.items[bad[0]][0]
            raise CorruptData(f"{entry.path}: chunk {c.digest} in pack {run.pack}: {bad[1]}")
        cuts = []
        pos = 0
        for c, _, _, _ in run.items:
            cuts.append((pos, c.size))
            pos += c.size
        # verified together: the run's chunks are back to back, mostly of one length
        for (c, _, _, _), got in zip(run.items, hash_chunks(out, cuts)):
            if got != c.digest.raw:
                raise CorruptData(
                    f"{entry.path}: chunk {c.digest} in pack {run.pack} is corrupt (its bytes do not match its digest)"
                )
        return out

    # -- accounting and maintenance ----------------------------------------------

    def stats(self) -> StoreStats:
        idx = self.index
        idx.refresh()
        stored = sum(info.size for info in self.backend.list("packs/") if info.name.endswith(".pack"))
        return StoreStats(idx.pack_count(), len(idx), stored, idx.unique_bytes())

    def fsck(self, manifests: Iterable[Manifest], *, progress: Progress | None = None) -> StoreFsck:
        from modelkeep.store.fsck import check

        return check(self, manifests, progress=progress)

    def gc(
        self,
        live: set[Digest] | Callable[[], set[Digest]],
        *,
        dry_run: bool = False,
        grace_seconds: float = 3600.0,
    ) -> StoreGc:
        """Delete chunks not in ``live``. Raises StoreLocked when a push is in progress.

        Pass a function to have the live set computed while gc holds the store's
        exclusive lock (the registry does: it closes the race with a finishing push).
        """
        from modelkeep.store.gc import collect

        return collect(self, live, dry_run=dry_run, grace_seconds=grace_seconds)

    def gc_generation(self) -> str:
        """Changes every time gc removes packs; an index loaded under another generation is stale."""
        try:
            return self.backend.get(GC_GENERATION).decode()
        except ChunkNotFound:
            return ""

    def reset_index(self) -> None:
        self._index = None

    def close(self) -> None:
        self.backend.close()


class UploadSession:
    """One push: chunks go into packs; ``commit`` makes them durable and visible."""

    def __init__(self, store: ChunkStore) -> None:
        self._store = store
        self._lock_cm = store.backend.lock(False)
        self._lock_cm.__enter__()
        # No rescan of packs/ here: a chunk another process stored since we loaded
        # the index is at worst stored twice (gc keeps one copy), and rescanning on
        # every push would cost time in proportion to the store's size.
        # ...but a gc since then may have removed packs our index still names, and
        # deduplicating against those would commit a version with missing chunks.
        if store.index.generation != store.gc_generation():
            store.reset_index()
        self._index = store.index
        self._pools: tuple[ThreadPoolExecutor, ...] = ()
        self._sealer: ThreadPoolExecutor | _Inline = _INLINE
        self._sealing: list[Future] = []
        self._writer: PackWriter | None = None
        self._pending: set[bytes] = set()
        self._claim = threading.Lock()
        self._local = threading.local()  # per thread: the ring of block buffers
        self._rings: list[BufferRing] = []
        self._closed = False
        self.new_bytes = 0
        self.total_bytes = 0

    def __enter__(self) -> UploadSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put_file(self, path: str | Path, rel: str, *, progress: Progress | None = None) -> FileEntry:
        """Chunk, hash, compress and store one file. Returns its entry named ``rel``."""
        rel = normalize_path(rel)
        with open_source(path) as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            segs = segments(f, size, rel)
        # Small files run in this thread: starting threads would cost more than the work.
        # Large ones: segments (tensors) are read, cut, hashed and encoded in parallel
        # by the workers; one thread appends encoded chunks to packs. The file's
        # digest follows from its chunk list (manifest format 2): no second pass.
        workers, packer = self._threads() if size > _THREAD_ABOVE else (_INLINE,) * 2
        refs: list[ChunkRef] = []
        tasks: deque[Future] = deque()
        done = 0

        def settle() -> None:  # results in file order: refs must follow the bytes
            nonlocal done
            part, n = tasks.popleft().result()
            refs.extend(part)
            done += n
            self.total_bytes += n
            if progress:
                progress(n)

        # Tensors go out in pieces of a few blocks, so both workers stay busy
        # whatever the sizes of the tensors.
        try:
            for seg in (p for s in segs for p in pieces(s, _PIECE)):
                tasks.append(workers.submit(self._put_segment, path, seg, packer))
                while len(tasks) > _IN_FLIGHT:
                    settle()
            while tasks:
                settle()
        finally:
            for fut in tasks:  # a failed piece: the others must finish before their buffers are drained
                fut.exception()
            # no piece is in progress: no worker uses its ring meanwhile
            BufferRing.drain_all(self._rings)
        entry = FileEntry.of_chunks(rel, refs, bool(st.st_mode & 0o111))
        if done != size or entry.size != size:
            raise InvalidPath(f"{path} changed while being read")
        return entry

    def _put_segment(self, path: str | Path, seg, packer) -> tuple[list[ChunkRef], int]:
        """Cut, hash, claim and encode one segment; hand encoded chunks to the packer."""
        refs: list[ChunkRef] = []
        ring = self._ring()
        plan = None
        try:
            # A tensor piece whose first chunk the store holds (one a fine-tune left
            # as it was) is hashed where its pages lie, through a mapping: reading
            # it would copy every byte for nothing. Other pieces are mostly new, and
            # their bytes must be copied to be stored anyway: they are read.
            with open(path, "rb") as f:
                known = seg.tensor and MAPPED and self._first_chunk_known(f, seg)
                with map_range(path, seg.start, seg.end) if known else nullcontext() as mapped:
                    for block_off, view, cuts, digests in hashed_blocks(path, f, seg, ring.take, mapped):
                        new = self._claim_new(digests, cuts)
                        items = []
                        if new:
                            if mapped is not None:  # the bytes to store must be our own
                                view = _own_copy(path, view, new, ring)
                            # decided on the first block with new chunks (most segments of a
                            # fine-tune have none); tensor blocks start on an element
                            if plan is None:
                                plan = codec.plan_for(view, seg.elem)
                            phase = (block_off - seg.start) % seg.elem if plan.elem else 0
                            items = _encode_block(view, new, plan, phase, ring.scratch)
                        refs.extend(ChunkRef(Digest(d), ln) for d, (_, ln) in zip(digests, cuts))
                        if items:  # the slot's buffers stay untouched until this write is done
                            ring.hold(packer.submit(self._write, items))
                        del view
        except BaseException:
            ring.drain()
            raise
        # No drain here: the packer may still be writing this piece's chunks, and
        # waiting for it would stall this worker. The slots are waited for when
        # reused, and put_file drains every ring before it returns.
        return refs, seg.end - seg.start

    def _first_chunk_known(self, f: BinaryIO, seg) -> bool:
        """Whether this push stores the first chunk of tensor piece ``seg`` already (read to tell)."""
        n = tensor_chunks(seg.end - seg.start)[0]
        first = os.pread(f.fileno(), n, seg.start)
        if len(first) != n:
            return False  # reading reports the change
        d = blake3.blake3(first).digest()
        return d in self._index or d in self._pending

    def _claim_new(self, digests: list[bytes], cuts: list[tuple[int, int]]) -> list[tuple[int, int, bytes]]:
        """The chunks of a block this push must store, claimed: (offset, length, digest)."""
        new: list[tuple[int, int, bytes]] = []
        with self._claim:
            for (off, ln), d in zip(cuts, digests):
                if d in self._pending or d in self._index:
                    continue
                self._pending.add(d)
                new.append((off, ln, d))
                self.new_bytes += ln
        return new

    def _ring(self) -> BufferRing:
        ring = getattr(self._local, "ring", None)
        if ring is None:
            ring = self._local.ring = BufferRing(_RING_SLOTS)
            with self._claim:
                self._rings.append(ring)
        return ring

    def _threads(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        if not self._pools:
            self._pools = (
                ThreadPoolExecutor(2, thread_name_prefix="mk-encode"),
                ThreadPoolExecutor(1, thread_name_prefix="mk-pack"),
                ThreadPoolExecutor(1, thread_name_prefix="mk-seal"),
            )
            self._sealer = self._pools[2]
        return self._pools[0], self._pools[1]

    def put_chunks(self, data: bytes | memoryview, chunks: Sequence[tuple[bytes, int, int, int]]) -> int:
        """Store chunks cut elsewhere (a remote client's upload); returns the bytes that were new.

        ``chunks`` are ``(digest, length, elem, phase)``, lying back to back in
        ``data`` in that order. Every chunk *must* hash to its digest: one
        mismatch raises CorruptData and nothing of the batch is stored. ``elem``
        (0, 2, 4 or 8: the float element size of its tensor) and ``phase`` (its
        first byte's offset within an element) only guide compression. Chunks the
        store has are skipped. ``commit`` makes the stored ones durable.
        """
        view = memoryview(data).cast("B")
        cuts: list[tuple[int, int]] = []  # (offset in data, length) of each chunk
        grid: dict[int, tuple[int, int]] = {}  # offset -> (elem, phase)
        pos = 0
        for digest, ln, elem, phase in chunks:
            if ln > MAX_CHUNK:
                raise InvalidInput(f"chunk {Digest(digest)} has {ln} bytes, more than the {MAX_CHUNK} a chunk may hold")
            if elem not in (0, 2, 4, 8) or not 0 <= phase < max(elem, 1):
                raise InvalidInput(f"chunk {Digest(digest)}: bad element size {elem} or phase {phase}")
            cuts.append((pos, ln))
            grid[pos] = (elem, phase)
            pos += ln
        if pos != len(view):
            raise InvalidInput(f"the chunks' lengths add up to {pos} bytes, not the {len(view)} given")
        digests = [c[0] for c in chunks]
        for d, got in zip(digests, hash_views([view[off : off + ln] for off, ln in cuts])):
            if got != d:
                raise CorruptData(
                    f"chunk {Digest(d)}: its bytes do not match its digest; nothing of this batch was stored"
                )
        # New chunks that lie back to back and continue one another's element grid
        # form one block, encoded as a push encodes a block of a file: its float
        # bytes grouped once, every block's planes compressed in one call.
        blocks: list[list] = []  # [start, end, elem, phase, [(offset in block, length, digest)]]
        new = 0
        for off, ln, d in self._claim_new(digests, cuts):
            elem, phase = grid[off]
            new += ln
            last = blocks[-1] if blocks else None
            if (
                last is not None
                and last[1] == off
                and last[2] == elem
                and (not elem or (last[3] + off - last[0]) % elem == phase)
                and off - last[0] < _RUN_BYTES
            ):
                last[1] = off + ln
                last[4].append((off - last[0], ln, d))
            else:
                blocks.append([off, off + ln, elem, phase, [(0, ln, d)]])
        # Encoded and written a few blocks at a time: the planes buffer stays small
        # (fresh memory costs a page fault per 4 KiB), and the write is synchronous,
        # so the buffer is free again right after.
        while blocks:
            take = 1
            size = blocks[0][1] - blocks[0][0]
            while take < len(blocks) and size + blocks[take][1] - blocks[take][0] <= _RUN_BYTES:
                size += blocks[take][1] - blocks[take][0]
                take += 1
            group, blocks = blocks[:take], blocks[take:]
            with self._store.scratch.borrow(size) as grouped:
                todo = []
                at = 0
                for start, end, elem, phase, chunk_list in group:
                    block = view[start:end]
                    # the sample must start on an element, or its byte planes mix
                    plan = codec.plan_for(block[(elem - phase) % elem :] if elem else block, elem)
                    region = grouped[at : at + end - start]
                    todo.append((block, chunk_list, plan, phase if plan.elem else 0, lambda n, r=region: r[:n]))
                    at += end - start
                self._write(_encode_blocks(todo))
        self.total_bytes += len(view)
        return new

    def _write(self, items: list) -> None:
        while items:
            if self._writer is None:
                self._writer = PackWriter(self._store.backend)
            room = PACK_TARGET - self._writer.size
            take = 0
            size = 0
            while take < len(items) and size < room:
                for part in items[take][2]:
                    size += len(part)
                take += 1
            try:
                self._writer.add_many(items[:take])
            except OSError as exc:
                raise StorageError(f"cannot write pack: {exc}") from None
            items = items[take:]
            if self._writer.size >= PACK_TARGET:
                self._seal()

    def _seal(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None or not writer.entries:
            if writer is not None:
                writer.discard()
            return
        idx = self._index

        def seal() -> None:
            try:
                pack_id, entries = writer.seal()
            except OSError as exc:
                writer.discard()
                raise StorageError(f"cannot write pack: {exc}") from None
            idx.add_pack(pack_id, entries)

        self._sealing.append(self._sealer.submit(seal))

    def commit(self) -> None:
        """Every chunk written so far is durable and in the index when this returns."""
        self._seal()
        for fut in self._sealing:
            fut.result()
        self._sealing.clear()

    def close(self) -> None:
        """Release the lock. Packs already sealed stay (the next push reuses them); an open one is dropped."""
        if self._closed:
            return
        self._closed = True
        try:
            for pool in self._pools[:2]:
                pool.shutdown(wait=True, cancel_futures=True)
            if self._writer is not None:
                self._writer.discard()
                self._writer = None
            self._sealer.shutdown(wait=True)
        finally:
            self._lock_cm.__exit__(None, None, None)


@dataclass(slots=True)
class _Run:
    """Chunks of one file stored back to back in one pack: read with one call."""

    pack: str
    pack_offset: int
    file_offset: int
    stored: int = 0
    raw: int = 0
    items: list = field(default_factory=list)  # (ChunkRef, offset in run, stored, codec)
    desc: array = field(default_factory=lambda: array("I"))  # per chunk: offset in run, stored, codec, raw


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data = data[n:]
        offset += n


class _Inline:
    """An executor that runs each call at once in the calling thread."""

    def submit(self, fn: Callable, *args: object) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # delivered through the future, like a pool would
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


_INLINE = _Inline()
_THREAD_ABOVE = 4 * 1024 * 1024
_RUN_BYTES = 4 * 1024 * 1024  # put_chunks: the largest block encoded with one plan, and of blocks encoded at once
_MIN_ELEMS = codec.MIN_PLANE_ELEMS
_RING_SLOTS = 4  # blocks each push worker may have in flight (being read, hashed, written)


def _encode_block(
    view: memoryview,
    new: list[tuple[int, int, bytes]],
    plan: codec.Plan,
    phase: int,
    scratch: Callable[[int], memoryview] | None = None,
):
    """Encode the new chunks of one block: [(digest, codec, parts, raw length)].

    Float chunks' byte planes are grouped into ``scratch(nbytes)`` (a fresh
    buffer when None); the parts returned may point into it and into ``view``.
    """
    return _encode_blocks([(view, new, plan, phase, scratch)])


def _encode_blocks(blocks: list) -> list:
    """``_encode_block`` of several ``(view, new, plan, phase, scratch)`` at once, in order.

    The planes worth compressing, of every new chunk of every block, go to zstd
    in one call and to nib4 in another: their loops run without the interpreter
    lock, where a call per chunk would give the lock up and wait to get it back
    each time.
    """
    done: list[list] = []
    grouped = []
    zstd: list[memoryview] = []  # planes to compress with zstd, of every new chunk of every block, in order
    nib4: list[memoryview] = []  # planes to encode with nib4, likewise
    groupings: list[tuple[memoryview, int, memoryview]] = []  # (block bytes, element size, planes) to shuffle
    for view, new, plan, phase, scratch in blocks:
        e = plan.elem
        if not e:
            done.append([(d, *_opaque(view[off : off + ln], plan), ln) for off, ln, d in new])
            continue
        head0 = (e - phase) % e  # first byte of the block that starts an element
        n = max(0, (len(view) - head0) // e)
        # One grouping per block, not per chunk: each chunk's planes are then
        # contiguous slices of the block's planes.
        planes = scratch(n * e) if scratch is not None else memoryview(bytearray(n * e))
        groupings.append((view[head0 : head0 + n * e], e, planes))
        spans = []
        for off, ln, d in new:
            first = off + ((head0 - off) % e)
            k0 = (first - head0) // e
            spans.append((off, ln, d, first, k0, max(k0, (off + ln - head0) // e)))
        chosen = [i for i in range(e) if plan.planes[i]]
        for _, _, _, _, k0, k1 in spans:
            if k1 - k0 >= _MIN_ELEMS:
                for i in chosen:
                    (nib4 if plan.planes[i] == codec.NIB4 else zstd).append(planes[i * n + k0 : i * n + k1])
        out: list = []
        done.append(out)
        grouped.append((out, view, plan, n, planes, spans, chosen))
    shuffle_many(groupings)  # every block's grouping, in one call
    zstd_frames = iter(codec.compress_planes(zstd))
    nib4_codes = iter(codec.nib4_planes(nib4))
    for out, view, plan, n, planes, spans, chosen in grouped:
        e = plan.elem
        for off, ln, d, first, k0, k1 in spans:
            compressed: list[tuple[int, bytes] | None] | None = None
            if k1 - k0 >= _MIN_ELEMS:
                compressed = [None] * e
                for i in chosen:
                    if plan.planes[i] == codec.NIB4:
                        q = next(nib4_codes)
                        if q is None:  # too many values escape this chunk's table: zstd instead
                            plane = planes[i * n + k0 : i * n + k1]
                            compressed[i] = codec.encode_plane(codec.ZSTD_PLANE, plane)
                        else:
                            compressed[i] = (codec.NIB4, q)
                    else:
                        compressed[i] = (codec.ZSTD_PLANE, next(zstd_frames))
            kind, parts = codec.encode_planes(view, planes, n, plan, off, ln, first, k0, k1, compressed)
            out.append((d, kind, parts, ln))
    return [item for out in done for item in out]


def _own_copy(path: str | Path, view: memoryview, new: list[tuple[int, int, bytes]], ring: BufferRing) -> memoryview:
    """A block of a file's mapping copied into the ring, for its new chunks to be stored from.

    The file may have been rewritten since the block was hashed: the new chunks
    are hashed again from the copy, so no chunk is stored under a digest its
    bytes do not have.
    """
    own = ring.take(len(view))
    if not copy_mapped(own, view):
        raise InvalidPath(f"{path} changed while being read")
    if hash_chunks(own, [(off, ln) for off, ln, _ in new]) != [d for _, _, d in new]:
        raise InvalidPath(f"{path} changed while being read")
    return own


def _opaque(data: memoryview, plan: codec.Plan) -> tuple[int, list]:
    kind, encoded = codec.encode(data, plan, 0)
    return kind, [encoded]


def open_store(url: str) -> ChunkStore:
    """``file:///path`` (or a path), ``memory://name``. Unknown schemes raise InvalidURI."""
    return ChunkStore(open_backend(url))
