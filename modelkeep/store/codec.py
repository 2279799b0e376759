"""How chunk bytes are encoded inside packs.

Codecs (one byte in the pack header per chunk):

0 RAW     the chunk bytes as they are.
1 ZSTD    one zstd frame of the chunk.
2 PLANES  float tensor data grouped by byte significance: element size ``e``
          gives ``e`` planes (byte 0 of every element, byte 1, ...). The plane
          holding sign and exponent is highly redundant in trained weights while
          the low mantissa planes are noise, so each plane is stored on its own
          by one of three methods: 0 raw, 1 a zstd frame, 2 nib4 (below).
          Layout::

              u8 e | u8 head | u8 tail | e x (u8 method, u32 length) | head bytes | planes | tail bytes

          ``head``/``tail`` are the bytes before the first and after the last whole
          element of the chunk (a chunk may start mid-element).

nib4 (plane method 2) stores a plane that takes few values as 4-bit codes into
a table of its up to 15 most frequent values, code 15 taking the next escape
byte: ``u8 k | k table bytes | u32 escapes | ceil(n/2) code bytes (low nibble
first) | escape bytes``. On the sign/exponent plane of trained weights it keeps
about half the bytes where zstd keeps a third, at several times zstd's speed
both ways; a plane is stored this way when its sample shows nib4 within
``_NIB4_OVER_ZSTD`` of zstd's size.

Whether compression pays is decided once per segment from a sample
(:class:`Plan`), so incompressible planes and files cost nothing to try.
Decoding never trusts lengths: any inconsistency raises CorruptData.
"""

from __future__ import annotations

import struct
import sys
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import zstandard

from modelkeep.errors import CorruptData
from modelkeep.store.planes import shuffle, unshuffle

__all__ = [
    "RAW", "ZSTD", "PLANES", "Plan", "plan_for", "encode", "encode_planes", "compress_planes",
    "decode", "decode_into", "decode_run", "NATIVE_RUNS", "RAW_PLANE", "ZSTD_PLANE", "NIB4", "nib4_planes",
    "encode_plane",
]

try:  # nib4 planes (modelkeep/store/_planes.c), where built; numpy otherwise
    from modelkeep.store._planes import nib4_decode as _n4d
    from modelkeep.store._planes import nib4_encode as _n4e

    _native_nib4: tuple | None = (_n4e, _n4d)
except ImportError:
    _native_nib4 = None

try:  # a run of chunks in one call (modelkeep/store/_planes.c), where built and libzstd is on the system
    from modelkeep.store._planes import can_decode_run
    from modelkeep.store._planes import decode_run as _native_decode_run

    NATIVE_RUNS = can_decode_run()
except ImportError:
    NATIVE_RUNS = False

RAW, ZSTD, PLANES = 0, 1, 2
RAW_PLANE, ZSTD_PLANE, NIB4 = 0, 1, 2  # how one plane of a PLANES chunk is stored
_NIB4_OVER_ZSTD = 1.6  # nib4 is chosen when at most this many times zstd's size (for ~4x the speed)
_PAYS = 0.92  # keep a compressed form only when it is at most this share of the raw one
_SAMPLE = 64 * 1024
MIN_PLANE_ELEMS = 64  # fewer whole elements in a chunk: stored raw
# the table that opens a PLANES blob, per element size: e, head, tail, then (method, length) per plane
_PLANE_TABLES = {e: struct.Struct("<BBB" + "BI" * e) for e in (2, 4, 8)}

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
    planes: tuple[int, ...]  # per plane: the method to try (0 raw, 1 zstd, 2 nib4)
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
        methods = tuple(_plane_method(c, grouped[i * n : (i + 1) * n]) for i in range(elem))
        if any(methods):
            return Plan(elem, methods, False)
        return _NOTHING
    return Plan(0, (), len(c.whole.compress(sample)) < _PAYS * len(sample))


