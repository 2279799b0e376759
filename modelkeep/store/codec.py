"""How chunk bytes are encoded inside packs.

Codecs (one byte in the pack header per chunk):

0 RAW     the chunk bytes as they are.
1 ZSTD    one zstd frame of the chunk.
2 PLANES  float tensor data grouped by byte significance: element size ``e``
          gives ``e`` planes (byte 0 of every element, byte 1, ...). The plane
          holding sign and exponent is highly redundant in trained weights while
          the low mantissa planes are noise, so each plane is zstd-compressed or
          kept raw on its own. Layout::

              u8 e | u8 head | u8 tail | e x (u8 method, u32 length) | head bytes | planes | tail bytes

          ``head``/``tail`` are the bytes before the first and after the last whole
          element of the chunk (a chunk may start mid-element).

Whether compression pays is decided once per segment from a sample
(:class:`Plan`), so incompressible planes and files cost nothing to try.
Decoding never trusts lengths: any inconsistency raises CorruptData.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import zstandard

from modelkeep.errors import CorruptData
from modelkeep.store.planes import shuffle, unshuffle

__all__ = [
    "RAW", "ZSTD", "PLANES", "Plan", "plan_for", "encode", "encode_planes", "compress_planes",
    "decode", "decode_into",
]

RAW, ZSTD, PLANES = 0, 1, 2
_PAYS = 0.92  # keep a compressed form only when it is at most this share of the raw one
_SAMPLE = 64 * 1024
MIN_PLANE_ELEMS = 64  # fewer whole elements in a chunk: stored raw

# Fast zstd settings for byte planes: a small window, a tiny hash table and long
# minimum matches, since the gain is in entropy coding, not in matches (measured
# on sign/exponent planes of float32 weights: ~4x faster than level 1, and a
# better ratio, 0.34 against 0.40).
_PLANE_PARAMS = zstandard.ZstdCompressionParameters(
    window_log=14, hash_log=6, chain_log=6, search_log=1, min_match=7, target_length=0,
    strategy=zstandard.STRATEGY_FAST,
)


@dataclass(frozen=True, slots=True)
class Plan:
    """How to encode the chunks of one segment."""

    elem: int  # 0: opaque bytes
    planes: tuple[bool, ...]  # per plane: try zstd
    whole: bool  # opaque bytes: try zstd


_NOTHING = Plan(0, (), False)


class _Codecs:
    # zstd (de)compressor objects are not thread-safe; one set per thread.
    def __init__(self) -> None:
        self.plane = zstandard.ZstdCompressor(compression_params=_PLANE_PARAMS)
        self.whole = zstandard.ZstdCompressor(level=3)
        self.d = zstandard.ZstdDecompressor()


_local = threading.local()


def _codecs() -> _Codecs:
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = _Codecs()
    return c


def plan_for(sample: memoryview | bytes, elem: int) -> Plan:
    """Decide from the first bytes of a segment which compression is worth trying."""
    if len(sample) < 4096:
        return _NOTHING
    c = _codecs()
    sample = sample[:_SAMPLE]
    if elem:
        n = len(sample) // elem
        grouped = memoryview(bytearray(n * elem))
        shuffle(memoryview(sample)[: n * elem], elem, grouped)
        pays = tuple(len(c.plane.compress(grouped[i * n : (i + 1) * n])) < _PAYS * n for i in range(elem))
        if any(pays):
            return Plan(elem, pays, False)
        return _NOTHING
    return Plan(0, (), len(c.whole.compress(sample)) < _PAYS * len(sample))


def encode(data: memoryview | bytes, plan: Plan, phase: int = 0) -> tuple[int, bytes | memoryview]:
    """Encode one opaque chunk (float tensor chunks go through ``encode_planes``)."""
    if plan.whole:
        z = _codecs().whole.compress(data)
        if len(z) < _PAYS * len(data):
            return ZSTD, z
    return RAW, data


def compress_planes(pieces: list[memoryview]) -> list[bytes]:
    """zstd frames of many planes, compressed in one call (its loop runs in C, without the GIL)."""
    if not pieces:
        return []
    frames = _codecs().plane.multi_compress_to_buffer(pieces)
    return [frames[i].tobytes() for i in range(len(pieces))]


def encode_planes(
    block: memoryview,
    planes: memoryview,
    n: int,
    plan: Plan,
    off: int,
    ln: int,
    first: int,
    k0: int,
    k1: int,
    compressed: Sequence[bytes | None] | None = None,
) -> tuple[int, list[bytes | memoryview]]:
    """Encode the chunk ``block[off:off+ln]`` whose whole elements are ``k0:k1`` of the block's planes.

    ``planes`` holds the block's ``plan.elem`` planes of ``n`` bytes each, one after
    another; ``first`` is the block offset of element ``k0``. ``compressed`` may
    hold the zstd frame of each plane the plan compresses (``compress_planes``),
    made ahead for many chunks at once. Returns (codec, parts to write).
    """
    e = plan.elem
    count = k1 - k0
    chunk = block[off : off + ln]
    if count < MIN_PLANE_ELEMS:
        return RAW, [chunk]
    head = first - off
    tail = ln - head - count * e
    c = _codecs()
    table = bytearray(struct.pack("<BBB", e, head, tail))
    body: list[bytes | memoryview] = []
    gained = False
    for i in range(e):
        plane = planes[i * n + k0 : i * n + k1]
        if plan.planes[i]:
            z = compressed[i] if compressed is not None and compressed[i] is not None else c.plane.compress(plane)
            if len(z) < _PAYS * count:
                table += struct.pack("<BI", 1, len(z))
                body.append(z)
                gained = True
                continue
        table += struct.pack("<BI", 0, count)
        body.append(plane)
    if not gained:
        return RAW, [chunk]
    return PLANES, [bytes(table), chunk[:head], *body, chunk[ln - tail :]]


def decode(codec: int, blob: bytes | memoryview, raw_len: int) -> bytes | memoryview:
    """Decode one chunk to exactly ``raw_len`` bytes or raise CorruptData."""
    if codec == RAW:
        if len(blob) != raw_len:
            raise CorruptData(f"chunk decodes to {len(blob)} bytes, expected {raw_len}")
        return blob
    out = bytearray(raw_len)
    decode_into(codec, blob, memoryview(out))
    return out


def decode_into(codec: int, blob: bytes | memoryview, dst: memoryview) -> None:
    """Decode one chunk into ``dst``, which it must fill exactly, or raise CorruptData."""
    raw_len = len(dst)
    try:
        if codec == RAW:
            if len(blob) != raw_len:
                raise CorruptData(f"chunk decodes to {len(blob)} bytes, expected {raw_len}")
            dst[:] = blob
        elif codec == ZSTD:
            out = _codecs().d.decompress(blob, max_output_size=raw_len)
            if len(out) != raw_len:
                raise CorruptData(f"chunk decodes to {len(out)} bytes, expected {raw_len}")
            dst[:] = out
        elif codec == PLANES:
            _decode_planes(memoryview(blob), dst)
        else:
            raise CorruptData(f"unknown chunk codec {codec}")
    except (zstandard.ZstdError, struct.error, ValueError) as exc:
        raise CorruptData(f"chunk does not decode: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Layout:
    """A PLANES blob, parsed: where its head, planes and tail lie."""

    e: int
    n: int
    head: memoryview
    parts: list[tuple[int, memoryview]]  # (method, bytes as stored) per plane
    tail: memoryview

    def assemble(self, planes: Sequence[bytes | memoryview], dst: memoryview) -> None:
        if any(len(p) != self.n for p in planes):
            raise ValueError("plane has the wrong length")
        h = len(self.head)
        dst[:h] = self.head
        unshuffle(planes, dst[h : h + self.n * self.e])
        dst[h + self.n * self.e :] = self.tail


def _parse_planes(mv: memoryview, raw_len: int) -> _Layout:
    e, head, tail = struct.unpack_from("<BBB", mv, 0)
    if e not in (2, 4, 8) or head >= e or tail >= e:
        raise ValueError("bad plane header")
    n = (raw_len - head - tail) // e
    if n < 0 or n * e + head + tail != raw_len:
        raise ValueError("plane sizes do not add up")
    pos = 3 + 5 * e
    sizes = [struct.unpack_from("<BI", mv, 3 + 5 * i) for i in range(e)]
    if pos + head > len(mv):
        raise ValueError("truncated plane header")
    head_view = mv[pos : pos + head]
    pos += head
    parts = []
    for method, ln in sizes:
        if method not in (0, 1):
            raise ValueError(f"bad plane method {method}")
        part = mv[pos : pos + ln]
        if len(part) != ln:
            raise ValueError("truncated plane")
        parts.append((method, part))
        pos += ln
    if pos + tail != len(mv):
        raise ValueError("trailing bytes after planes")
    return _Layout(e, n, head_view, parts, mv[pos:])


def _decode_planes(mv: memoryview, dst: memoryview) -> None:
    layout = _parse_planes(mv, len(dst))
    d = _codecs().d
    n = layout.n
    planes = [d.decompress(part, max_output_size=n) if method == 1 else part for method, part in layout.parts]
    layout.assemble(planes, dst)
