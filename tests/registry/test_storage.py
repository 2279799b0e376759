"""du, fsck and gc through the registry, on a real local store."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelkeep.errors import InvalidInput, VersionNotFound
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.store.digest import Digest
from modelkeep.store.manifest import ChunkRef, file_digest

from .conftest import MakeTree


@pytest.fixture
def local(tmp_path: Path) -> Iterator[EmbeddedRegistry]:
    reg = EmbeddedRegistry(f"sqlite:///{tmp_path / 'r.db'}", f"file://{tmp_path / 'store'}", "tester")
    yield reg
    reg.close()


def test_du_counts_logical_and_dedups(local: EmbeddedRegistry, make_tree: MakeTree) -> None:
    blob = os.urandom(300_000)
    local.push(make_tree({"w.bin": blob}, name="a"), "fraud")
    local.push(make_tree({"w.bin": blob}, name="b"), "fraud", params={"x": 1})
    local.push(make_tree({"copy.bin": blob}, name="c"), "team/other")
    du = local.du()
    assert du.logical_bytes == 900_000
    assert du.unique_bytes == 300_000
    assert [(a.artifact, a.versions, a.logical_bytes) for a in du.artifacts] == [
        ("fraud", 2, 600_000),
        ("team/other", 1, 300_000),
    ]
    assert du.dedup_ratio > 2.5


def test_fsck_names_the_versions_and_files_a_problem_affects(
    local: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path
) -> None:
    local.push(make_tree({"model.bin": os.urandom(50_000)}), "fraud")
    assert local.fsck().ok
    packs = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and p.suffix == ".pack"]
    assert packs, "expected the store to write pack files"
    data = bytearray(packs[0].read_bytes())
    data[100] ^= 0xFF  # inside the first chunk's bytes
    packs[0].write_bytes(bytes(data))
    report = local.fsck()
    assert not report.ok
    assert any("fraud@1.0.0:model.bin" in p.affects for p in report.problems), report.problems


@pytest.mark.parametrize("tamper", ["file_digest", "chunk_list", "not_json"])
def test_fsck_reports_a_manifest_that_does_not_check_out_and_gc_stops(
    local: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path, tamper: str
) -> None:
    local.push(make_tree({"model.bin": os.urandom(400_000)}), "fraud")  # several chunks
    local.push(make_tree({"other.bin": os.urandom(50_000)}, name="b"), "team/other")
    db = sqlite3.connect(tmp_path / "r.db")
    digest = str(local.get("fraud").files_digest)
    (body,) = db.execute("SELECT body FROM manifests WHERE digest = ?", (digest,)).fetchone()
    doc = json.loads(body)
    if tamper == "file_digest":  # the file digest no longer follows from the chunks
        doc["files"][0]["digest"] = "blake3:" + "ab" * 32
    elif tamper == "chunk_list":  # consistent file, but not the listing the manifest is stored under
        assert len(doc["files"][0]["chunks"]) > 1
        doc["files"][0]["chunks"] = doc["files"][0]["chunks"][::-1]
        refs = [ChunkRef(Digest.from_hex(h), int(n)) for h, n in (c.split(":") for c in doc["files"][0]["chunks"])]
        doc["files"][0]["digest"] = str(file_digest(refs))
    new = b"{broken" if tamper == "not_json" else json.dumps(doc).encode()
    with db:
        db.execute("UPDATE manifests SET body = ? WHERE digest = ?", (new, digest))
    db.close()
    report = local.fsck()
    assert not report.ok
    [problem] = report.problems
    assert problem.kind == "bad_manifest" and problem.affects == ("fraud@1.0.0",), problem
    with pytest.raises(InvalidInput):  # what it references is unknown: nothing may be collected
        local.gc(grace_seconds=0)


def test_gc_keeps_what_versions_reference_and_frees_the_rest(
    local: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path
) -> None:
    kept = os.urandom(100_000)
    local.push(make_tree({"w.bin": kept}, name="kept"), "fraud")
    # A push whose commit step fails leaves durable chunks that no version references.
    with pytest.raises(VersionNotFound):
        local.push(make_tree({"o.bin": os.urandom(100_000)}, name="orphan"), "other", derived_from="fraud@9.0.0")
    dry = local.gc(dry_run=True, grace_seconds=0)
    assert dry.dry_run and dry.bytes_freed > 0
    report = local.gc(grace_seconds=0)
    assert report.chunks_deleted > 0 and not report.dry_run
    assert local.fsck().ok
    local.pull("fraud", tmp_path / "out")
    assert (tmp_path / "out" / "w.bin").read_bytes() == kept
