"""Push and pull: round trip, immutability and version bumps, refused inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelkeep.errors import InvalidInput, InvalidName, InvalidPath, InvalidVersion, KindMismatch, VersionExists
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.types import Kind

from .conftest import MakeTree

FILES = {"model.bin": os.urandom(200_000), "config.json": '{"layers": 4}', "tok/vocab.txt": "a\nb\n"}


def test_push_pull_round_trip_of_a_directory(registry: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path) -> None:
    src = make_tree(FILES)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    v = registry.push(src, "team/fraud", kind="model", message="first", params={"lr": 0.1}, metrics={"auc": 0.9})
    assert (v.artifact, v.version, v.kind, v.author, v.message) == ("team/fraud", "1.0.0", Kind.MODEL, "tester", "first")
    assert v.file_count == 4 and v.size == sum(len(c) for c in FILES.values()) + len("#!/bin/sh\n")
    assert v.new_bytes > 0
    assert v.created_at.tzinfo is not None
    assert v.provenance["python"]["version"] and "packages" in v.provenance
    assert registry.files("team/fraud@1.0.0") == sorted(
        [("config.json", 13), ("model.bin", 200_000), ("run.sh", 10), ("tok/vocab.txt", 4)]
    )

    out = tmp_path / "out"
    pulled = registry.pull("team/fraud", out)
    assert pulled.digest == v.digest
    for rel, content in FILES.items():
        data = (out / rel).read_bytes()
        assert data == (content.encode() if isinstance(content, str) else content)
    assert os.access(out / "run.sh", os.X_OK)


def test_push_single_file_is_named_by_its_basename(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"weights.safetensors": b"\x00" * 100})
    v = registry.push(src / "weights.safetensors", "fraud")
    assert registry.files(v.ref) == [("weights.safetensors", 100)]


def test_immutability_and_bumps(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"w.bin": b"one"})
    v1 = registry.push(src, "fraud", params={"lr": 0.1})
    assert v1.version == "1.0.0"

    again = registry.push(src, "fraud", params={"lr": 0.1}, message="same again")
    assert again.version == "1.0.0" and again.digest == v1.digest
    assert len(registry.versions("fraud")) == 1

    meta = registry.push(src, "fraud", params={"lr": 0.2})
    assert meta.version == "1.0.1"  # metadata only -> patch
    assert meta.files_digest == v1.files_digest

    (src / "w.bin").write_bytes(b"two")
    files = registry.push(src, "fraud", params={"lr": 0.2})
    assert files.version == "1.1.0"  # files changed -> minor

    major = registry.push(src, "fraud", params={"lr": 0.2}, major=True)
    assert major.version == "2.0.0"

    explicit = registry.push(src, "fraud", params={"lr": 0.3}, version="3.1.0")
    assert explicit.version == "3.1.0"
    with pytest.raises(VersionExists):
        registry.push(src, "fraud", params={"lr": 0.4}, version="2.0.0")
    with pytest.raises(InvalidVersion, match="not higher"):
        registry.push(src, "fraud", params={"lr": 0.4}, version="3.0.5")
    assert [v.version for v in registry.versions("fraud")] == ["3.1.0", "2.0.0", "1.1.0", "1.0.1", "1.0.0"]


def test_kind_mismatch(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"d.csv": "a,b\n1,2\n"})
    registry.push(src, "data/train", kind=Kind.DATASET)
    assert registry.push(src, "data/train", params={"rows": 1}).kind is Kind.DATASET  # kind omitted: kept
    with pytest.raises(KindMismatch, match="holds dataset versions"):
        registry.push(src, "data/train", kind="model", params={"rows": 2})
    with pytest.raises(InvalidInput, match="unknown kind"):
        registry.push(src, "data/other", kind="weights")


def test_symlink_escaping_the_tree_is_refused_by_name(registry: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not publish")
    src = make_tree({"model.bin": b"m"})
    (src / "leak").symlink_to(secret)
    with pytest.raises(InvalidPath, match="leak -> "):
        registry.push(src, "fraud")
    assert registry.artifacts() == []


def test_symlink_inside_the_tree_stores_the_target_content(registry: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path) -> None:
    src = make_tree({"real/w.bin": b"weights"})
    (src / "alias.bin").symlink_to(src / "real" / "w.bin")
    (src / "linked").symlink_to(src / "real", target_is_directory=True)
    v = registry.push(src, "fraud")
    assert registry.files(v.ref) == [("alias.bin", 7), ("linked/w.bin", 7), ("real/w.bin", 7)]
    registry.pull(v.ref, tmp_path / "out")
    assert not (tmp_path / "out" / "alias.bin").is_symlink()
    assert (tmp_path / "out" / "alias.bin").read_bytes() == b"weights"


def test_refused_inputs_leave_nothing(registry: EmbeddedRegistry, make_tree: MakeTree, tmp_path: Path) -> None:
    src = make_tree({"a": "x"})
    with pytest.raises(InvalidName):
        registry.push(src, "Bad Name")
    with pytest.raises(InvalidPath, match="no such file"):
        registry.push(tmp_path / "nope", "fraud")
    with pytest.raises(InvalidPath, match="contains no files"):
        registry.push(make_tree({}, name="empty"), "fraud")
    with pytest.raises(InvalidInput, match="finite numbers"):
        registry.push(src, "fraud", metrics={"loss": float("nan")})
    with pytest.raises(InvalidInput, match="JSON-serializable"):
        registry.push(src, "fraud", params={"f": object()})
    assert registry.artifacts() == []
