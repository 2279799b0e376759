"""Where files are cut into chunks.

A file is first split into *segments*; each segment is cut independently by
FastCDC (64 KiB average, 16 KiB min, 256 KiB max), so every segment boundary is
also a chunk boundary. A plain file is one segment. A ``.safetensors`` file has
one segment for its header and one per tensor, so a fine-tune that rewrites
some tensors shares every chunk of the others, and growing the header (which
shifts every tensor) costs only the header's chunks.

Segments also carry the element size of float tensors, which the codec uses to
group bytes by significance before compressing.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyfastcdc

__all__ = ["Segment", "segments", "cut", "AVG_CHUNK", "MIN_CHUNK", "MAX_CHUNK", "BLOCK"]

AVG_CHUNK = 64 * 1024
MIN_CHUNK = 16 * 1024
MAX_CHUNK = 256 * 1024
BLOCK = 8 * 1024 * 1024  # bytes read at a time; bounds memory per file in flight

# dtype -> element size of the float types whose byte planes compress differently
_FLOAT_ELEM = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Segment:
    start: int
    end: int
    elem: int  # element size of a float tensor (2, 4, 8), or 0: opaque bytes


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
        out.append(Segment(begin, end, elem if (begin - base) % max(elem, 1) == 0 else 0))
        pos = end
    if pos < size:
        out.append(Segment(pos, size, 0))
    return out


def cut(f: BinaryIO, seg: Segment, block: int = BLOCK) -> Iterator[tuple[int, memoryview, list[tuple[int, int]]]]:
    """Yield blocks of ``seg`` with their chunks: (file offset, block bytes, [(offset in block, length)]).

    Reads ``block`` bytes at a time (more than MAX_CHUNK). FastCDC restarts its search at every cut point, so
    cutting a block and carrying the unfinished last chunk into the next block gives
    exactly the chunks of cutting the whole segment at once.
    """
    cdc = pyfastcdc.FastCDC(AVG_CHUNK - MIN_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)
    f.seek(seg.start)
    pos = seg.start
    carry = b""
    remaining = seg.end - seg.start
    while True:
        n = min(block, remaining)
        buf = bytearray(len(carry) + n)
        buf[: len(carry)] = carry
        view = memoryview(buf)
        got = _readinto_exact(f, view[len(carry) :])
        if got != n:
            raise OSError(f"file changed while being read (expected {n} more bytes, got {got})")
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
