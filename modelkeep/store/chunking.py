"""Where files are cut into chunks.

A file is first split into *segments*, and every segment boundary is also a
chunk boundary. A plain file is one segment. A ``.safetensors`` file has one
segment for its header and one per tensor, so a fine-tune that rewrites some
tensors shares every chunk of the others, and growing the header (which shifts
every tensor) costs only the header's chunks.

Opaque segments (plain files, safetensors headers, gaps) are cut by FastCDC
(64 KiB average, 16 KiB min, 256 KiB max), so an insertion moves only the
chunks around it. Tensor segments are cut every 64 KiB from the tensor's first
byte (a last piece under 16 KiB joins the chunk before it): a tensor's bytes
never shift inside it, since its shape fixes where every element lives. A
fine-tune rewrites values in place; rows appended to a row-major tensor leave
every earlier chunk as it was; a reshape rewrites the tensor either way. So
content-defined cuts would find the same boundaries inside a tensor while
costing ~0.2 s of CPU per GiB; the tensor boundaries themselves come from the
content (the header), which is what keeps shifted tensors deduplicated.

Segments also carry the element size of float tensors, which the codec uses to
group bytes by significance before compressing.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyfastcdc

from modelkeep.errors import InvalidPath

__all__ = ["Segment", "segments", "pieces", "cut", "tensor_chunks", "tensor_blocks", "AVG_CHUNK", "MIN_CHUNK", "MAX_CHUNK", "BLOCK"]

AVG_CHUNK = 64 * 1024
MIN_CHUNK = 16 * 1024
MAX_CHUNK = 256 * 1024
BLOCK = 2 * 1024 * 1024  # bytes read at a time: bounds memory in flight, and stays in cache between steps

# dtype -> element size of the float types whose byte planes compress differently
_FLOAT_ELEM = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Segment:
    start: int
    end: int
    elem: int  # element size of a float tensor (2, 4, 8), or 0: opaque bytes
    tensor: bool = False  # the bytes of one tensor: fixed-size chunks from its start


def segments(f: BinaryIO, size: int, name: str) -> list[Segment]:
    """Segments of a file. Safetensors files whose header does not parse are opaque."""
    if name.endswith(".safetensors"):
        seg = _safetensors_segments(f, size)
        if seg is not None:
            return seg
    return [Segment(0, size, 0)] if size else []


def _safetensors_segments(f: BinaryIO, size: int) -> list[Segment] | None:
    # Only used to place chunk boundaries: a header that lies costs dedup, never
    # correctness, so anything unexpected falls back to one opaque segment.
    if size < 8:
        return None
    f.seek(0)
    (hlen,) = struct.unpack("<Q", f.read(8))
    if hlen > _MAX_HEADER or 8 + hlen > size:
        return None
    try:
        header = json.loads(f.read(hlen))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    base = 8 + hlen
    spans: list[tuple[int, int, int]] = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            dtype = str(info["dtype"])
        except (KeyError, TypeError, ValueError):
            return None
        if not 0 <= begin <= end or base + end > size:
            return None
        if end > begin:
            spans.append((base + begin, base + end, _FLOAT_ELEM.get(dtype, 0)))
    spans.sort()
    out = [Segment(0, base, 0)]
    pos = base
    for begin, end, elem in spans:
        if begin < pos:  # overlapping tensors: not a layout we can trust
            return None
        if begin > pos:
            out.append(Segment(pos, begin, 0))
        out.append(Segment(begin, end, elem if (begin - base) % max(elem, 1) == 0 else 0, True))
        pos = end
    if pos < size:
        out.append(Segment(pos, size, 0))
    return out


def pieces(seg: Segment, size: int) -> list[Segment]:
    """``seg`` split into parts of about ``size`` bytes (a multiple of AVG_CHUNK) that
    cut into exactly the chunks of ``seg``: units of work that can run in parallel.

    Only tensor segments split: their chunks fall at fixed offsets from the
    tensor's start, so a part starting on one of them cuts the same way. The last
    part keeps at least one whole chunk, so a short remainder still joins the
    chunk before it. Opaque segments are cut by content and stay whole.
    """
    if not seg.tensor or seg.end - seg.start <= size:
        return [seg]
    if size <= 0 or size % AVG_CHUNK:
        raise ValueError(f"piece size {size} is not a positive multiple of {AVG_CHUNK}")
    out = []
    start = seg.start
    while seg.end - start >= size + AVG_CHUNK:
        out.append(Segment(start, start + size, seg.elem, True))
        start += size
    out.append(Segment(start, seg.end, seg.elem, True))
    return out


Buffers = Callable[[int], memoryview]


def _fresh(n: int) -> memoryview:
    return memoryview(bytearray(n))


def cut(
    f: BinaryIO, seg: Segment, block: int = BLOCK, into: Buffers = _fresh
) -> Iterator[tuple[int, memoryview, list[tuple[int, int]]]]:
    """Yield blocks of ``seg`` with their chunks: (file offset, block bytes, [(offset in block, length)]).

    Reads about ``block`` bytes at a time (more than MAX_CHUNK) into buffers from
    ``into(nbytes)``; a caller that reuses buffers must not hand out one whose
    bytes it still needs. Cutting by blocks gives exactly the chunks of cutting
    the whole segment at once.
    """
    if seg.tensor:
        yield from _cut_tensor(f, seg, block, into)
    else:
        yield from _cut_cdc(f, seg, block, into)


def tensor_chunks(size: int) -> list[int]:
    """Chunk lengths of a tensor segment of ``size`` bytes."""
    full, rest = divmod(size, AVG_CHUNK)
    lengths = [AVG_CHUNK] * full
    if rest:
        if lengths and rest < MIN_CHUNK:
            lengths[-1] += rest
        else:
            lengths.append(rest)
    return lengths


def tensor_blocks(seg: Segment, block: int = BLOCK) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
    """The blocks ``cut`` reads a tensor segment in: (file offset, length, [(offset in block, length)])."""
    lengths = tensor_chunks(seg.end - seg.start)
    pos = seg.start
    i = 0
    while i < len(lengths):
        chunks: list[tuple[int, int]] = []
        size = 0
        while i < len(lengths) and (not chunks or size + lengths[i] <= block):
            chunks.append((size, lengths[i]))
            size += lengths[i]
            i += 1
        yield pos, size, chunks
        pos += size


def _cut_tensor(f: BinaryIO, seg: Segment, block: int, into: Buffers):
    f.seek(seg.start)
    for pos, size, chunks in tensor_blocks(seg, block):
        view = into(size)
        if _readinto_exact(f, view) != size:
            raise InvalidPath(f"{_name(f)} changed while being read (expected {size} more bytes)")
        yield pos, view, chunks


def _cut_cdc(f: BinaryIO, seg: Segment, block: int, into: Buffers):
    # FastCDC restarts its search at every cut point, so cutting a block and
    # carrying the unfinished last chunk into the next block gives exactly the
    # chunks of cutting the whole segment at once.
    cdc = pyfastcdc.FastCDC(AVG_CHUNK - MIN_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)
    f.seek(seg.start)
    pos = seg.start
    carry = b""
    remaining = seg.end - seg.start
    while True:
        n = min(block, remaining)
        view = into(len(carry) + n)
        view[: len(carry)] = carry
        got = _readinto_exact(f, view[len(carry) :])
        if got != n:
            raise InvalidPath(f"{_name(f)} changed while being read (expected {n} more bytes, got {got})")
        remaining -= n
        last = remaining == 0
        chunks = [(c.offset, c.length) for c in cdc.cut_buf(view)] if len(view) else []
        carry = b""
        if not last:  # the last chunk of a block may continue in the next one
            tail_off, _ = chunks.pop()
            carry = bytes(view[tail_off:])
            view = view[:tail_off]
        if chunks:
            yield pos, view, chunks
        pos += len(view)
        if last:
            return


def _name(f: BinaryIO) -> str:
    name = getattr(f, "name", None)
    return name if isinstance(name, str) else "a file"


def _readinto_exact(f: BinaryIO, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def file_size(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size
