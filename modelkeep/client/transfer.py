"""Chunk-level push and pull against a modelkeep server (protocol: docs/transfer.md).

Push cuts every file locally with the store's own chunker and hasher
(``store/chunking.py``, BLAKE3), so the client and the server agree on every
chunk. Blocks of chunks are queued into batches of about ``batch_bytes``; for
each batch a worker asks the server which chunks it lacks and uploads only
those, several per request; the server verifies each chunk against its digest
and seals the batch's pack before answering. The manifest is committed last.
An interrupted push, run again, re-asks for each batch and so sends only what
never arrived. Each file is read once; memory stays bounded by the batches in
flight.

Pull fetches the manifest, then the chunks the local cache lacks, in parallel
batches, verifies every chunk's digest, keeps it in the cache
(``client/cache.py``) and writes each file under a temp name renamed into
place once complete.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from modelkeep._gc import collector_paused
from modelkeep.client._sendfile import FileChanged, FileSpans, Span
from modelkeep.client.cache import ChunkCache
from modelkeep.errors import ChunkNotFound, CorruptData, InvalidPath, StorageError
from modelkeep.registry import tree
from modelkeep.registry.provenance import capture as capture_provenance
from modelkeep.registry.types import Version
from modelkeep.registry.wire import from_wire, to_wire
from modelkeep.store.digest import Digest, copy_mapped
from modelkeep.store.manifest import Destination, FileEntry, Manifest
from modelkeep.store.scan import open_source, scan_file

__all__ = ["PushResult", "PullResult", "push_files", "upload", "pull_files", "download"]

API = "/api/v1"
UP_COUNT = struct.Struct("<I")  # an upload body: how many chunks, then a table of UP_FRAME, then their bytes
UP_FRAME = struct.Struct("<32sIBB")  # digest | length | float element size | phase in element
DOWN_FRAME = struct.Struct("<32sI")  # digest | length
BATCH_BYTES = 8 * 1024 * 1024  # pull: chunks asked for per request
# Push: each batch is one request the server answers after sealing (and fsyncing)
# its own pack, so fewer, larger batches cost it fewer seals; three in flight
# keep both cores busy on one machine. A batch holds spans of the files, not
# their bytes: its size bounds the server's upload buffers (four kept), not the
# client's memory. 32 MiB: ~10 % faster than 16 once bodies were no longer copied.
UPLOAD_BATCH_BYTES = 32 * 1024 * 1024
UPLOAD_JOBS = 3
MISSING_PER_REQUEST = 50_000
FETCH_PER_REQUEST = 1024
JOBS = 4
_ASK_AFTER = 4  # batches in a row the server lacked entirely before most go out unasked
_ASK_EVERY = 4  # ...of which every this-many-th still asks first
ATTEMPTS = 5  # per request, on connection failures and 502/503/504 (StorageError)

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class PushResult:
    version: Version
    total_bytes: int  # logical bytes of the files
    sent_bytes: int  # chunk bytes uploaded (the server lacked them, or was not asked first)
    reused_bytes: int  # bytes the server already had (or that repeat within the push): total - new
    wire_bytes: int  # request bodies of the uploads, framing included
    chunks_sent: int


@dataclass(frozen=True, slots=True)
class PullResult:
    version: Version
    total_bytes: int
    fetched_bytes: int  # chunk bytes downloaded
    cached_bytes: int  # chunk bytes taken from the local cache
    chunks_fetched: int


def _retry(fn: Callable[[], Any], attempts: int = ATTEMPTS) -> Any:
    """Call ``fn``; on StorageError (server unreachable, 502-504) wait and try again.

    Every request this module sends is idempotent (chunks are named by content).
    """
    delay = 0.5
    for attempt in range(attempts):
        try:
            return fn()
        except StorageError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


# -- push ------------------------------------------------------------------------------


class _Source:
    """A pushed file opened for sending, closed once its scan and every batch holding spans of it are done."""

    __slots__ = ("file", "_refs", "_lock")

    def __init__(self, path: str | Path) -> None:
        self.file = open_source(path)  # read by sendfile and pread, at offsets: its position is never used
        self._refs = 1  # the scan's
        self._lock = threading.Lock()

    def retain(self) -> None:
        with self._lock:
            self._refs += 1

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            last = self._refs == 0
        if last:
            self.file.close()


# digest, source (None: the bytes are in ``copy``), offset in the file, length, element size, phase, copy
_Frame = tuple[bytes, _Source | None, int, int, int, int, bytes | bytearray]
# A file this large is sent from the file itself; a smaller one's chunks are copied as
# they are scanned, so a batch of many small files holds a few files open, not thousands.
SPAN_MIN = 4 * 1024 * 1024


class _Uploader:
    """Batches of chunks: ask which are missing, upload those, in worker threads.

    A chunk of a large file is remembered as a span of that file, not copied
    (a small file's chunks are copied, so a batch holds few files open): a
    request carries a table of the chunks it holds, then their bytes back to
    back, sent from the files (``_sendfile``: by the kernel where it can). The server encodes
    chunks that continue one another as one block. A batch the server lacks
    entirely goes out as it lies; otherwise the spans of the chunks it lacks.
    """

    def __init__(self, http: Any, name: str, *, jobs: int, batch_bytes: int, progress: Progress | None) -> None:
        self._http = http
        self._name = name
        self._pool = ThreadPoolExecutor(jobs, thread_name_prefix="mk-upload")
        self._inflight: list[Future] = []
        self._max_inflight = jobs + 1  # one batch filling while ``jobs`` are sent
        self._source: _Source | None = None  # the file being scanned
        self._frames: list[_Frame] = []
        self._sources: list[_Source] = []  # of the batch filling, each retained once
        self._batched = 0  # bytes of the batch filling
        self._batch_bytes = batch_bytes
        self._seen: set[bytes] = set()
        self._progress = progress
        self._lock = threading.Lock()
        self._lacked_all = 0  # batches in a row the server lacked entirely
        self._batches = 0
        self.sent_bytes = 0
        self.new_bytes = 0  # of the bytes sent, those the server did not have (its count)
        self.wire_bytes = 0
        self.chunks_sent = 0

    def scan(self, path: str | Path, rel: str) -> FileEntry:
        """``scan_file``, with each chunk the server may lack queued for upload."""
        try:
            large = os.stat(path).st_size >= SPAN_MIN
        except OSError:
            large = False  # scan_file says what is wrong with it
        self._source = _Source(path) if large else None
        try:
            return scan_file(path, rel, self.add)
        finally:
            if self._source is not None:
                self._source.release()
                self._source = None

    def add(self, digest: bytes, data: bytes | memoryview, elem: int, phase: int, offset: int) -> None:
        if digest in self._seen:  # repeats within this push are sent once
            return
        self._seen.add(digest)
        source = self._source
        copy: bytes | bytearray = b""
        if source is None:  # a small file: its bytes are kept, the file is not
            copy = bytearray(len(data))
            if not copy_mapped(copy, data):  # the bytes may lie in a mapping of the file: a guarded copy
                raise InvalidPath("a file changed while being read")
        elif not self._sources or self._sources[-1] is not source:
            source.retain()
            self._sources.append(source)
        self._frames.append((digest, source, offset, len(data), elem, phase, copy))
        self._batched += len(data)
        if self._batched >= self._batch_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._frames:
            return
        frames, sources = self._frames, self._sources
        self._frames, self._sources, self._batched = [], [], 0
        # Asking first costs a round trip per batch. Once the server has lacked
        # every chunk of several batches in a row (a new model), most batches go
        # out without asking; every fourth still asks, so a run of chunks the
        # server has is noticed again. A wrong guess costs bandwidth, never
        # correctness: the server stores only the chunks it lacks.
        self._batches += 1
        ask = self._lacked_all < _ASK_AFTER or self._batches % _ASK_EVERY == 0
        fut = self._pool.submit(self._send, frames, sources, ask)  # _send releases the sources...
        fut.add_done_callback(lambda f: _release_if_cancelled(f, sources))  # ...unless it never runs
        self._inflight.append(fut)
        while len(self._inflight) > self._max_inflight:  # bounded: wait for the oldest
            self._inflight.pop(0).result()

    def _send(self, frames: list[_Frame], sources: list[_Source], ask: bool) -> None:
        try:
            todo = frames
            if ask:
                names = [str(Digest(f[0])) for f in frames]
                missing = set(missing_chunks(self._http, self._name, names))
                todo = [f for f, name in zip(frames, names) if name in missing]
                with self._lock:
                    self._lacked_all = self._lacked_all + 1 if len(todo) == len(frames) else 0
            if todo:
                table = bytearray(UP_COUNT.size + UP_FRAME.size * len(todo))
                UP_COUNT.pack_into(table, 0, len(todo))
                for i, (digest, _, _, ln, elem, phase, _) in enumerate(todo):
                    UP_FRAME.pack_into(table, UP_COUNT.size + i * UP_FRAME.size, digest, ln, elem, phase)
                body = FileSpans(bytes(table), _spans(todo))
                try:
                    resp = _retry(
                        lambda: self._http.request(
                            "POST",
                            f"{API}/chunks",
                            params={"name": self._name},
                            content=body,  # re-iterable for a retry
                            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
                        )
                    )
                except CorruptData as exc:  # the server hashed other bytes than the scan did
                    raise FileChanged(f"a file changed while being pushed ({exc.message})") from None
                new = int(resp.json().get("new_bytes", 0))
                sent = sum(f[3] for f in todo)
                with self._lock:
                    self.sent_bytes += sent
                    self.new_bytes += new
                    self.wire_bytes += len(body)
                    self.chunks_sent += len(todo)
                    if not ask and new < sent:  # it had some: ask again
                        self._lacked_all = 0
            if self._progress:
                self._progress(sum(f[3] for f in frames))
        finally:
            for source in sources:
                source.release()

    def finish(self) -> None:
        self.flush()
        try:
            for fut in self._inflight:
                fut.result()
        finally:
            self._inflight.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for source in self._sources:  # a batch that never went out
            source.release()
        self._frames, self._sources = [], []


def _release_if_cancelled(fut: Future, sources: list[_Source]) -> None:
    if fut.cancelled():
        for source in sources:
            source.release()


def _spans(frames: list[_Frame]) -> list[Span]:
    """The frames' bytes as spans: of their files, chunks that lie back to back joined; copies joined."""
    out: list[list[Any]] = []  # [file, offset, length], or [None, copies of back-to-back chunks]
    for _, source, offset, length, _, _, copy in frames:
        last = out[-1] if out else None
        if source is None:
            if last is not None and last[0] is None:
                last[1].append(copy)
            else:
                out.append([None, [copy]])
        elif last is not None and last[0] is source.file and last[1] + last[2] == offset:
            last[2] += length
        else:
            out.append([source.file, offset, length])
    return [b"".join(s[1]) if s[0] is None else (s[0], s[1], s[2]) for s in out]  # copies joined once


def missing_chunks(http: Any, name: str, digests: list[str]) -> list[str]:
    """The digests (``blake3:<hex>``) the server lacks, asked in requests of MISSING_PER_REQUEST."""
    out: list[str] = []
    for i in range(0, len(digests), MISSING_PER_REQUEST):
        part = digests[i : i + MISSING_PER_REQUEST]
        resp = _retry(lambda: http.request("POST", f"{API}/chunks/missing", json={"name": name, "digests": part}))
        out.extend(resp.json()["missing"])
    return out


@collector_paused()  # a record per chunk, no cycles: see modelkeep/_gc.py
def upload(
    http: Any,
    path: str | Path,
    name: str,
    *,
    progress: Progress | None = None,
    provenance: Mapping[str, Any] | None = None,
    jobs: int = UPLOAD_JOBS,
    batch_bytes: int = UPLOAD_BATCH_BYTES,
    **push_kwargs: Any,
) -> PushResult:
    """Push ``path`` as a new version of ``name``; ``push_kwargs`` are ``Registry.push``'s metadata arguments.

    Provenance is captured here, on the machine that has the files, and
    ``provenance`` is merged over it (as ``Registry.push`` does). Raises what
    the server raises (the same classes as the embedded registry), StorageError
    when the server stays unreachable; an interrupted push resumes when run again.
    """
    sources = tree.collect(path)
    prov = {**capture_provenance(path), **dict(provenance or {})}
    for attempt in (0, 1):
        up = _Uploader(http, name, jobs=jobs, batch_bytes=batch_bytes, progress=progress)
        try:
            entries = [up.scan(f.path, f.rel) for f in sources]
            up.finish()
        finally:
            up.close()
        manifest = Manifest.of(entries)
        body = {"name": name, "manifest": manifest.to_doc(), "new_bytes": up.new_bytes}
        body.update(to_wire({"provenance": prov, **push_kwargs}))
        try:
            resp = _retry(lambda: http.request("POST", f"{API}/chunks/commit", json=body))
        except ChunkNotFound:
            # Chunks the server reported present are gone (a gc between the
            # question and the commit): ask again and send them, once.
            if attempt:
                raise
            continue
        version = from_wire(Version, resp.json())
        total = manifest.size
        return PushResult(version, total, up.sent_bytes, total - up.new_bytes, up.wire_bytes, up.chunks_sent)
    raise AssertionError("unreachable")


def push_files(http: Any, path: str | Path, name: str, **push_kwargs: Any) -> Version:
    """``Registry.push`` over chunk-level transfer. ``Version.new_bytes`` holds the bytes sent."""
    return upload(http, path, name, **push_kwargs).version


# -- pull ------------------------------------------------------------------------------


def _fetch(http: Any, ref: str, digests: list[Digest]) -> dict[bytes, bytes]:
    def go() -> bytes:
        resp = http.request("POST", f"{API}/chunks/fetch", json={"ref": ref, "digests": [str(d) for d in digests]})
        return resp.content

    body = memoryview(_retry(go))
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(body):
        if pos + DOWN_FRAME.size > len(body):
            raise CorruptData("truncated chunk frame from the server")
        raw, length = DOWN_FRAME.unpack_from(body, pos)
        pos += DOWN_FRAME.size
        data = bytes(body[pos : pos + length])
        pos += length
        if len(data) != length or blake3.blake3(data).digest() != raw:
            raise CorruptData(f"chunk {Digest(raw)} from the server does not match its digest")
        out[raw] = data
    wanted = {d.raw for d in digests}
    if wanted - out.keys():
        raise CorruptData(f"the server did not send {len(wanted - out.keys())} of the chunks asked for")
    return out


@collector_paused()
def download(
    http: Any,
    ref: str,
    dest: str | Path,
    *,
    progress: Progress | None = None,
    cache: ChunkCache | None = None,
    jobs: int = JOBS,
    batch_bytes: int = BATCH_BYTES,
) -> PullResult:
    """Write the files of ``ref`` under ``dest``, fetching only the chunks ``cache`` lacks."""
    cache = cache if cache is not None else ChunkCache()
    doc = _retry(lambda: http.request("GET", f"{API}/chunks/manifest", params={"ref": str(ref)})).json()
    version = from_wire(Version, doc["version"])
    manifest = Manifest.from_doc(doc["manifest"])
    exact = f"{version.artifact}@{version.version}"
    into = Destination(dest)
    fetched = cached = chunks_fetched = 0
    with ThreadPoolExecutor(jobs, thread_name_prefix="mk-fetch") as pool:
        for entry in manifest:
            target = into.target(entry.path)
            f, c, n = _write_file(http, exact, entry, target, cache, pool, batch_bytes, progress)
            fetched, cached, chunks_fetched = fetched + f, cached + c, chunks_fetched + n
    if cache.enabled:
        cache.trim()
    return PullResult(version, manifest.size, fetched, cached, chunks_fetched)


def _write_file(
    http: Any,
    ref: str,
    entry: FileEntry,
    target: Path,
    cache: ChunkCache,
    pool: ThreadPoolExecutor,
    batch_bytes: int,
    progress: Progress | None,
) -> tuple[int, int, int]:
    positions: dict[bytes, list[int]] = {}
    sizes: dict[bytes, int] = {}
    pos = 0
    for c in entry.chunks:
        positions.setdefault(c.digest.raw, []).append(pos)
        sizes[c.digest.raw] = c.size
        pos += c.size
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.mk-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755 if entry.executable else 0o644)
    fetched = cached = 0
    lock = threading.Lock()

    def place(raw: bytes, data: bytes) -> None:
        if len(data) != sizes[raw]:
            raise CorruptData(f"{entry.path}: chunk {Digest(raw)} has {len(data)} bytes, expected {sizes[raw]}")
        for off in positions[raw]:
            os.pwrite(fd, data, off)
        if progress:
            progress(len(data) * len(positions[raw]))

    try:
        todo: list[Digest] = []
        for raw in positions:
            hit = cache.get(Digest(raw))
            if hit is not None:
                place(raw, hit)
                cached += len(hit)
            else:
                todo.append(Digest(raw))
        batches: list[list[Digest]] = []
        cur: list[Digest] = []
        size = 0
        for d in todo:
            cur.append(d)
            size += sizes[d.raw]
            if size >= batch_bytes or len(cur) >= FETCH_PER_REQUEST:
                batches.append(cur)
                cur, size = [], 0
        if cur:
            batches.append(cur)

        def work(batch: list[Digest]) -> int:
            got = _fetch(http, ref, batch)
            n = 0
            for raw, data in got.items():
                place(raw, data)
                cache.put(Digest(raw), data)
                n += len(data)
            return n

        for n in pool.map(work, batches):
            with lock:
                fetched += n
        os.ftruncate(fd, entry.size)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, target)
    if entry.executable:
        mode = target.stat().st_mode
        target.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return fetched, cached, len(todo)


def pull_files(
    http: Any, ref: str, dest: str | Path, progress: Progress | None = None, *, cache: ChunkCache | None = None
) -> Version:
    """``Registry.pull`` over chunk-level transfer, through the local chunk cache."""
    return download(http, ref, dest, progress=progress, cache=cache).version
