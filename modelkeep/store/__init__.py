"""Content-addressed bytes: chunking, hashing, packs, index, backends.

Knows nothing of models, SQL or HTTP. See docs/storage-format.md for the layout.

Invariants (restic style; *must* is never broken, *should* is a goal):

- A chunk is named by the BLAKE3 of its decoded bytes; a pack by the BLAKE3 of
  its header; a file by the BLAKE3 of its content; a manifest by the BLAKE3 of
  its canonical listing. Objects are never rewritten under the same name.
- A pack *must* be complete and fsynced, renamed into place, and its directory
  fsynced, before any of its chunks enters the index.
- A manifest (a version) *must* only reference chunks that are durable: the
  registry commits a version only after ``UploadSession.commit()`` returned.
- Readers *must* verify every chunk's digest before handing bytes out; a file
  appears under its final name only once all its chunks were verified.
- gc *must* hold the exclusive lock (no push in progress), *must* write repacked
  chunks and the new index before deleting old packs, and *must not* touch
  packs younger than the grace period.
- The index is a cache: it *must* be rebuildable from the packs alone.
- A push *should* store every distinct chunk once across files, versions and
  artifacts; concurrent pushes may both store a chunk, and gc keeps one copy.
"""

from modelkeep.store.chunkstore import (
    ChunkStore,
    StoreFsck,
    StoreGc,
    StoreProblem,
    StoreStats,
    UploadSession,
    open_store,
)
from modelkeep.store.digest import Digest, hash_bytes
from modelkeep.store.manifest import ChunkRef, FileEntry, Manifest, normalize_path

__all__ = [
    "ChunkStore",
    "UploadSession",
    "StoreStats",
    "StoreProblem",
    "StoreFsck",
    "StoreGc",
    "open_store",
    "Digest",
    "hash_bytes",
    "ChunkRef",
    "FileEntry",
    "Manifest",
    "normalize_path",
]
