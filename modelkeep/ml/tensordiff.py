"""Tensor diff of two safetensors files, streamed tensor by tensor.

For each tensor name: added, removed, shape/dtype changed, unchanged, or changed
with the L2 norm of the difference, the relative change ``||b - a|| / ||a||``
and the number of elements that differ. Totals give the share of parameters
changed.

Bytes come from a :class:`ByteSource`: either a local file (``FileSource``,
read with ``pread``) or, for versions in an embedded registry, straight from the
chunk store (``ChunkSource``) reading only the chunks under each tensor. The
chunk store cuts safetensors files on tensor boundaries, so a tensor whose
chunk digests are identical on both sides is unchanged and is never read.
Changed tensors are compared in blocks of :data:`BLOCK_BYTES` (the next block
pair is fetched while the current one is compared), so memory stays bounded
whatever the file size. Headers are validated by
:mod:`modelkeep.ml.safetensors_header` before anything else is read.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from modelkeep.errors import CorruptData
from modelkeep.ml.safetensors_header import SafetensorsHeader, TensorInfo, header_length, parse_header
from modelkeep.store.chunkstore import ChunkStore
from modelkeep.store.digest import Digest
from modelkeep.store.manifest import FileEntry

__all__ = [
    "BLOCK_BYTES",
    "ByteSource",
    "FileSource",
    "ChunkSource",
    "TensorChange",
    "TensorDiff",
    "diff_sources",
    "diff_files",
    "read_source_header",
]

BLOCK_BYTES = 16 * 1024 * 1024


class ByteSource(Protocol):
    """Random access to the bytes of one file."""

    name: str
    size: int

    def read(self, offset: int, length: int) -> bytes | bytearray | memoryview: ...

    def span_digests(self, begin: int, end: int) -> tuple[Digest, ...] | None:
        """Digests of the chunks covering exactly [begin, end), or None when the span does not start and end on chunk boundaries."""
        ...


class FileSource:
    """A local file, read with ``pread`` block by block (no mapping outlives the diff)."""

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.name = name or str(path)
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self.size:
            raise CorruptData(f"{self.name}: read of {length} bytes at {offset} past the end ({self.size})")
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise CorruptData(f"{self.name}: file shrank while being read")
        return data

    def span_digests(self, begin: int, end: int) -> None:
        return None

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChunkSource:
    """One file of a version, read from the chunk store chunk by chunk (each verified)."""

    def __init__(self, store: ChunkStore, entry: FileEntry) -> None:
        self.name = entry.path
        self.size = entry.size
        self._store = store
        self._chunks = entry.chunks
        self._starts: list[int] = []
        pos = 0
        for c in entry.chunks:
            self._starts.append(pos)
            pos += c.size

    def _covering(self, offset: int, length: int) -> tuple[int, int]:
        first = bisect.bisect_right(self._starts, offset) - 1
        last = bisect.bisect_left(self._starts, offset + length)  # exclusive
        return max(first, 0), last

    def read(self, offset: int, length: int) -> bytearray:
        if offset < 0 or offset + length > self.size:
            raise CorruptData(f"{self.name}: read of {length} bytes at {offset} past the end ({self.size})")
        out = bytearray(length)
        if not length:
            return out
        first, last = self._covering(offset, length)
        view = memoryview(out)

        def one(i: int) -> None:
            c = self._chunks[i]
            data = self._store.read_chunk(c.digest)
            if len(data) != c.size:
                raise CorruptData(f"{self.name}: chunk {c.digest} has {len(data)} bytes, expected {c.size}")
            start = self._starts[i]
            lo, hi = max(offset, start), min(offset + length, start + c.size)
            view[lo - offset : hi - offset] = memoryview(data)[lo - start : hi - start]

        for i in range(first, last):
            one(i)
        return out

    def span_digests(self, begin: int, end: int) -> tuple[Digest, ...] | None:
        if begin == end:
            return ()
        i = bisect.bisect_left(self._starts, begin)
        if i >= len(self._starts) or self._starts[i] != begin:
            return None
        j = bisect.bisect_left(self._starts, end)
        if j < len(self._starts):
            if self._starts[j] != end:
                return None
        elif end != self.size:
            return None
        return tuple(c.digest for c in self._chunks[i:j])


@dataclass(frozen=True, slots=True)
class TensorChange:
    name: str
    status: str  # "changed", "unchanged", "added", "removed", "reshaped"
    dtype_a: str | None
    dtype_b: str | None
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    numel: int  # elements of the new tensor (of the old one when removed)
    changed_elements: int  # elements whose bits differ (all of them when added or reshaped)
    l2_diff: float | None  # ||b - a||; None when not comparable
    l2_a: float | None
    l2_b: float | None
    read: bool  # bytes were read (False: decided from chunk digests or header alone)

    @property
    def relative_change(self) -> float | None:
        if self.status == "unchanged":
            return 0.0
        if self.l2_diff is None or self.l2_a is None:
            return None
        if self.l2_a == 0.0:
            return 0.0 if self.l2_diff == 0.0 else math.inf
        return self.l2_diff / self.l2_a


@dataclass(frozen=True, slots=True)
class TensorDiff:
    a: str
    b: str
    tensors: tuple[TensorChange, ...]  # sorted by name
    params_a: int
    params_b: int
    bytes_read: int

    @property
    def changed(self) -> tuple[TensorChange, ...]:
        return tuple(t for t in self.tensors if t.status != "unchanged")

    @property
    def params_changed(self) -> int:
        return sum(t.changed_elements for t in self.tensors if t.status != "removed")

    @property
    def share_changed(self) -> float:
        """Share of the new file's parameters that differ from the old file (added tensors count as changed)."""
        return self.params_changed / self.params_b if self.params_b else 0.0

    def to_json(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "params_a": self.params_a,
            "params_b": self.params_b,
            "params_changed": self.params_changed,
            "share_changed": self.share_changed,
            "bytes_read": self.bytes_read,
            "tensors": [
                {
                    "name": t.name,
                    "status": t.status,
                    "dtype_a": t.dtype_a,
                    "dtype_b": t.dtype_b,
                    "shape_a": list(t.shape_a) if t.shape_a is not None else None,
                    "shape_b": list(t.shape_b) if t.shape_b is not None else None,
                    "numel": t.numel,
                    "changed_elements": t.changed_elements,
                    "l2_diff": t.l2_diff,
                    "l2_a": t.l2_a,
                    "l2_b": t.l2_b,
                    "relative_change": _finite(t.relative_change),
                }
                for t in self.tensors
            ],
        }


