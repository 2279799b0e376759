"""The chunk index: chunk digest -> where its bytes are.

The index is a cache: every pack carries its own header, so the index can
always be rebuilt from the packs alone (``Index.rebuild``). On disk it is a set
of index files ``index/<hex>.idx``, each covering some packs::

    magic b"MKIX" | format u16 | reserved u16 | pack count u32
    per pack: pack id (32 raw bytes) | entry count u32 | entries (as in the pack header)
    blake3 of everything above (32 bytes)

Loading reads every index file, then the headers of packs no index file covers
(packs written since the last compaction). ``compact`` writes one index file for
all packs and removes the ones it supersedes.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Iterable

from modelkeep.errors import CorruptData
from modelkeep.store.backends.base import Backend
from modelkeep.store.digest import hash_bytes
from modelkeep.store.packs import ENTRY, PackEntry, decode_entries, encode_header, read_header_bytes

__all__ = ["Index", "Location"]

log = logging.getLogger(__name__)

MAGIC = b"MKIX"
FORMAT = 1
_HEAD = struct.Struct("<4sHHI")
_PACK = struct.Struct("<32sI")
COMPACT_AFTER = 64  # uncovered packs at load time before an index file is written

Location = tuple[str, int, int, int, int]  # pack id, offset, stored, raw, codec


class Index:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._map: dict[bytes, Location] = {}
        # pack id -> its entries, encoded as in the pack header: a push loads the
        # whole index, and tuples straight from struct cost a fraction of objects
        self._packs: dict[str, bytes] = {}
        self._files: dict[str, set[str]] = {}  # index file -> pack ids it covers
        self._lock = threading.Lock()
        self.generation = ""  # the store's gc generation when this index was loaded
        self.scanned_at = float("-inf")  # time.monotonic() of the last listing of packs/

    # -- reading -----------------------------------------------------------------

    def get(self, digest: bytes) -> Location | None:
        return self._map.get(digest)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._map

    def __len__(self) -> int:
        return len(self._map)

    def packs(self) -> dict[str, list[PackEntry]]:
        with self._lock:
            raw = dict(self._packs)
        return {p: decode_entries(b, len(b) // ENTRY.size) for p, b in raw.items()}

    def pack_count(self) -> int:
        return len(self._packs)

    def unique_bytes(self) -> int:
        return sum(loc[3] for loc in self._map.values())

    # -- building ----------------------------------------------------------------

    def add_pack(self, pack_id: str, entries: Iterable[PackEntry] | bytes) -> None:
        """Add a pack's entries: PackEntry objects, or encoded as in its header."""
        raw = entries if isinstance(entries, bytes) else encode_header(list(entries))
        with self._lock:
            self._packs[pack_id] = raw
            put = self._map.setdefault
            for digest, offset, stored, size, codec in ENTRY.iter_unpack(raw):
                put(digest, (pack_id, offset, stored, size, codec))

    def load(self) -> None:
        """Read index files, then the headers of packs they do not cover."""
        covered: set[str] = set()
        for info in self._backend.list("index/"):
            if not info.name.endswith(".idx"):
                continue
            try:
                packs = _parse(self._backend.get(info.name))
            except CorruptData as exc:  # the packs still hold the truth
                log.warning("ignoring index file %s: %s", info.name, exc)
                continue
            self._files[info.name] = set(packs)
            for pack_id, entries in packs.items():
                covered.add(pack_id)
                self.add_pack(pack_id, entries)
        present = self.refresh(known=covered)
        for gone in covered - present:  # listed in an index file, deleted by gc since
            self._forget(gone)
        if len(present - covered) > COMPACT_AFTER:
            log.debug("index covers %d of %d packs: compacting", len(covered & present), len(present))
            self.compact()

    def refresh(self, known: set[str] | None = None) -> set[str]:
        """Add packs written since loading; returns every pack id present."""
        known = set(self._packs) if known is None else known
        self.scanned_at = time.monotonic()
        present: set[str] = set()
        for info in self._backend.list("packs/"):
            if not info.name.endswith(".pack"):
                continue
            pack_id = info.name.rsplit("/", 1)[-1].removesuffix(".pack")
            present.add(pack_id)
            if pack_id not in known:
                try:
                    self.add_pack(pack_id, read_header_bytes(self._backend, info.name))
                except CorruptData as exc:
                    log.warning("skipping unreadable pack %s: %s", info.name, exc)
        return present

    def _forget(self, pack_id: str) -> None:
        with self._lock:
            raw = self._packs.pop(pack_id, b"")
            for digest, *_ in ENTRY.iter_unpack(raw):
                loc = self._map.get(digest)
                if loc is not None and loc[0] == pack_id:
                    del self._map[digest]
            # another pack may hold a copy of a forgotten chunk
            for other, es in self._packs.items():
                for digest, offset, stored, size, codec in ENTRY.iter_unpack(es):
                    if digest not in self._map:
                        self._map[digest] = (other, offset, stored, size, codec)

    def drop_packs(self, pack_ids: Iterable[str]) -> None:
        for p in pack_ids:
            self._forget(p)

    def compact(self) -> None:
        """Write one index file for every known pack; delete the files it supersedes."""
        with self._lock:
            packs = dict(self._packs)
            old = dict(self._files)
        body = bytearray(_HEAD.pack(MAGIC, FORMAT, 0, len(packs)))
        for pack_id in sorted(packs):
            raw = packs[pack_id]
            body += _PACK.pack(bytes.fromhex(pack_id), len(raw) // ENTRY.size)
            body += raw
        digest = hash_bytes(body)
        body += digest.raw
        name = f"index/{digest.hex}.idx"
        self._backend.put(name, bytes(body))
        self._files = {name: set(packs)}
        for old_name, covers in old.items():
            if old_name != name and covers <= set(packs):
                self._backend.delete(old_name)


def _parse(data: bytes) -> dict[str, bytes]:
    if len(data) < _HEAD.size + 32 or hash_bytes(data[:-32]).raw != data[-32:]:
        raise CorruptData("checksum mismatch")
    magic, fmt, _, count = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or fmt != FORMAT:
        raise CorruptData(f"not an index file of format {FORMAT}")
    pos = _HEAD.size
    out: dict[str, bytes] = {}
    for _ in range(count):
        raw_id, n = _PACK.unpack_from(data, pos)
        pos += _PACK.size
        out[raw_id.hex()] = data[pos : pos + n * ENTRY.size]
        pos += n * ENTRY.size
    if pos != len(data) - 32:
        raise CorruptData("trailing bytes")
    return out
