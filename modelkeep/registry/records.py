"""Rows in, frozen records out: the only place database rows become registry types.

Versions are converted a page at a time: the edges, tags, aliases and stages
of the whole page come back from ONE query (a UNION ALL of the four), never a
query per version. Statements are built once, with bound parameters, so each call
only binds values (building SQLAlchemy statements costs more than running
them on SQLite).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, Row, bindparam, literal_column, null, select, union_all
from sqlalchemy.orm import Session

from modelkeep.db.models import AliasRow, ArtifactRow, EdgeRow, TagRow, VersionRow, VersionStageRow
from modelkeep.registry.types import Edge, EdgeType, Kind, Stage, Version, VersionKey
from modelkeep.store.digest import Digest

__all__ = ["edge_sort_key", "record", "semver_of", "version_records", "version_record"]


def semver_of(major: int, minor: int, patch: int) -> str:
    return f"{major}.{minor}.{patch}"


def _extras(match) -> object:  # type: ignore[no-untyped-def]
    """Edges, tags, aliases and stage of the versions whose id column ``match`` accepts."""
    return union_all(
        select(
            literal_column("'e'").label("what"),
            EdgeRow.source_id.label("vid"),
            EdgeRow.type.label("k"),
            ArtifactRow.name.label("v"),
            VersionRow.major,
            VersionRow.minor,
            VersionRow.patch,
        )
        .join(VersionRow, VersionRow.id == EdgeRow.target_id)
        .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
        .where(match(EdgeRow.source_id)),
        select(literal_column("'t'"), TagRow.version_id, TagRow.key, TagRow.value, null(), null(), null()).where(
            match(TagRow.version_id)
        ),
        select(literal_column("'a'"), AliasRow.version_id, AliasRow.name, null(), null(), null(), null()).where(
            match(AliasRow.version_id)
        ),
        select(
            literal_column("'s'"), VersionStageRow.version_id, VersionStageRow.stage, null(), null(), null(), null()
        ).where(match(VersionStageRow.version_id)),
    )


_EXTRAS = _extras(lambda col: col.in_(bindparam("ids", expanding=True)))
# One version (get, resolve): "= :id" is compiled once and cached; an expanding
# IN is rendered again on every call (~70 us, a fifth of resolving an alias on SQLite).
_EXTRAS_ONE = _extras(lambda col: col == bindparam("id"))


def edge_sort_key(edge: Edge) -> tuple:
    major, minor, patch = (int(p) for p in edge.target.version.split("."))
    return (edge.type.value, edge.target.artifact, major, minor, patch)


def version_records(session: Session | Connection, rows: Sequence[VersionRow | Row], names: Mapping[int, str]) -> list[Version]:
    """Records of ``rows`` in the same order; ``names`` maps artifact id -> full name.

    ``rows`` are ORM rows or plain result rows of the versions table (``get`` reads
    those on a bare connection), ``session`` either a Session or that connection.
    """
    if not rows:
        return []
    keys = {r.id: VersionKey(names[r.artifact_id], semver_of(r.major, r.minor, r.patch)) for r in rows}
    edges: dict[int, list[Edge]] = defaultdict(list)
    tags: dict[int, dict[str, str]] = defaultdict(dict)
    aliases: dict[int, list[str]] = defaultdict(list)
    stages: dict[int, Stage] = {}
    if len(rows) == 1:
        extras = session.execute(_EXTRAS_ONE, {"id": rows[0].id})
    else:
        extras = session.execute(_EXTRAS, {"ids": list(keys)})
    for what, vid, k, v, major, minor, patch in extras:
        if what == "e":
            edges[vid].append(Edge(EdgeType(k), keys[vid], VersionKey(v, semver_of(major, minor, patch))))
        elif what == "t":
            tags[vid][k] = v
        elif what == "a":
            aliases[vid].append(k)
        else:
            stages[vid] = Stage(k)
    return [
        record(
            r,
            names[r.artifact_id],
            tuple(sorted(edges.get(r.id, ()), key=edge_sort_key)),
            dict(sorted(tags.get(r.id, {}).items())),
            tuple(sorted(aliases.get(r.id, ()))),
            stages.get(r.id, Stage.NONE),
        )
        for r in rows
    ]


def version_record(session: Session | Connection, row: VersionRow | Row, name: str) -> Version:
    return version_records(session, [row], {row.artifact_id: name})[0]


def record(
    row: VersionRow | Row,
    name: str,
    edges: tuple[Edge, ...],
    tags: dict[str, str],
    aliases: tuple[str, ...],
    stage: Stage = Stage.NONE,
) -> Version:
    return Version(
        artifact=name,
        version=semver_of(row.major, row.minor, row.patch),
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
        signature=row.signature,
        stage=stage,
    )