def _plane_method(c: _Codecs, plane: memoryview) -> int:
    n = len(plane)
    z = len(c.plane.compress(plane))
    q = nib4_planes([plane])[0]
    if q is not None and len(q) < _PAYS * n and len(q) <= _NIB4_OVER_ZSTD * z:
        return NIB4
    return ZSTD_PLANE if z < _PAYS * n else RAW_PLANE


def encode(data: memoryview | bytes, plan: Plan, phase: int = 0) -> tuple[int, bytes | memoryview]:
    """Encode one opaque chunk (float tensor chunks go through ``encode_planes``)."""
    if plan.whole:
        z = _codecs().whole.compress(data)
        if len(z) < _PAYS * len(data):
            return ZSTD, z
    return RAW, data


def nib4_planes(pieces: list[memoryview]) -> list[bytes | None]:
    """The nib4 encoding of each plane (one call), or None where too many bytes escape its table."""
    if not pieces:
        return []
    if _native_nib4 is not None:
        return _native_nib4[0](pieces)
    return [_nib4_encode_py(p) for p in pieces]


def _nib4_encode_py(plane: memoryview | bytes) -> bytes | None:
    import numpy as np

    x = np.frombuffer(plane, dtype=np.uint8)
    n = len(x)
    count = np.bincount(x, minlength=256)
    present = np.flatnonzero(count)
    top = present[np.argsort(-count[present], kind="stable")][:15]
    escapes = n - int(count[top].sum())
    if escapes > n // 64:
        return None
    code = np.full(256, 15, dtype=np.uint8)
    code[top] = np.arange(len(top), dtype=np.uint8)
    c = code[x]
    if n % 2:
        c = np.append(c, np.uint8(0))
    packed = (c[0::2] | (c[1::2] << 4)).astype(np.uint8)
    esc = x[c[:n] == 15]
    return bytes([len(top)]) + top.astype(np.uint8).tobytes() + struct.pack("<I", escapes) + packed.tobytes() + esc.tobytes()


