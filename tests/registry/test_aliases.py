"""Aliases (set, move, remove, history, alias_at, compare-and-set) and tags with history."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from modelkeep.errors import (
    AliasNotFound,
    ConflictError,
    InvalidInput,
    InvalidName,
    InvalidRef,
    TagNotFound,
    VersionNotFound,
)
from modelkeep.registry.embedded import EmbeddedRegistry

from .conftest import MakeTree


@pytest.fixture
def fraud(registry: EmbeddedRegistry, make_tree: MakeTree) -> EmbeddedRegistry:
    src = make_tree({"w.bin": b"w"})
    for i in range(3):
        registry.push(src, "fraud", params={"i": i})  # 1.0.0, 1.0.1, 1.0.2
    registry.push(make_tree({"x": "y"}, name="other"), "other")
    return registry


def _tick() -> datetime:
    """An instant strictly between two changes (timestamps have microsecond resolution)."""
    time.sleep(0.002)
    at = datetime.now(UTC)
    time.sleep(0.002)
    return at


def test_set_move_remove_and_history(fraud: EmbeddedRegistry) -> None:
    before = _tick()
    m1 = fraud.set_alias("fraud", "production", "1.0.0", reason="first release")
    assert (m1.alias, m1.version, m1.previous, m1.actor, m1.reason) == ("production", "1.0.0", None, "tester", "first release")
    t1 = _tick()
    m2 = fraud.set_alias("fraud", "production", "fraud@1.0.2", reason="better auc")
    assert (m2.version, m2.previous) == ("1.0.2", "1.0.0")
    fraud.set_alias("fraud", "staging", "latest")
    t2 = _tick()
    removed = fraud.remove_alias("fraud", "production", reason="incident")
    assert (removed.version, removed.previous) == (None, "1.0.2")
    t3 = _tick()

    assert [(a.name, a.version) for a in fraud.aliases("fraud")] == [("staging", "1.0.2")]
    history = fraud.alias_history("fraud", "production")
    assert [(m.previous, m.version, m.reason) for m in history] == [
        (None, "1.0.0", "first release"),
        ("1.0.0", "1.0.2", "better auc"),
        ("1.0.2", None, "incident"),
    ]
    assert len(fraud.alias_history("fraud")) == 4
    assert fraud.alias_at("fraud", "production", before) is None
    assert fraud.alias_at("fraud", "production", t1) == "1.0.0"
    assert fraud.alias_at("fraud", "production", t2) == "1.0.2"
    assert fraud.alias_at("fraud", "production", t3) is None
    assert fraud.alias_at("fraud", "production", m2.at) == "1.0.2"  # at or before: inclusive
    with pytest.raises(InvalidInput, match="timezone-aware"):
        fraud.alias_at("fraud", "production", datetime.now())
    with pytest.raises(AliasNotFound):
        fraud.remove_alias("fraud", "production")
    with pytest.raises(AliasNotFound):
        fraud.get("fraud@production")


def test_compare_and_set(fraud: EmbeddedRegistry) -> None:
    fraud.set_alias("fraud", "production", "1.0.0", expected="")
    with pytest.raises(ConflictError, match="already points at 1.0.0"):
        fraud.set_alias("fraud", "production", "1.0.1", expected="")
    with pytest.raises(ConflictError, match="points at 1.0.0, expected 1.0.1"):
        fraud.set_alias("fraud", "production", "1.0.2", expected="1.0.1")
    assert fraud.set_alias("fraud", "production", "1.0.2", expected="1.0.0").version == "1.0.2"
    with pytest.raises(ConflictError, match="does not exist, expected 1.0.0"):
        fraud.set_alias("fraud", "canary", "1.0.2", expected="1.0.0")
    assert fraud.alias_target("fraud", "production").version == "1.0.2"


def test_alias_refusals(fraud: EmbeddedRegistry) -> None:
    for reserved in ("latest", "1.0.0", "v2", "blake3x"):
        with pytest.raises(InvalidName, match="reserved"):
            fraud.set_alias("fraud", reserved, "1.0.0")
    with pytest.raises(VersionNotFound):
        fraud.set_alias("fraud", "production", "7.0.0")
    with pytest.raises(InvalidRef, match="not a version of 'fraud'"):
        fraud.set_alias("fraud", "production", "other@1.0.0")
    assert fraud.aliases("fraud") == [] and fraud.alias_history("fraud") == []


def test_tags_with_history(fraud: EmbeddedRegistry) -> None:
    c1 = fraud.set_tag("fraud@1.0.1", "approved-by", "alice", reason="review")
    assert (c1.value, c1.previous, c1.version.version) == ("alice", None, "1.0.1")
    fraud.set_tag("fraud@1.0.1", "approved-by", "bob")
    fraud.set_tag("fraud@1.0.1", "ticket", "OPS-1")
    assert fraud.get("fraud@1.0.1").tags == {"approved-by": "bob", "ticket": "OPS-1"}
    removed = fraud.set_tag("fraud@1.0.1", "ticket", None, reason="closed")
    assert (removed.value, removed.previous) == (None, "OPS-1")
    assert fraud.get("fraud@1.0.1").tags == {"approved-by": "bob"}
    assert [(c.key, c.previous, c.value) for c in fraud.tag_history("fraud@1.0.1")] == [
        ("approved-by", None, "alice"),
        ("approved-by", "alice", "bob"),
        ("ticket", None, "OPS-1"),
        ("ticket", "OPS-1", None),
    ]
    assert len(fraud.tag_history("fraud@1.0.1", "approved-by")) == 2
    with pytest.raises(TagNotFound):
        fraud.set_tag("fraud@1.0.1", "ticket", None)
    with pytest.raises(InvalidName):
        fraud.set_tag("fraud@1.0.1", "Bad Key", "x")


def test_tags_at_push(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"w": "1"})
    v = registry.push(src, "fraud", tags={"owner": "risk"})
    assert v.tags == {"owner": "risk"}
    same = registry.push(src, "fraud", tags={"owner": "fraud-team"})  # no new version; tag updated
    assert same.version == "1.0.0" and same.tags == {"owner": "fraud-team"}
    assert [c.value for c in registry.tag_history("fraud@1.0.0")] == ["risk", "fraud-team"]
