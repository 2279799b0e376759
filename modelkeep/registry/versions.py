"""Versions in the database: resolving refs, and the commit step of a push.

Every function here runs inside a unit of work (``modelkeep.db.uow``) and takes
its Session. The next version number is computed inside the write transaction,
under a lock on the artifact row, from a query ordered by (major, minor, patch):
a concurrent push either waits for the lock (PostgreSQL, SQLite's write lock)
or loses on the unique constraint and is retried in a fresh transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, exists, select
from sqlalchemy.orm import Session

from modelkeep.db.models import AliasRow, ArtifactRow, EdgeRow, ManifestRow, VersionRow
from modelkeep.errors import (
    AliasNotFound,
    AmbiguousRef,
    ArtifactNotFound,
    InvalidInput,
    KindMismatch,
    VersionNotFound,
)
from modelkeep.registry import audit
from modelkeep.registry.canon import canonical_json, json_value
from modelkeep.registry.names import RefKind, VersionRef, namespace_of
from modelkeep.registry.records import edge_sort_key, record, version_record
from modelkeep.registry.semver import SemVer, bump, check_explicit
from modelkeep.registry.tags import apply_tags
from modelkeep.registry.tombstones import raise_if_deleted
from modelkeep.registry.types import Edge, EdgeType, Kind, Version, VersionKey
from modelkeep.store.digest import hash_bytes
from modelkeep.store.manifest import Manifest

__all__ = ["NewVersion", "artifact_row", "canonical_json", "create", "find", "find_row", "json_value", "newest", "page"]

_NEWEST_FIRST = (VersionRow.major.desc(), VersionRow.minor.desc(), VersionRow.patch.desc())


# Statements built once; calls only bind values (see records.py for why).
_ART = select(ArtifactRow).where(ArtifactRow.name == bindparam("name"))
_ART_LOCKED = _ART.with_for_update()
_SELECTORS = {
    RefKind.LATEST: select(VersionRow).order_by(*_NEWEST_FIRST).limit(1),
    RefKind.SEMVER: select(VersionRow).where(
        VersionRow.major == bindparam("major"),
        VersionRow.minor == bindparam("minor"),
        VersionRow.patch == bindparam("patch"),
    ),
    # A range scan on (artifact_id, digest): LIKE would not use the index on
    # SQLite (case-insensitive) nor on PostgreSQL (non-C collations).
    RefKind.DIGEST: select(VersionRow)
    .where(VersionRow.digest >= bindparam("low"), VersionRow.digest < bindparam("high"))
    .limit(2),
    RefKind.ALIAS: select(VersionRow)
    .join(AliasRow, AliasRow.version_id == VersionRow.id)
    .where(AliasRow.artifact_id == VersionRow.artifact_id, AliasRow.name == bindparam("alias")),
}
# Tombstoned versions (deleted by retention) never resolve and are not listed; see tombstones.py.
_LIVE = VersionRow.deleted_at.is_(None)
_BY_ID = {k: stmt.where(VersionRow.artifact_id == bindparam("aid"), _LIVE) for k, stmt in _SELECTORS.items()}
# The same by artifact name: a read resolves a ref in one query.
_BY_NAME = {
    k: stmt.join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id).where(ArtifactRow.name == bindparam("name"), _LIVE)
    for k, stmt in _SELECTORS.items()
}
_PAGE = select(VersionRow).where(VersionRow.artifact_id == bindparam("aid"), _LIVE).order_by(*_NEWEST_FIRST)
# The highest semver ever allocated, tombstones included: a deleted version's number is never reused.
_NEWEST_ANY = _SELECTORS[RefKind.LATEST].where(VersionRow.artifact_id == bindparam("aid"))


def artifact_row(session: Session, name: str, *, lock: bool = False) -> ArtifactRow:
    """The artifact row; ``lock`` takes a row lock (FOR UPDATE, a no-op on SQLite). Raises ArtifactNotFound."""
    row = session.scalars(_ART_LOCKED if lock else _ART, {"name": name}).one_or_none()
    if row is None:
        raise ArtifactNotFound(f"no artifact named {name!r}")
    return row


def newest(session: Session, artifact_id: int) -> VersionRow | None:
    return session.scalars(_NEWEST_ANY, {"aid": artifact_id}).one_or_none()


def page(session: Session, artifact_id: int, *, limit: int | None, offset: int) -> list[VersionRow]:
    """Versions of one artifact, newest first, sorted in SQL on the (artifact, semver) index."""
    stmt = _PAGE
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return list(session.scalars(stmt, {"aid": artifact_id}))


def _ref_params(ref: VersionRef) -> dict[str, Any]:
    """The bound parameters of ``_SELECTORS[ref.kind]`` (the artifact's name or id is added by the caller)."""
    if ref.kind is RefKind.SEMVER:
        v = ref.semver
        return {"major": v.major, "minor": v.minor, "patch": v.patch}
    if ref.kind is RefKind.DIGEST:
        return {"low": f"blake3:{ref.value}", "high": f"blake3:{ref.value}g"}  # every hex digit sorts below "g"
    if ref.kind is RefKind.ALIAS:
        return {"alias": ref.value}
    return {}


def find(session: Session, ref: VersionRef, artifact: ArtifactRow | None = None) -> tuple[str, VersionRow]:
    """Resolve ``ref`` to (artifact name, version row).

    With ``artifact`` (already loaded, maybe locked) the lookup is by its id;
    without, artifact and version come from one query and the artifact is looked
    up separately only to explain a miss.
    Raises ArtifactNotFound, VersionNotFound, AliasNotFound, AmbiguousRef.
    """
    params = _ref_params(ref)
    if artifact is not None:
        params["aid"] = artifact.id
        rows = session.scalars(_BY_ID[ref.kind], params).all()
    else:
        params["name"] = ref.artifact
        rows = session.scalars(_BY_NAME[ref.kind], params).all()
    if len(rows) == 1:
        return ref.artifact, rows[0]
    if rows:
        raise AmbiguousRef(f"{ref} matches several versions; give more digits of the digest")
    if artifact is None:
        artifact_row(session, ref.artifact)  # raises ArtifactNotFound
    name = ref.artifact
    raise_if_deleted(session, ref)  # a semver or digest of a tombstone: say when and by whom
    if ref.kind is RefKind.LATEST:
        raise VersionNotFound(f"artifact {name!r} has no versions yet")
    if ref.kind is RefKind.DIGEST:
        raise VersionNotFound(f"no version of {name!r} has a digest starting with blake3:{ref.value}")
    if ref.kind is RefKind.ALIAS:
        raise AliasNotFound(f"artifact {name!r} has no alias {ref.value!r}")
    raise VersionNotFound(f"no version {ref}")


def find_row(conn: Connection, ref: VersionRef) -> tuple[str, Row | VersionRow]:
    """``find`` on a bare connection, the row as a plain result row: no ORM session per call.

    Resolving a ref is the registry's most frequent read (what is serving?);
    the ORM's session and identity map cost more than the two queries. A miss
    is explained by ``find`` itself, in an ORM session on the same connection.
    """
    rows = conn.execute(_BY_NAME[ref.kind], {**_ref_params(ref), "name": ref.artifact}).all()
    if len(rows) == 1:
        return ref.artifact, rows[0]
    with Session(bind=conn) as session:
        # Raises the error that explains the miss; or, where the database lets a
        # transaction see a commit made meanwhile (PostgreSQL's read committed),
        # finds what was just created: a row all the same.
        return find(session, ref)


@dataclass(frozen=True, slots=True)
class NewVersion:
    """Everything a push brings to the commit step (already validated and JSON-normalized)."""

    name: str
    kind: Kind | None  # None: the artifact's kind (generic for a new artifact)
    manifest: Manifest
    new_bytes: int
    author: str
    message: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    edges: Sequence[tuple[EdgeType, VersionRef]]
    tags: Mapping[str, str]
    version: SemVer | None
    major: bool
    now: datetime
    signature: dict[str, Any] | None = None  # model input/output schema; a change is a major bump


def create(session: Session, new: NewVersion) -> Version:
    """Commit step of a push: insert manifest, version, edges and tags, or return the unchanged latest."""
    art = _lock_or_create_artifact(session, new)
    kind = new.kind or Kind(art.kind)
    found = {(etype, *find(session, ref)) for etype, ref in new.edges}
    targets = {(etype, row.id): VersionKey(name, row.semver) for etype, name, row in found}
    latest = newest(session, art.id)
    files_digest = str(new.manifest.digest)
    latest_semver = SemVer(latest.major, latest.minor, latest.patch) if latest else None

    files_changed = latest is None or latest.files_digest != files_digest
    if latest is not None and latest.deleted_at is None and not files_changed and not new.major and new.version in (None, latest_semver):
        same_meta = (
            latest.kind == kind.value
            and canonical_json(latest.params) == canonical_json(new.params)
            and canonical_json(latest.metrics) == canonical_json(new.metrics)
            and _edge_ids(session, latest.id) == {(etype.value, vid) for etype, vid in targets}
            and canonical_json(latest.signature) == canonical_json(new.signature)
        )
        if same_meta:
            apply_tags(
                session, latest.id, new.tags, subject=f"{art.name}@{latest.semver}", actor=new.author, at=new.now, reason="set at push"
            )
            return version_record(session, latest, art.name)

    if new.version is not None:
        semver = check_explicit(new.version, latest_semver, exists=_exists(session, art.id, new.version))
    else:
        semver = bump(
            latest_semver,
            files_changed=files_changed,
            major=new.major,
            signature_changed=_signature_changed(latest.signature if latest else None, new.signature),
        )

    if session.get(ManifestRow, files_digest) is None:
        session.add(
            ManifestRow(
                digest=files_digest,
                body=new.manifest.to_bytes(),
                size=new.manifest.size,
                file_count=len(new.manifest),
            )
        )
    key = VersionKey(art.name, str(semver))
    edges = tuple(sorted((Edge(etype, key, target) for (etype, _), target in targets.items()), key=edge_sort_key))
    document = {
        "artifact": art.name,
        "version": str(semver),
        "kind": kind.value,
        "files_digest": files_digest,
        "params": new.params,
        "metrics": new.metrics,
        "message": new.message,
        "author": new.author,
        "created_at": new.now.isoformat(),
        "provenance": new.provenance,
        "edges": [[e.type.value, str(e.target)] for e in edges],
    }
    if new.signature is not None:  # absent, not null: digests of versions without one stay as they were
        document["signature"] = new.signature
    row = VersionRow(
        artifact_id=art.id,
        major=semver.major,
        minor=semver.minor,
        patch=semver.patch,
        kind=kind.value,
        digest=str(hash_bytes(canonical_json(document))),
        files_digest=files_digest,
        author=new.author,
        message=new.message,
        params=new.params,
        metrics=new.metrics,
        provenance=new.provenance,
        signature=new.signature,
        size=new.manifest.size,
        file_count=len(new.manifest),
        new_bytes=new.new_bytes,
        created_at=new.now,
    )
    session.add(row)
    session.flush()  # the unique (artifact, semver) constraint fails here when a race was lost
    audit.record(
        session,
        action="version.create",
        actor=new.author,
        artifact=art.name,
        subject=str(key),
        reason=new.message,
        data={
            "version": str(semver),
            "kind": kind.value,
            "digest": row.digest,
            "files_digest": files_digest,
            "size": row.size,
            "edges": [[e.type.value, str(e.target)] for e in edges],
        },
        at=new.now,
    )
    if targets or new.tags:
        session.add_all(EdgeRow(type=etype.value, source_id=row.id, target_id=vid) for etype, vid in targets)
        apply_tags(
            session, row.id, new.tags, subject=str(key), actor=new.author, at=new.now, reason="set at push", known_new=True
        )
        session.flush()
    # A new version has exactly these edges and tags, and no alias yet: no need to read them back.
    return record(row, art.name, edges, dict(sorted(new.tags.items())), ())


def _signature_changed(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """A signature replaced by a different one; gaining a first one or omitting it is no change."""
    return old is not None and new is not None and canonical_json(old) != canonical_json(new)


def _lock_or_create_artifact(session: Session, new: NewVersion) -> ArtifactRow:
    try:
        art = artifact_row(session, new.name, lock=True)
    except ArtifactNotFound:
        # Two first pushes may race here; the loser fails on the unique name and is retried.
        art = ArtifactRow(
            name=new.name,
            namespace=namespace_of(new.name),
            kind=(new.kind or Kind.GENERIC).value,
            created_at=new.now,
            created_by=new.author,
        )
        session.add(art)
        session.flush()
        return art
    if new.kind is not None and new.kind.value != art.kind:
        raise KindMismatch(f"artifact {art.name!r} holds {art.kind} versions; cannot push a {new.kind.value}")
    return art


def _exists(session: Session, artifact_id: int, v: SemVer) -> bool:
    return bool(
        session.scalar(
            select(
                exists().where(
                    and_(
                        VersionRow.artifact_id == artifact_id,
                        VersionRow.major == v.major,
                        VersionRow.minor == v.minor,
                        VersionRow.patch == v.patch,
                    )
                )
            )
        )
    )


def _edge_ids(session: Session, version_id: int) -> set[tuple[str, int]]:
    rows = session.execute(select(EdgeRow.type, EdgeRow.target_id).where(EdgeRow.source_id == version_id))
    return {(t, i) for t, i in rows}
