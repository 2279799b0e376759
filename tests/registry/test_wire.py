"""registry/wire.py: records to JSON-ready values and back."""

from __future__ import annotations

import json
import types
from datetime import UTC, datetime

import pytest

from modelkeep.registry.types import Edge, EdgeType, Kind, Stage, Version, VersionKey
from modelkeep.registry.wire import from_wire, to_wire
from modelkeep.store.digest import Digest

D = Digest.parse("blake3:" + "ab" * 32)


def _version() -> Version:
    return Version(
        artifact="team/m",
        version="1.2.3",
        kind=Kind.MODEL,
        digest=D,
        files_digest=D,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        author="alice",
        message="why",
        params={"lr": 0.1, "layers": [1, 2], "nested": {"a": None, "b": True}},
        metrics={"auc": 0.9},
        provenance={"packages": {f"p{i}": f"{i}.0" for i in range(100)}, "seed": 7},
        size=10,
        file_count=1,
        new_bytes=10,
        edges=(Edge(EdgeType.DERIVED_FROM, VersionKey("team/m", "1.2.3"), VersionKey("team/base", "1.0.0")),),
        tags={"k": "v"},
        aliases=("production",),
        signature=None,
        stage=Stage.PRODUCTION,
    )


def test_a_version_travels_as_json_and_comes_back_equal() -> None:
    v = _version()
    wired = to_wire(v)
    assert wired["digest"] == str(D) and wired["kind"] == "model" and wired["stage"] == "production"
    assert wired["created_at"] == "2026-01-02T03:04:05+00:00"
    assert wired["edges"] == [
        {"type": "derived_from", "source": {"artifact": "team/m", "version": "1.2.3"},
         "target": {"artifact": "team/base", "version": "1.0.0"}}
    ]
    assert wired["aliases"] == ["production"]
    text = json.dumps(wired)
    assert from_wire(Version, json.loads(text)) == v


def test_plain_values_and_containers() -> None:
    assert to_wire({1: (D, b"\x00\x01")}) == {"1": [str(D), "AAE="]}
    assert to_wire(types.MappingProxyType({"a": frozenset({2})})) == {"a": [2]}
    assert to_wire([None, True, 1, 1.5, "s", Kind.DATASET]) == [None, True, 1, 1.5, "s", "dataset"]
    with pytest.raises(TypeError, match="cannot send"):
        to_wire(object())
