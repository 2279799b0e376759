"""Resolving refs: semver, digest prefix, alias, latest; listing versions and artifacts."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from modelkeep.db.engine import normalize_url

from modelkeep.errors import AliasNotFound, AmbiguousRef, ArtifactNotFound, VersionNotFound
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.types import Kind

from .conftest import MakeTree


@pytest.fixture
def three(registry: EmbeddedRegistry, make_tree: MakeTree) -> list:
    src = make_tree({"w.bin": b"w"})
    return [registry.push(src, "team/fraud", kind="model", params={"step": i}) for i in range(3)]


def test_resolve_by_semver_digest_alias_and_latest(registry: EmbeddedRegistry, three: list) -> None:
    v0, v1, v2 = three
    assert [v.version for v in three] == ["1.0.0", "1.0.1", "1.0.2"]
    assert registry.get("team/fraud@1.0.1").digest == v1.digest
    assert registry.get(f"team/fraud@blake3:{v0.digest.hex[:10]}").version == "1.0.0"
    assert registry.get(f"team/fraud@{v2.digest}").version == "1.0.2"
    assert registry.get("team/fraud").version == "1.0.2"
    assert registry.get("team/fraud@latest").version == "1.0.2"
    registry.set_alias("team/fraud", "production", "1.0.1")
    got = registry.get("team/fraud@production")
    assert got.version == "1.0.1" and got.aliases == ("production",)


def test_resolve_errors(registry: EmbeddedRegistry, three: list) -> None:
    with pytest.raises(ArtifactNotFound):
        registry.get("team/nope@1.0.0")
    with pytest.raises(VersionNotFound):
        registry.get("team/fraud@9.9.9")
    with pytest.raises(VersionNotFound):
        registry.get("team/fraud@blake3:000000")
    with pytest.raises(AliasNotFound):
        registry.get("team/fraud@staging")


def test_ambiguous_digest_prefix(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"w.bin": b"w"})
    a = registry.push(src, "fraud", params={"i": 1})
    b = registry.push(src, "fraud", params={"i": 2})
    # Two real digests sharing 6 hex digits would take ~4000 pushes; give b a digest
    # sharing a's first 8 digits instead (the rest still unique).
    ninth = "0" if a.digest.hex[8] != "0" else "1"
    twin = f"blake3:{a.digest.hex[:8]}{ninth}{b.digest.hex[9:]}"
    engine = create_engine(normalize_url(registry.db_url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE versions SET digest = :d WHERE digest = :old"), {"d": twin, "old": str(b.digest)})
    engine.dispose()
    with pytest.raises(AmbiguousRef, match="give more digits"):
        registry.get(f"fraud@blake3:{a.digest.hex[:8]}")
    assert registry.get(f"fraud@blake3:{a.digest.hex[:9]}").version == "1.0.0"


def test_versions_newest_first_with_paging(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"w.bin": b"0"})
    for i in range(12):
        (src / "w.bin").write_bytes(str(i).encode())
        registry.push(src, "fraud", major=(i == 11))
    got = [v.version for v in registry.versions("fraud")]
    assert got[:3] == ["2.0.0", "1.10.0", "1.9.0"] and got[-1] == "1.0.0" and len(got) == 12
    assert [v.version for v in registry.versions("fraud", limit=3, offset=1)] == ["1.10.0", "1.9.0", "1.8.0"]
    with pytest.raises(ArtifactNotFound):
        registry.versions("nope")


def test_artifacts_listing(registry: EmbeddedRegistry, make_tree: MakeTree, three: list) -> None:
    src = make_tree({"d.csv": "x"}, name="data")
    registry.push(src, "data/train", kind="dataset")
    registry.push(src, "solo")
    names = [a.name for a in registry.artifacts()]
    assert names == ["data/train", "solo", "team/fraud"]
    assert [a.name for a in registry.artifacts(namespace="team")] == ["team/fraud"]
    assert [a.name for a in registry.artifacts(kind=Kind.DATASET)] == ["data/train"]
    fraud = registry.artifact("team/fraud")
    assert (fraud.kind, fraud.version_count, fraud.latest, fraud.created_by) == (Kind.MODEL, 3, "1.0.2", "tester")
    with pytest.raises(ArtifactNotFound):
        registry.artifact("team/none")
