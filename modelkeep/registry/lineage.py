"""Lineage walks: breadth first over typed edges, one query per level and direction.

An edge goes from the dependent version (source: the fine-tune, the model) to
what it used (target: the base model, the dataset). Upstream follows edges
source → target, downstream target → source. Each version is reported once, at
its smallest depth, with the edge it was first reached through; the starting
version is not reported. ``both`` is the union of the two walks, not the
connected component (siblings sharing a dataset are not each other's lineage).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from modelkeep.db.models import ArtifactRow, EdgeRow, VersionRow
from modelkeep.errors import InvalidInput
from modelkeep.registry.records import semver_of
from modelkeep.registry.types import Direction, Edge, EdgeType, Kind, LineageNode, VersionKey

__all__ = ["walk"]

_IN_CHUNK = 500  # ids per IN (...) list, well below every database's parameter limit


def walk(session: Session, start_id: int, *, direction: Direction | str, depth: int | None) -> list[LineageNode]:
    try:
        direction = Direction(direction)
    except ValueError:
        raise InvalidInput(f"unknown lineage direction {direction!r} (upstream, downstream, both)") from None
    if depth is not None and depth < 0:
        raise InvalidInput(f"lineage depth must be >= 0, got {depth}")
    if direction is Direction.BOTH:
        up = _walk(session, start_id, upstream=True, depth=depth)
        down = _walk(session, start_id, upstream=False, depth=depth)
        best: dict[VersionKey, LineageNode] = {}
        for node in [*up, *down]:
            if node.version not in best or node.depth < best[node.version].depth:
                best[node.version] = node
        return sorted(best.values(), key=lambda n: (n.depth, n.version))
    return _walk(session, start_id, upstream=direction is Direction.UPSTREAM, depth=depth)


def _walk(session: Session, start_id: int, *, upstream: bool, depth: int | None) -> list[LineageNode]:
    seen = {start_id}
    frontier = [start_id]
    out: list[LineageNode] = []
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        found: dict[int, LineageNode] = {}
        for row in _neighbours(session, frontier, upstream=upstream):
            (etype, src_id, src_name, src_v, tgt_id, tgt_name, tgt_v, tgt_kind, src_kind) = row
            nxt = tgt_id if upstream else src_id
            if nxt in seen or nxt in found:
                continue
            edge = Edge(EdgeType(etype), VersionKey(src_name, src_v), VersionKey(tgt_name, tgt_v))
            key = edge.target if upstream else edge.source
            found[nxt] = LineageNode(key, Kind(tgt_kind if upstream else src_kind), level, edge)
        seen.update(found)
        out.extend(sorted(found.values(), key=lambda n: n.version))
        frontier = list(found)
    return out


def _neighbours(session: Session, ids: list[int], *, upstream: bool) -> Iterable[tuple]:
    src_v, tgt_v = aliased(VersionRow), aliased(VersionRow)
    src_a, tgt_a = aliased(ArtifactRow), aliased(ArtifactRow)
    base = (
        select(
            EdgeRow.type,
            src_v.id,
            src_a.name,
            src_v.major,
            src_v.minor,
            src_v.patch,
            tgt_v.id,
            tgt_a.name,
            tgt_v.major,
            tgt_v.minor,
            tgt_v.patch,
            tgt_v.kind,
            src_v.kind,
        )
        .join(src_v, src_v.id == EdgeRow.source_id)
        .join(src_a, src_a.id == src_v.artifact_id)
        .join(tgt_v, tgt_v.id == EdgeRow.target_id)
        .join(tgt_a, tgt_a.id == tgt_v.artifact_id)
        .where(src_v.deleted_at.is_(None), tgt_v.deleted_at.is_(None))  # tombstones are out of the graph
        .order_by(EdgeRow.id)
    )
    column = EdgeRow.source_id if upstream else EdgeRow.target_id
    for i in range(0, len(ids), _IN_CHUNK):
        for r in session.execute(base.where(column.in_(ids[i : i + _IN_CHUNK]))):
            yield (r[0], r[1], r[2], semver_of(r[3], r[4], r[5]), r[6], r[7], semver_of(r[8], r[9], r[10]), r[11], r[12])
