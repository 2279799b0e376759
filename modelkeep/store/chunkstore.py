"""ChunkStore: files in, verified files out, every chunk stored once.  (interface; implementation in progress)"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from modelkeep.store.digest import Digest
from modelkeep.store.manifest import FileEntry, Manifest

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class StoreStats:
    packs: int
    chunks: int
    stored_bytes: int  # bytes the packs occupy
    unique_bytes: int  # uncompressed bytes of the distinct chunks


@dataclass(frozen=True, slots=True)
class StoreProblem:
    kind: str  # corrupt_chunk | missing_chunk | bad_pack | bad_file_digest
    detail: str
    pack: str | None = None
    chunk: Digest | None = None
    file: Digest | None = None


@dataclass(frozen=True, slots=True)
class StoreFsck:
    packs_checked: int
    chunks_checked: int
    bytes_checked: int
    problems: tuple[StoreProblem, ...]


@dataclass(frozen=True, slots=True)
class StoreGc:
    packs_deleted: int
    packs_repacked: int
    chunks_deleted: int
    bytes_freed: int
    packs_kept_young: int
    dry_run: bool


class UploadSession:
    """Returned by ChunkStore.session(); a context manager holding the store's push lock."""

    new_bytes: int  # logical bytes of chunks this session stored that were not there before
    total_bytes: int  # logical bytes passed through put_file

    def put_file(self, path: Path, rel: str, *, progress: Progress | None = None) -> FileEntry:
        """Chunk, hash, compress and store the file; returns its entry (path = rel, normalized)."""
        raise NotImplementedError

    def commit(self) -> None:
        """Make every chunk written by this session durable (packs + index fsynced)."""
        raise NotImplementedError

    def __enter__(self) -> "UploadSession":
        return self

    def __exit__(self, *exc: object) -> None:
        """Releases the push lock. Without commit(), unfinished packs are discarded."""


class ChunkStore:
    def session(self) -> UploadSession:
        raise NotImplementedError

    def missing(self, digests: Iterable[Digest]) -> set[Digest]:
        raise NotImplementedError

    def read_file(self, entry: FileEntry, dest: Path, *, progress: Progress | None = None) -> None:
        """Write entry's bytes to dest (temp + rename), verifying each chunk. Raises CorruptData."""
        raise NotImplementedError

    def stats(self) -> StoreStats:
        raise NotImplementedError

    def fsck(self, manifests: Iterable[Manifest], *, progress: Progress | None = None) -> StoreFsck:
        raise NotImplementedError

    def gc(self, live: set[Digest], *, dry_run: bool = False, grace_seconds: float = 3600.0) -> StoreGc:
        """Raises StoreLocked when a push is in progress."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def open_store(url: str) -> ChunkStore:
    """file:///path, memory://name. Unknown schemes raise InvalidURI."""
    raise NotImplementedError