def _finite(x: float | None) -> float | str | None:
    if x is None or math.isfinite(x):
        return x
    return "inf" if x > 0 else "nan"


def read_source_header(src: ByteSource) -> SafetensorsHeader:
    n = header_length(bytes(src.read(0, min(8, src.size))), src.size, where=src.name)
    return parse_header(bytes(src.read(8, n)), src.size, where=src.name)


def diff_files(a: str | Path, b: str | Path, *, block_bytes: int = BLOCK_BYTES) -> TensorDiff:
    """Tensor diff of two local safetensors files."""
    with FileSource(a) as sa, FileSource(b) as sb:
        return diff_sources(sa, sb, block_bytes=block_bytes)


def diff_sources(a: ByteSource, b: ByteSource, *, block_bytes: int = BLOCK_BYTES) -> TensorDiff:
    """Tensor diff of two safetensors byte sources; both headers are validated first."""
    ha, hb = read_source_header(a), read_source_header(b)
    ta, tb = ha.by_name(), hb.by_name()
    out: list[TensorChange] = []
    read_total = 0
    with ThreadPoolExecutor(2) as pool:
        for name in sorted(ta.keys() | tb.keys()):
            x, y = ta.get(name), tb.get(name)
            if x is None:
                assert y is not None
                out.append(TensorChange(name, "added", None, y.dtype, None, y.shape, y.numel, y.numel, None, None, None, False))
            elif y is None:
                out.append(TensorChange(name, "removed", x.dtype, None, x.shape, None, x.numel, 0, None, None, None, False))
            elif x.dtype != y.dtype or x.shape != y.shape:
                out.append(TensorChange(name, "reshaped", x.dtype, y.dtype, x.shape, y.shape, y.numel, y.numel, None, None, None, False))
            else:
                da, db = a.span_digests(x.begin, x.end), b.span_digests(y.begin, y.end)
                if da is not None and da == db:
                    out.append(TensorChange(name, "unchanged", x.dtype, y.dtype, x.shape, y.shape, y.numel, 0, 0.0, None, None, False))
                    continue
                change = _compare(a, b, x, y, pool, block_bytes)
                read_total += 2 * x.nbytes
                out.append(change)
    return TensorDiff(
        a.name,
        b.name,
        tuple(out),
        sum(t.numel for t in ha.tensors),
        sum(t.numel for t in hb.tensors),
        read_total,
    )


