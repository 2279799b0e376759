"""Rows in, frozen records out: the only place database rows become registry types.

Versions are converted a page at a time: their edges, tags and aliases are
loaded with one query each for the whole page (no query per version).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.db.models import AliasRow, ArtifactRow, EdgeRow, TagRow, VersionRow
from modelkeep.registry.types import Edge, EdgeType, Kind, Version, VersionKey
from modelkeep.store.digest import Digest

__all__ = ["semver_of", "version_records", "version_record", "edges_of"]


def semver_of(major: int, minor: int, patch: int) -> str:
    return f"{major}.{minor}.{patch}"


def edges_of(session: Session, rows: Sequence[tuple[int, VersionKey]]) -> dict[int, tuple[Edge, ...]]:
    """Outgoing edges of each version id in ``rows`` (id, key of that version)."""
    keys = dict(rows)
    if not keys:
        return {}
    stmt = (
        select(EdgeRow.source_id, EdgeRow.type, ArtifactRow.name, VersionRow.major, VersionRow.minor, VersionRow.patch)
        .join(VersionRow, VersionRow.id == EdgeRow.target_id)
        .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
        .where(EdgeRow.source_id.in_(keys))
        .order_by(EdgeRow.source_id, EdgeRow.type, ArtifactRow.name, VersionRow.major, VersionRow.minor, VersionRow.patch)
    )
    out: dict[int, list[Edge]] = defaultdict(list)
    for source_id, etype, name, major, minor, patch in session.execute(stmt):
        target = VersionKey(name, semver_of(major, minor, patch))
        out[source_id].append(Edge(EdgeType(etype), keys[source_id], target))
    return {k: tuple(v) for k, v in out.items()}


def version_records(session: Session, rows: Sequence[VersionRow], names: dict[int, str]) -> list[Version]:
    """Records of ``rows`` in the same order; ``names`` maps artifact id -> full name."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    keyed = [(r.id, VersionKey(names[r.artifact_id], r.semver)) for r in rows]
    edges = edges_of(session, keyed)
    tags: dict[int, dict[str, str]] = defaultdict(dict)
    for version_id, key, value in session.execute(
        select(TagRow.version_id, TagRow.key, TagRow.value).where(TagRow.version_id.in_(ids)).order_by(TagRow.key)
    ):
        tags[version_id][key] = value
    aliases: dict[int, list[str]] = defaultdict(list)
    for version_id, alias in session.execute(
        select(AliasRow.version_id, AliasRow.name).where(AliasRow.version_id.in_(ids)).order_by(AliasRow.name)
    ):
        aliases[version_id].append(alias)
    return [
        _record(r, names[r.artifact_id], edges.get(r.id, ()), tags.get(r.id, {}), tuple(aliases.get(r.id, ())))
        for r in rows
    ]


def version_record(session: Session, row: VersionRow, name: str) -> Version:
    return version_records(session, [row], {row.artifact_id: name})[0]


def _record(
    row: VersionRow, name: str, edges: tuple[Edge, ...], tags: dict[str, str], aliases: tuple[str, ...]
) -> Version:
    return Version(
        artifact=name,
        version=row.semver,
        kind=Kind(row.kind),
        digest=Digest.parse(row.digest),
        files_digest=Digest.parse(row.files_digest),
        created_at=row.created_at,
        author=row.author,
        message=row.message,
        params=row.params,
        metrics=row.metrics,
        provenance=row.provenance,
        size=row.size,
        file_count=row.file_count,
        new_bytes=row.new_bytes,
        edges=edges,
        tags=tags,
        aliases=aliases,
    )
