"""``mk lineage``: what a version was made from, and what was made from it."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.tree import Tree

from modelkeep.cli._context import registry
from modelkeep.cli._output import emit_json, out
from modelkeep.registry.types import Direction, LineageNode, Version, VersionKey

__all__ = ["lineage"]


def lineage(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version ref, e.g. fraud@production.")],
    direction: Annotated[
        Direction, typer.Option("--direction", "-d", help="upstream: what made it; downstream: what it made.")
    ] = Direction.UPSTREAM,
    depth: Annotated[int | None, typer.Option("--depth", min=1, help="Follow at most N edges.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
) -> None:
    """Lineage of REF as a tree of typed edges (derived_from, trained_on, …)."""
    reg = registry(ctx)
    root = reg.get(ref)
    nodes = reg.lineage(root.ref, direction=direction, depth=depth)
    if json_:
        emit_json({"root": root.ref, "direction": direction.value, "nodes": nodes})
        return
    out().print(_tree(root, nodes))


def _parent(node: LineageNode) -> VersionKey:
    """The version the walk came from: the other end of the edge that reached ``node``."""
    e = node.edge
    return e.source if node.version == e.target else e.target


def _tree(root: Version, nodes: list[LineageNode]) -> Tree:
    tree = Tree(f"[bold]{escape(root.ref)}[/] ({root.kind.value})")
    if not nodes:
        tree.add("[dim]no lineage edges[/]")
        return tree
    children: dict[VersionKey, list[LineageNode]] = defaultdict(list)
    seen = {root.key} | {n.version for n in nodes}
    for n in sorted(nodes, key=lambda n: (n.depth, n.edge.type.value, n.version)):
        parent = _parent(n)
        children[parent if parent in seen else root.key].append(n)

    def add(branch: Tree, key: VersionKey, path: frozenset[VersionKey]) -> None:
        for n in children.get(key, []):
            if n.version in path:  # defensive: a cycle would recurse forever
                continue
            up = n.version == n.edge.target
            arrow = "[cyan]↑[/]" if up else "[magenta]↓[/]"
            label = f"{arrow} [dim]{n.edge.type.value}[/] {escape(str(n.version))} ({n.kind.value})"
            add(branch.add(label), n.version, path | {n.version})

    add(tree, root.key, frozenset({root.key}))
    return tree
