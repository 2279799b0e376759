"""Reading single files of a version without pulling the whole version.

An embedded registry exposes its chunk store, so a file can be read chunk by
chunk (each chunk verified) from the version's manifest. Any other Registry
implementation falls back to pulling the version into a temporary folder.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelkeep.errors import InvalidInput
from modelkeep.registry.api import Registry
from modelkeep.registry.types import Version
from modelkeep.store.manifest import FileEntry, Manifest

__all__ = ["manifest_of", "read_bytes", "local_copy"]


def manifest_of(registry: Registry, ref: str) -> tuple[Version, Manifest] | None:
    """The version and its manifest when ``registry`` is embedded; None for other implementations."""
    from modelkeep.registry.embedded import EmbeddedRegistry
    from modelkeep.registry.names import VersionRef

    if not isinstance(registry, EmbeddedRegistry):
        return None
    parsed = VersionRef.parse(ref)
    # The manifest is the registry's own record; reading it in the registry's unit of work keeps one transaction.
    return registry._uow.read(lambda db: registry._with_manifest(db, parsed))  # noqa: SLF001


def entry_of(manifest: Manifest, path: str) -> FileEntry | None:
    for e in manifest:
        if e.path == path:
            return e
    return None


def read_bytes(registry: Registry, ref: str, path: str) -> bytes:
    """The verified bytes of one file of ``ref``. Raises InvalidInput when the version has no such file."""
    found = manifest_of(registry, ref)
    if found is not None:
        from modelkeep.registry.embedded import EmbeddedRegistry

        assert isinstance(registry, EmbeddedRegistry)
        version, manifest = found
        entry = entry_of(manifest, path)
        if entry is None:
            raise InvalidInput(f"{version.ref} has no file {path!r}")
        parts = [bytes(registry.store.read_chunk(c.digest)) for c in entry.chunks]
        return b"".join(parts)
    with tempfile.TemporaryDirectory(prefix="mk-read-") as tmp:
        v = registry.pull(ref, tmp)
        target = Path(tmp, path)
        if not target.is_file():
            raise InvalidInput(f"{v.ref} has no file {path!r}")
        return target.read_bytes()


@contextlib.contextmanager
def local_copy(registry: Registry, ref: str) -> Iterator[tuple[Version, Path]]:
    """Pull ``ref`` into a temporary folder, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="mk-pull-") as tmp:
        v = registry.pull(ref, tmp)
        yield v, Path(tmp)