def _blocks(nbytes: int, item: int, block_bytes: int) -> Iterator[tuple[int, int]]:
    step = max(item, block_bytes - block_bytes % item)
    for off in range(0, nbytes, step):
        yield off, min(step, nbytes - off)


def _compare(
    a: ByteSource, b: ByteSource, x: TensorInfo, y: TensorInfo, pool: ThreadPoolExecutor, block_bytes: int
) -> TensorChange:
    item = x.nbytes // x.numel if x.numel else 1
    to_float = _float_view(x.dtype)
    bits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[item]
    diff_sq = norm_a = norm_b = 0.0
    changed = 0
    comparable = to_float is not None

    def fetch(off: int, n: int) -> tuple[Future, Future]:
        return pool.submit(a.read, x.begin + off, n), pool.submit(b.read, y.begin + off, n)

    blocks = list(_blocks(x.nbytes, item, block_bytes))
    pending = fetch(*blocks[0]) if blocks else None
    for k in range(len(blocks)):
        assert pending is not None
        fa, fb = pending
        ra, rb = fa.result(), fb.result()
        pending = fetch(*blocks[k + 1]) if k + 1 < len(blocks) else None
        ua = np.frombuffer(ra, dtype=bits)
        ub = np.frombuffer(rb, dtype=bits)
        ne = ua != ub
        changed += int(np.count_nonzero(ne))
        if comparable:
            assert to_float is not None
            fa, fb = to_float(ua), to_float(ub)
            diff_sq += _sum_squares(fb - fa)
            norm_a += _sum_squares(fa)
            norm_b += _sum_squares(fb)
    status = "changed" if changed else "unchanged"
    if not comparable:
        return TensorChange(x.name, status, x.dtype, y.dtype, x.shape, y.shape, y.numel, changed, None, None, None, True)
    return TensorChange(
        x.name, status, x.dtype, y.dtype, x.shape, y.shape, y.numel, changed,
        math.sqrt(diff_sq), math.sqrt(norm_a), math.sqrt(norm_b), True,
    )


_ROW = 1024


def _sum_squares(x: np.ndarray) -> float:
    """Sum of squares: row dot products in the array's precision, rows summed in float64.

    Short rows keep the float32 rounding error near 1e-7 relative while running at
    memory speed (converting whole blocks to float64 costs several times more).
    """
    n = len(x) - len(x) % _ROW
    total = 0.0
    if n:
        rows = x[:n].reshape(-1, _ROW)
        total += float(np.einsum("ij,ij->i", rows, rows).sum(dtype=np.float64))
    if n < len(x):
        tail = x[n:].astype(np.float64)
        total += float(tail @ tail)
    return total


def _float_view(dtype: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """Bits (unsigned view) -> float values; None for dtypes with no numeric value here (F8).

    16-bit floats widen exactly to float32; float32 stays as is; float64 and integers become float64.
    """
    if dtype == "BF16":
        return lambda u: (u.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F16":
        return lambda u: u.view("<f2").astype(np.float32)
    if dtype == "F32":
        return lambda u: u.view("<f4")
    real = {"F64": "<f8", "I8": "|i1", "I16": "<i2", "I32": "<i4", "I64": "<i8",
            "U8": "|u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "|u1"}
    if dtype in real:
        dt = np.dtype(real[dtype])
        return lambda u: u.view(dt).astype(np.float64)
    return None