def _nib4_decode(part: memoryview | bytes, n: int) -> bytes | bytearray:
    out = bytearray(n)
    if _native_nib4 is not None:
        _native_nib4[1](part, out)
        return out
    import numpy as np

    src = np.frombuffer(part, dtype=np.uint8)
    if len(src) < 5 or src[0] > 15 or len(src) < 5 + src[0]:
        raise ValueError("bad nib4 table")
    k = int(src[0])
    table = src[1 : 1 + k]
    (escapes,) = struct.unpack_from("<I", part, 1 + k)
    body = 1 + k + 4
    if len(src) != body + (n + 1) // 2 + escapes:
        raise ValueError("nib4 plane has the wrong length")
    packed = src[body : body + (n + 1) // 2]
    c = np.empty(len(packed) * 2, dtype=np.uint8)
    c[0::2] = packed & 15
    c[1::2] = packed >> 4
    c = c[:n]
    esc = c == 15
    if int(esc.sum()) != escapes or ((c >= k) & ~esc).any():
        raise ValueError("bad nib4 code")
    res = np.frombuffer(out, dtype=np.uint8)
    res[~esc] = table[c[~esc]]
    res[esc] = src[body + (n + 1) // 2 :]
    return out


def encode_plane(method: int, plane: memoryview) -> tuple[int, bytes]:
    """One plane by ``method`` (NIB4 or ZSTD_PLANE): (method used, bytes); nib4 falls back to zstd."""
    if method == NIB4:
        q = nib4_planes([plane])[0]
        if q is not None:
            return NIB4, q
    return ZSTD_PLANE, _codecs().plane.compress(plane)


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
    compressed: Sequence[tuple[int, bytes] | None] | None = None,
) -> tuple[int, list[bytes | memoryview]]:
    """Encode the chunk ``block[off:off+ln]`` whose whole elements are ``k0:k1`` of the block's planes.

    ``planes`` holds the block's ``plan.elem`` planes of ``n`` bytes each, one after
    another; ``first`` is the block offset of element ``k0``. ``compressed`` may
    hold, for each plane the plan compresses, its (method, bytes) made ahead for
    many chunks at once (``compress_planes``, ``nib4_planes``); planes without one
    are encoded here. Returns (codec, parts to write).
    """
    e = plan.elem
    count = k1 - k0
    chunk = block[off : off + ln]
    if count < MIN_PLANE_ELEMS:
        return RAW, [chunk]
    head = first - off
    tail = ln - head - count * e
    fields = [e, head, tail]
    body: list[bytes | memoryview] = []
    gained = False
    for i in range(e):
        plane = planes[i * n + k0 : i * n + k1]
        if plan.planes[i]:
            got = compressed[i] if compressed is not None else None
            method, z = got if got is not None else encode_plane(plan.planes[i], plane)
            if len(z) < _PAYS * count:
                fields += (method, len(z))
                body.append(z)
                gained = True
                continue
        fields += (0, count)
        body.append(plane)
    if not gained:
        return RAW, [chunk]
    parts: list[bytes | memoryview] = [_PLANE_TABLES[e].pack(*fields)]
    if head:
        parts.append(chunk[:head])
    parts += body
    if tail:
        parts.append(chunk[ln - tail :])
    return PLANES, parts


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


def decode_run(blob: memoryview, desc: array, out: memoryview) -> tuple[int, str] | None:
    """Decode chunks stored in ``blob`` into ``out``, back to back; None, or (index, reason) of the first bad one.

    ``desc`` holds four unsigned 32-bit numbers per chunk: its offset in ``blob``,
    its stored length, its codec and its decoded length. The native decoder does
    the whole run without the interpreter lock; the fallback decodes chunk by chunk.
    """
    if NATIVE_RUNS:
        if sys.byteorder == "big":  # the native side reads little-endian numbers
            desc = array("I", desc)
            desc.byteswap()
        bad = _native_decode_run(blob, desc, out)
        return None if bad is None else (bad[0], f"chunk does not decode: {bad[1]}")
    pos = 0
    for i in range(0, len(desc), 4):
        at, stored, kind, raw = desc[i : i + 4]
        if at + stored > len(blob) or pos + raw > len(out):
            return i // 4, "chunk does not decode: chunk lies outside the bytes read"
        try:
            decode_into(kind, blob[at : at + stored], out[pos : pos + raw])
        except CorruptData as exc:
            return i // 4, str(exc)
        pos += raw
    return None


def _decode_planes(mv: memoryview, dst: memoryview) -> None:
    # Runs once per chunk on every pull: one struct call for the whole table.
    table = _PLANE_TABLES.get(mv[0]) if len(mv) else None
    if table is None:
        raise ValueError("bad plane header")
    fields = table.unpack_from(mv, 0)
    e, head, tail = fields[0], fields[1], fields[2]
    raw_len = len(dst)
    n = (raw_len - head - tail) // e
    if head >= e or tail >= e or n < 0 or n * e + head + tail != raw_len:
        raise ValueError("plane sizes do not add up")
    pos = table.size
    if pos + head > len(mv):
        raise ValueError("truncated plane header")
    dst[:head] = mv[pos : pos + head]
    pos += head
    planes: list[bytes | memoryview] = []
    for i in range(3, 3 + 2 * e, 2):
        method, ln = fields[i], fields[i + 1]
        part = mv[pos : pos + ln]
        if len(part) != ln:
            raise ValueError("truncated plane")
        pos += ln
        if method == ZSTD_PLANE:
            part = _codecs().d.decompress(part, max_output_size=n)
        elif method == NIB4:
            part = _nib4_decode(part, n)
        elif method != RAW_PLANE:
            raise ValueError(f"bad plane method {method}")
        if len(part) != n:
            raise ValueError("plane has the wrong length")
        planes.append(part)
    if pos + tail != len(mv):
        raise ValueError("trailing bytes after planes")
    unshuffle(planes, dst[head : head + n * e])
    dst[head + n * e :] = mv[pos:]
