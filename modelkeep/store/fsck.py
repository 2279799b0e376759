"""fsck: re-hash every chunk of every pack, then check each manifest against what survived.

Problems are returned as data (StoreProblem); nothing is repaired or deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import blake3

from modelkeep.errors import ChunkNotFound, CorruptData
from modelkeep.store import codec
from modelkeep.store.digest import Digest
from modelkeep.store.manifest import Manifest
from modelkeep.store.packs import read_header

if TYPE_CHECKING:
    from modelkeep.store.chunkstore import ChunkStore, StoreFsck

__all__ = ["check"]


def check(store: ChunkStore, manifests: Iterable[Manifest], *, progress: Callable[[int], None] | None = None) -> StoreFsck:
    from modelkeep.store.chunkstore import StoreFsck, StoreProblem

    backend = store.backend
    known = store.index.packs()  # what the index files remember of each pack, if anything
    problems: list[StoreProblem] = []
    good: dict[bytes, int] = {}  # chunk digest -> raw size, for chunks verified intact
    bad: dict[bytes, StoreProblem] = {}
    packs = chunks = nbytes = 0
    for info in sorted(backend.list("packs/"), key=lambda i: i.name):
        if not info.name.endswith(".pack"):
            continue
        packs += 1
        pack_id = info.name.rsplit("/", 1)[-1].removesuffix(".pack")
        try:
            entries = read_header(backend, info.name)
        except (CorruptData, ChunkNotFound) as exc:
            problems.append(StoreProblem("bad_pack", str(exc), pack=pack_id))
            # the chunks the index says lived there are corrupt too, so the files
            # using them can be named (unless an intact copy exists elsewhere)
            for e in known.get(pack_id, []):
                bad.setdefault(e.digest, StoreProblem(
                    "corrupt_chunk", f"chunk {Digest(e.digest)} is in unreadable pack {pack_id}",
                    pack=pack_id, chunk=Digest(e.digest),
                ))
            continue
        with backend.open_reader(info.name) as f:
            for e in sorted(entries, key=lambda e: e.offset):
                f.seek(e.offset)
                blob = f.read(e.stored)
                chunks += 1
                nbytes += e.stored
                try:
                    if len(blob) != e.stored:
                        raise CorruptData("pack is truncated")
                    data = codec.decode(e.codec, blob, e.raw)
                    if blake3.blake3(data).digest() != e.digest:
                        raise CorruptData("bytes do not match the digest")
                except CorruptData as exc:
                    if e.digest not in good:
                        bad[e.digest] = StoreProblem(
                            "corrupt_chunk", f"chunk {Digest(e.digest)} in pack {pack_id}: {exc}",
                            pack=pack_id, chunk=Digest(e.digest),
                        )
                    continue
                good[e.digest] = e.raw
                bad.pop(e.digest, None)  # an intact copy in another pack makes it good
                if progress:
                    progress(e.stored)
    store.reset_index()
    seen_files: set[Digest] = set()
    reported: set[bytes] = set()
    for m in manifests:
        for f in m.files:
            if f.digest in seen_files:
                continue
            seen_files.add(f.digest)
            for c in f.chunks:
                d = c.digest.raw
                if d in good:
                    if good[d] != c.size:
                        problems.append(StoreProblem(
                            "size_mismatch", f"chunk {c.digest} has {good[d]} bytes, the manifest says {c.size}",
                            chunk=c.digest, file=f.digest,
                        ))
                    continue
                if d in reported:  # one line per chunk; the registry names every file using it
                    continue
                reported.add(d)
                if d in bad:
                    p = bad[d]
                    problems.append(StoreProblem(p.kind, p.detail, pack=p.pack, chunk=p.chunk, file=f.digest))
                else:
                    problems.append(StoreProblem(
                        "missing_chunk", f"chunk {c.digest} is in no pack", chunk=c.digest, file=f.digest
                    ))
    for d, p in bad.items():  # corrupt chunks no manifest references still deserve a line
        if d not in reported:
            problems.append(p)
    return StoreFsck(packs, chunks, nbytes, tuple(problems))

