"""Digest: the name of every chunk, file and manifest (``blake3:<64 hex>``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import blake3

from modelkeep.errors import InvalidInput

__all__ = ["Digest", "hash_bytes", "hash_chunks", "hash_mapped", "hash_views", "copy_mapped", "Hasher", "LANES", "MAPPED"]

try:  # BLAKE3 of many equal chunks in one call (modelkeep/store/_lanes.c), where built and the CPU runs it
    from modelkeep.store import _lanes

    LANES = _lanes.available()
except ImportError:
    LANES = False

# Files can be hashed through a mapping (hash_mapped) where the helper runs and guards its reads.
MAPPED = LANES and hasattr(_lanes, "hash_mapped")

ALGO = "blake3"


def _raw(hexpart: str) -> bytes | None:
    """The 32 bytes written as exactly 64 lowercase hex digits, else None.

    ``bytes.fromhex`` alone also takes upper case and spaces; its result written
    back must give the same text. (A regular expression cost 5x as much, which a
    manifest of 16k chunks per GiB paid on every read.)
    """
    if len(hexpart) != 64:
        return None
    try:
        raw = bytes.fromhex(hexpart)
    except ValueError:
        return None
    return raw if raw.hex() == hexpart else None


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A BLAKE3 digest. ``str(d)`` and ``Digest.parse`` round-trip."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise InvalidInput(f"a blake3 digest has 32 bytes, got {len(self.raw)}")

    @classmethod
    def parse(cls, text: str) -> Digest:
        algo, sep, hexpart = text.partition(":")
        raw = _raw(hexpart) if sep and algo == ALGO else None
        if raw is None:
            raise InvalidInput(f"not a digest: {text!r} (expected 'blake3:' followed by 64 lowercase hex digits)")
        return cls(raw)

    @classmethod
    def from_hex(cls, hexpart: str) -> Digest:
        raw = _raw(hexpart)
        if raw is None:
            raise InvalidInput(f"not a blake3 hex digest: {hexpart!r}")
        return cls(raw)

    @property
    def hex(self) -> str:
        return self.raw.hex()

    @property
    def short(self) -> str:
        return f"{ALGO}:{self.raw[:6].hex()}"

    def __str__(self) -> str:
        return f"{ALGO}:{self.raw.hex()}"

    def __repr__(self) -> str:
        return f"Digest({self.short}…)"


def hash_bytes(data: bytes | bytearray | memoryview) -> Digest:
    return Digest(blake3.blake3(data).digest())


def hash_chunks(view: memoryview, cuts: list[tuple[int, int]]) -> list[bytes]:
    """The raw BLAKE3 digest of each ``view[off : off + length]`` of ``cuts``, in order.

    Chunks that follow one another with one length (the 64 KiB chunks of a
    tensor) are hashed with one native call per run; one call per chunk gives up
    and retakes the interpreter lock every ~10 us, which stalls badly when other
    threads run Python. The digests are plain BLAKE3 either way.
    """
    if not LANES:
        return [blake3.blake3(view[off : off + ln]).digest() for off, ln in cuts]
    out: list[bytes] = []
    for off, ln, n in _runs(cuts):
        if n == 1:
            out.append(blake3.blake3(view[off : off + ln]).digest())
        else:
            digests = bytearray(32 * n)
            _lanes.hash_equal(view[off : off + n * ln], ln, n, digests)
            out += [bytes(digests[k : k + 32]) for k in range(0, len(digests), 32)]
    return out


def _runs(cuts: list[tuple[int, int]]) -> Iterator[tuple[int, int, int]]:
    """``cuts`` as runs of back-to-back chunks of one length: (offset, length, count)."""
    i = 0
    while i < len(cuts):
        off, ln = cuts[i]
        j = i + 1
        while j < len(cuts) and cuts[j][1] == ln and cuts[j][0] == off + (j - i) * ln:
            j += 1
        yield off, ln, j - i
        i = j


def hash_mapped(view: memoryview, cuts: list[tuple[int, int]]) -> list[bytes] | None:
    """``hash_chunks`` of a view of a file's mapping, or None when the file shrank under it.

    Every byte is read by a guarded native call (see ``copy_mapped``); a chunk
    whose length differs from its neighbours' is copied out first. Only where
    ``MAPPED``.
    """
    out: list[bytes] = []
    for off, ln, n in _runs(cuts):
        if n == 1:
            own = bytearray(ln)
            if not _lanes.copy_mapped(own, view[off : off + ln]):
                return None
            out.append(blake3.blake3(own).digest())
        else:
            digests = bytearray(32 * n)
            if not _lanes.hash_mapped(view[off : off + n * ln], ln, n, digests):
                return None
            out += [bytes(digests[k : k + 32]) for k in range(0, len(digests), 32)]
    return out


def copy_mapped(dst: memoryview | bytearray, src: memoryview) -> bool:
    """``dst[:len(src)] = src`` from a file's mapping; False when the file shrank under it.

    Touching a mapped page past the end of a file that was truncated raises
    SIGBUS, which ends the process; the native call catches it in its own
    thread instead. Bytes of a mapping must be read through it or hash_mapped,
    never by Python code. Where not ``MAPPED``, no file is mapped: a plain copy.
    """
    if not MAPPED:
        dst[: len(src)] = src
        return True
    return _lanes.copy_mapped(dst, src)


def hash_views(views: list[memoryview]) -> list[bytes]:
    """The raw BLAKE3 digest of each of ``views``, in order (chunks of an upload, wherever they lie).

    Views of one length, when there are enough of them to fill lanes, are hashed
    together with one native call; the others one by one.
    """
    if not LANES:
        return [blake3.blake3(v).digest() for v in views]
    by_len: dict[int, list[int]] = {}
    for i, v in enumerate(views):
        by_len.setdefault(len(v), []).append(i)
    out: list[bytes] = [b""] * len(views)
    for ln, idx in by_len.items():
        if len(idx) < _LANES_WORTH:
            for i in idx:
                out[i] = blake3.blake3(views[i]).digest()
            continue
        digests = bytearray(32 * len(idx))
        _lanes.hash_list([views[i] for i in idx], digests)
        for k, i in enumerate(idx):
            out[i] = bytes(digests[32 * k : 32 * k + 32])
    return out


_LANES_WORTH = 8  # fewer messages of one length: sixteen lanes would mostly hash copies


class Hasher:
    """Incremental BLAKE3 over a stream; ``digest()`` may be called once at the end."""

    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = blake3.blake3()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> Digest:
        return Digest(self._h.digest())
