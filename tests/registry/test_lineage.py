"""Lineage across artifacts (transitive, both directions, depth bound) and diff."""

from __future__ import annotations

import pytest

from modelkeep.errors import InvalidInput, VersionNotFound
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.types import Direction, EdgeType, Kind

from .conftest import MakeTree


@pytest.fixture
def graph(registry: EmbeddedRegistry, make_tree: MakeTree) -> EmbeddedRegistry:
    """raw -> data/clean ; base trained_on clean ; tuned derived_from base ; int8 variant_of tuned."""
    registry.push(make_tree({"raw.csv": "1,2"}, name="raw"), "data/raw", kind="dataset")
    registry.push(make_tree({"clean.csv": "1"}, name="clean"), "data/clean", kind="dataset", derived_from="data/raw@1.0.0")
    registry.push(make_tree({"w": "base"}, name="base"), "team/base", kind="model", trained_on=["data/clean"])
    registry.push(
        make_tree({"w": "tuned"}, name="tuned"),
        "team/tuned",
        kind="model",
        derived_from="team/base@1.0.0",
        evaluated_on="data/raw@latest",
    )
    registry.push(make_tree({"w": "q"}, name="q"), "team/tuned-int8", kind="model", variant_of="team/tuned")
    return registry


def test_edges_are_recorded_on_the_version(graph: EmbeddedRegistry) -> None:
    v = graph.get("team/tuned")
    assert sorted((e.type, str(e.target)) for e in v.edges) == [
        (EdgeType.DERIVED_FROM, "team/base@1.0.0"),
        (EdgeType.EVALUATED_ON, "data/raw@1.0.0"),
    ]


def test_upstream_is_transitive_across_artifacts(graph: EmbeddedRegistry) -> None:
    nodes = graph.lineage("team/tuned-int8")
    assert [(str(n.version), n.depth, n.edge.type.value) for n in nodes] == [
        ("team/tuned@1.0.0", 1, "variant_of"),
        ("data/raw@1.0.0", 2, "evaluated_on"),
        ("team/base@1.0.0", 2, "derived_from"),
        ("data/clean@1.0.0", 3, "trained_on"),
    ]  # data/raw appears once, at its smallest depth
    assert nodes[0].kind is Kind.MODEL and nodes[1].kind is Kind.DATASET
    assert [str(n.version) for n in graph.lineage("team/tuned-int8", depth=1)] == ["team/tuned@1.0.0"]
    assert graph.lineage("team/tuned-int8", depth=0) == []


def test_downstream_and_both(graph: EmbeddedRegistry) -> None:
    down = graph.lineage("data/raw@1.0.0", direction="downstream")
    assert [(str(n.version), n.depth) for n in down] == [
        ("data/clean@1.0.0", 1),
        ("team/tuned@1.0.0", 1),
        ("team/base@1.0.0", 2),
        ("team/tuned-int8@1.0.0", 2),
    ]
    both = graph.lineage("team/base", direction=Direction.BOTH)
    assert sorted(str(n.version) for n in both) == [
        "data/clean@1.0.0",
        "data/raw@1.0.0",
        "team/tuned-int8@1.0.0",
        "team/tuned@1.0.0",
    ]
    with pytest.raises(InvalidInput, match="unknown lineage direction"):
        graph.lineage("team/base", direction="sideways")


def test_lineage_ref_must_exist(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"w": "x"})
    registry.push(src, "team/base")
    with pytest.raises(VersionNotFound):
        registry.push(src, "team/tuned", derived_from="team/base@2.0.0")
    assert [a.name for a in registry.artifacts()] == ["team/base"]


def test_lineage_change_alone_is_a_patch(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    registry.push(make_tree({"d": "1"}, name="d"), "data")
    src = make_tree({"w": "x"})
    assert registry.push(src, "model").version == "1.0.0"
    assert registry.push(src, "model", trained_on="data").version == "1.0.1"
    assert registry.push(src, "model", trained_on="data").version == "1.0.1"


def test_diff(registry: EmbeddedRegistry, make_tree: MakeTree) -> None:
    src = make_tree({"keep.txt": "same", "change.bin": "old", "gone.txt": "bye"})
    registry.push(src, "fraud", params={"lr": 0.1, "layers": 4}, metrics={"auc": 0.8}, message="a")
    (src / "change.bin").write_text("newer")
    (src / "gone.txt").unlink()
    (src / "added.txt").write_text("hi")
    registry.push(src, "fraud", params={"lr": 0.2, "layers": 4, "dropout": 0.1}, metrics={"auc": 0.85}, message="b")
    d = registry.diff("fraud@1.0.0", "fraud@1.1.0")
    assert (str(d.a), str(d.b)) == ("fraud@1.0.0", "fraud@1.1.0")
    assert [(f.path, f.new_size) for f in d.added] == [("added.txt", 2)]
    assert [(f.path, f.old_size) for f in d.removed] == [("gone.txt", 3)]
    assert [(f.path, f.old_size, f.new_size) for f in d.changed] == [("change.bin", 3, 5)]
    assert d.unchanged == 1
    assert [(c.key, c.old, c.new) for c in d.params] == [("dropout", None, 0.1), ("lr", 0.1, 0.2)]
    assert [(c.key, c.old, c.new) for c in d.metrics] == [("auc", 0.8, 0.85)]
    assert [(c.key, c.old, c.new) for c in d.metadata] == [("message", "a", "b")]
