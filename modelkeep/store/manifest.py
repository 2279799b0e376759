"""Manifests: which files a version holds, and the chunks each file is made of.

A manifest maps relative paths to file entries (file digest, size, chunk list).
Its digest covers paths, file digests, sizes and the executable bit.

A file's digest (manifest format 2) is computed from its chunk list: BLAKE3, in
its derive-key mode with context ``FILE_DIGEST_CONTEXT``, of the file's chunk
digests (32 bytes each, in order) followed by the chunks' lengths (8 bytes
each, little-endian). Chunk digests are BLAKE3 of the chunk's bytes, so the file
digest binds every byte of the file, and anyone holding a manifest can check it
without the bytes: a client cannot commit a file digest that does not match the
chunks it names, and a push hashes each byte once, not twice (chunk digests and
a whole-file digest). Manifests of format 1 carry the plain BLAKE3 of the whole
file instead; they stay readable as they are.

Paths are validated once, here: relative, POSIX separators, normalized, no
``..``, no empty or ``.`` components, no NUL or backslash, no absolute paths.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3

from modelkeep.errors import InvalidInput, InvalidPath
from modelkeep.store.digest import Digest, hash_bytes

__all__ = [
    "ChunkRef",
    "FileEntry",
    "Manifest",
    "Destination",
    "normalize_path",
    "file_digest",
    "FILE_DIGEST_CONTEXT",
    "FORMAT",
    "MAX_PATH_LENGTH",
]

MAX_PATH_LENGTH = 4096
FORMAT = 2  # what new manifests are written as; 1 (whole-file digests) is still read
FILE_DIGEST_CONTEXT = "modelkeep 2026-11-24 file digest: chunk digests, then chunk lengths"


def normalize_path(path: str) -> str:
    """Return the canonical form of a manifest path or raise InvalidPath."""
    if not isinstance(path, str) or not path:
        raise InvalidPath("empty path")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidPath(f"path longer than {MAX_PATH_LENGTH} characters")
    if "\x00" in path:
        raise InvalidPath(f"path contains a NUL byte: {path!r}")
    if "\\" in path:
        raise InvalidPath(f"path contains a backslash: {path!r}")
    if path.startswith("/"):
        raise InvalidPath(f"absolute path not allowed: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidPath(f"path names no file: {path!r}")
    if any(p == ".." for p in parts):
        raise InvalidPath(f"path leaves the tree: {path!r}")
    if len(parts[0]) == 2 and parts[0][1] == ":":
        raise InvalidPath(f"drive-letter path not allowed: {path!r}")
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class ChunkRef:
    digest: Digest
    size: int


def file_digest(chunks: Sequence[ChunkRef]) -> Digest:
    """The digest of the file whose bytes are ``chunks`` concatenated (see the module's docstring)."""
    h = blake3.blake3(derive_key_context=FILE_DIGEST_CONTEXT)
    h.update(b"".join([c.digest.raw for c in chunks]))
    lengths = array("Q", [c.size for c in chunks])  # 8 bytes on every platform CPython builds for
    if sys.byteorder == "big":
        lengths.byteswap()
    h.update(lengths.tobytes())
    return Digest(h.digest())


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a manifest. ``chunks`` concatenated give the file's bytes."""

    path: str
    digest: Digest
    size: int
    chunks: tuple[ChunkRef, ...]
    executable: bool = False

    @classmethod
    def of_chunks(cls, path: str, chunks: Sequence[ChunkRef], executable: bool = False) -> FileEntry:
        """The entry of a file made of ``chunks``: its size and digest follow from them."""
        chunks = tuple(chunks)
        return cls(normalize_path(path), file_digest(chunks), sum(c.size for c in chunks), chunks, executable)

    def with_path(self, path: str) -> FileEntry:
        return FileEntry(normalize_path(path), self.digest, self.size, self.chunks, self.executable)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "digest": str(self.digest),
            "size": self.size,
            "executable": self.executable,
            # chunk list as "hex:size" strings: compact, and still plain JSON
            "chunks": _chunk_strings(self.chunks),
        }

    @classmethod
    def from_json(cls, data: dict, format: int = FORMAT) -> FileEntry:
        """An entry from its JSON; in format 2, its digest must be its chunk list's (InvalidInput if not)."""
        try:
            entry = cls(
                path=normalize_path(data["path"]),
                digest=Digest.parse(data["digest"]),
                size=int(data["size"]),
                chunks=_parse_chunks(data["chunks"]),
                executable=bool(data.get("executable", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"malformed manifest entry: {exc}") from None
        if sum(c.size for c in entry.chunks) != entry.size or entry.size < 0:
            raise InvalidInput(f"manifest entry {entry.path!r}: chunk sizes do not add up to {entry.size}")
        if format >= 2 and file_digest(entry.chunks) != entry.digest:
            raise InvalidInput(f"manifest entry {entry.path!r}: its digest is not the digest of its chunk list")
        return entry


def _chunk_strings(chunks: Sequence[ChunkRef]) -> list[str]:
    hexes = b"".join([c.digest.raw for c in chunks]).hex()
    return [f"{hexes[i : i + 64]}:{c.size}" for i, c in zip(range(0, len(hexes), 64), chunks)]


def _parse_chunks(items: object) -> tuple[ChunkRef, ...]:
    """A chunk list from its JSON (``"<64 lowercase hex>:<size>"`` each). Raises ValueError, TypeError.

    The digests are decoded all at once: one by one, the ~16k chunks of a GiB
    cost a pull ~25 ms before its first byte.
    """
    if not isinstance(items, list):
        raise TypeError("chunks must be a list")
    hexes = "".join([item[:64] for item in items])
    if any(item[64:65] != ":" for item in items):
        raise ValueError("a chunk is not written as '<digest hex>:<size>'")
    sizes = [int(item[65:]) for item in items]
    raw = bytes.fromhex(hexes)
    if raw.hex() != hexes:  # upper case or spaces decode too, but are not how a digest is written
        raise ValueError("a chunk digest is not 64 lowercase hex digits")
    if sizes and min(sizes) < 0:
        raise ValueError("a chunk size is negative")
    return tuple(ChunkRef(Digest(raw[i : i + 32]), n) for i, n in zip(range(0, len(raw), 32), sizes))


@dataclass(frozen=True, slots=True)
class Manifest:
    """An immutable, path-sorted list of files; ``format`` says how its file digests are defined."""

    files: tuple[FileEntry, ...]
    format: int = FORMAT

    @classmethod
    def of(cls, entries: Iterable[FileEntry], format: int = FORMAT) -> Manifest:
        by_path: dict[str, FileEntry] = {}
        for e in entries:
            if e.path in by_path:
                raise InvalidPath(f"duplicate path in manifest: {e.path!r}")
            by_path[e.path] = e
        return cls(tuple(by_path[p] for p in sorted(by_path)), format)

    @property
    def digest(self) -> Digest:
        listing = [[f.path, str(f.digest), f.size, f.executable] for f in self.files]
        return hash_bytes(_canonical(listing))

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def __iter__(self) -> Iterator[FileEntry]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def chunk_digests(self) -> set[Digest]:
        return {c.digest for f in self.files for c in f.chunks}

    def to_doc(self) -> dict:
        """The manifest as JSON values (``{"format": 2, "files": [...]}``), as ``from_doc`` reads them."""
        return {"format": self.format, "files": [f.to_json() for f in self.files]}

    def to_bytes(self) -> bytes:
        return _canonical(self.to_doc())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise InvalidInput(f"malformed manifest: {exc}") from None
        return cls.from_doc(doc)

    @classmethod
    def from_doc(cls, doc: object) -> Manifest:
        """A manifest from its parsed JSON (``{"format": 2, "files": [...]}``), checked as ``from_bytes`` does.

        Format 2 file digests are checked against their chunk lists. Format 1
        (whole-file digests, which only the bytes could confirm) is read as stored.
        """
        try:
            fmt = doc.get("format")  # type: ignore[union-attr]
            if fmt not in (1, 2) or isinstance(fmt, bool):
                raise InvalidInput(f"unsupported manifest format {fmt!r}")
            return cls.of((FileEntry.from_json(f, fmt) for f in doc["files"]), fmt)  # type: ignore[index]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"malformed manifest: {exc}") from None


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Destination:
    """The folder a pull writes into; every file lands inside it, whatever symlinks it holds.

    Manifest paths are already relative and normalized; what remains is a symlink
    under the folder (made by someone else, or left by an earlier pull) that would
    lead a write outside it, which ``target`` refuses.
    """

    def __init__(self, dest: str | Path) -> None:
        self.root = Path(dest).expanduser().absolute()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidPath(f"cannot create {self.root}: {exc.strerror}") from None
        self._real = self.root.resolve()

    def target(self, path: str) -> Path:
        """Where the manifest file ``path`` goes (its parent folders created). Raises InvalidPath."""
        target = self.root / normalize_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        parent = target.parent.resolve()
        if parent != self._real and self._real not in parent.parents:
            raise InvalidPath(f"refusing to write {path}: a symlink under {self.root} leads outside it")
        return target
