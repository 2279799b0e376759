"""Manifests of format 1 (whole-file digests) beside format 2 (digests from chunk lists)."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

import modelkeep
from modelkeep.errors import InvalidInput
from modelkeep.registry.diff import file_changes
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.store.digest import Digest
from modelkeep.store.manifest import FileEntry, Manifest

from .conftest import MakeTree


def _as_format_1(m: Manifest, contents: dict[str, bytes]) -> Manifest:
    """``m`` as a modelkeep of format 1 wrote it: the same chunks, plain BLAKE3 file digests."""
    return Manifest.of(
        [FileEntry(f.path, Digest(blake3.blake3(contents[f.path]).digest()), f.size, f.chunks) for f in m], format=1
    )


def test_files_compare_by_chunk_lists_across_formats(make_tree: MakeTree) -> None:
    same, edited = os.urandom(200_000), os.urandom(200_000)
    new = modelkeep.digest(make_tree({"a.bin": same, "b.bin": edited}))
    old = _as_format_1(modelkeep.digest(make_tree({"a.bin": same, "b.bin": edited[:-1] + b"x"}, name="old")),
                       {"a.bin": same, "b.bin": edited[:-1] + b"x"})  # fmt: skip
    assert all(o.digest != n.digest for o, n in zip(old, new))  # the digests alone would call both changed
    added, removed, changed, unchanged = file_changes(old, new)
    assert (added, removed, [c.path for c in changed], unchanged) == ((), (), ["b.bin"], 1)


def test_new_versions_are_never_format_1(tmp_path: Path, make_tree: MakeTree) -> None:
    # a format-1 file digest cannot be checked without the bytes: accepting one would let a
    # commit name bytes it never uploaded
    blob = os.urandom(100_000)
    reg = EmbeddedRegistry(f"sqlite:///{tmp_path / 'r.db'}", f"file://{tmp_path / 'store'}", "tester")
    try:
        v = reg.push(make_tree({"w.bin": blob}), "fraud")
        _, m = reg.manifest(v.ref)
        assert m.format == 2
        with pytest.raises(InvalidInput, match="format 1 is read, not written"):
            reg.commit_manifest("fraud", _as_format_1(m, {"w.bin": b"not these bytes"}))
        assert [x.version for x in reg.versions("fraud")] == ["1.0.0"]
    finally:
        reg.close()
