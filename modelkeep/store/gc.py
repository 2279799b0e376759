"""gc: delete what no version references; repack packs that are mostly dead.

Order (never lose a live chunk): 1. take the store's exclusive lock (no push
can be in progress, so no push can be relying on a chunk we are about to
remove); 2. write the live chunks of mostly-dead packs into new packs, durably;
3. write an index file for the packs that remain; 4. only then delete old packs
and superseded index files. Packs younger than the grace period are never
touched: a writer that does not take the lock (a server relaying a client's
upload) may still be about to reference them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
import uuid
from typing import TYPE_CHECKING

from modelkeep.store.digest import Digest
from modelkeep.store.packs import PACK_TARGET, PackWriter, pack_name

GC_GENERATION = "locks/gc-generation"  # rewritten by every gc that removes packs

if TYPE_CHECKING:
    from modelkeep.store.chunkstore import ChunkStore, StoreGc

__all__ = ["collect", "REPACK_BELOW"]

REPACK_BELOW = 0.5  # repack a pack when less than this share of its bytes is live


def collect(
    store: ChunkStore, live: set[Digest] | Callable[[], set[Digest]], *, dry_run: bool, grace_seconds: float
) -> StoreGc:
    from modelkeep.store.chunkstore import StoreGc

    backend = store.backend
    with backend.lock(True):
        # computed under the lock: no push can commit a new reference meanwhile
        live_raw = {d.raw for d in (live() if callable(live) else live)}
        store.reset_index()
        idx = store.index
        now = time.time()
        infos = {i.name: i for i in backend.list("packs/") if i.name.endswith(".pack")}
        chunks_deleted = freed = young = 0
        kept_copy: set[bytes] = set()  # live chunks already kept in some pack
        to_delete: list[str] = []
        to_repack: list[tuple[str, list]] = []
        for pack_id, entries in sorted(idx.packs().items()):
            info = infos.get(pack_name(pack_id))
            if info is None:
                continue
            live_entries = []
            for e in entries:
                if e.digest in live_raw and e.digest not in kept_copy:
                    live_entries.append(e)
            dead = len(entries) - len(live_entries)
            if not dead:
                kept_copy.update(e.digest for e in live_entries)
                continue
            if info.mtime > now - grace_seconds:
                young += 1
                kept_copy.update(e.digest for e in live_entries)
                continue
            live_bytes = sum(e.stored for e in live_entries)
            body = sum(e.stored for e in entries)
            if not live_entries:
                to_delete.append(pack_id)
                chunks_deleted += len(entries)
                freed += info.size
            elif live_bytes < REPACK_BELOW * body:
                to_repack.append((pack_id, live_entries))
                kept_copy.update(e.digest for e in live_entries)
                chunks_deleted += dead
                freed += info.size - live_bytes
            else:
                kept_copy.update(e.digest for e in live_entries)
        if dry_run:
            return StoreGc(len(to_delete), len(to_repack), chunks_deleted, freed, young, True)
        new_packs = []
        writer: PackWriter | None = None
        for pack_id, entries in to_repack:
            for e in entries:
                # verify before copying: a repack must never launder a corrupt chunk
                store.read_chunk(Digest(e.digest))
                blob = backend.get_range(pack_name(pack_id), e.offset, e.stored)
                if writer is None:
                    writer = PackWriter(backend)
                writer.add(e.digest, e.codec, [blob], e.raw)
                if writer.size >= PACK_TARGET:
                    new_packs.append(writer.seal())
                    writer = None
        if writer is not None:
            new_packs.append(writer.seal())
        for pack_id, entries in new_packs:
            idx.add_pack(pack_id, entries)
        gone = to_delete + [p for p, _ in to_repack]
        idx.drop_packs(gone)
        idx.compact()  # the index must stop naming a pack before the pack goes
        if gone:  # sessions that loaded their index earlier must reload it
            backend.put(GC_GENERATION, uuid.uuid4().hex.encode())
        for pack_id in gone:
            backend.delete(pack_name(pack_id))
        _sweep_temp(store, now - grace_seconds)
        backend.sweep_incomplete(now - grace_seconds)
        return StoreGc(len(to_delete), len(to_repack), chunks_deleted, freed, young, False)


def _sweep_temp(store: ChunkStore, before: float) -> None:
    """Remove temp files left by pushes that were killed."""
    tmpdir = store.backend.local_temp_dir()
    if not tmpdir or not os.path.isdir(tmpdir):
        return
    for entry in os.scandir(tmpdir):
        try:
            if entry.is_file() and entry.stat().st_mtime < before:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
