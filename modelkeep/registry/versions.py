"""Versions in the database: resolving refs, and the commit step of a push.

Every function here runs inside a unit of work (``modelkeep.db.uow``) and takes
its Session. The next version number is computed inside the write transaction,
under a lock on the artifact row, from a query ordered by (major, minor, patch):
a concurrent push either waits for the lock (PostgreSQL, SQLite's write lock)
or loses on the unique constraint and is retried in a fresh transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, select
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
from modelkeep.registry.names import RefKind, VersionRef, namespace_of
from modelkeep.registry.records import version_record
from modelkeep.registry.semver import SemVer, bump, check_explicit
from modelkeep.registry.tags import apply_tags
from modelkeep.registry.types import EdgeType, Kind, Version
from modelkeep.store.digest import hash_bytes
from modelkeep.store.manifest import Manifest

__all__ = ["NewVersion", "artifact_row", "canonical_json", "create", "find", "json_value", "newest", "page"]

_NEWEST_FIRST = (VersionRow.major.desc(), VersionRow.minor.desc(), VersionRow.patch.desc())


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def json_value(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """``value`` as plain JSON data (tuples become lists, numpy scalars numbers). Raises InvalidInput."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        return json.loads(canonical_json(dict(value)).decode())
    except ValueError as exc:  # NaN / infinity: not JSON, and not storable in PostgreSQL
        raise InvalidInput(f"{what} must be JSON with finite numbers: {exc}") from None
    except TypeError as exc:
        raise InvalidInput(f"{what} must be JSON-serializable: {exc}") from None


def artifact_row(session: Session, name: str, *, lock: bool = False) -> ArtifactRow:
    """The artifact row; ``lock`` takes a row lock (FOR UPDATE, a no-op on SQLite). Raises ArtifactNotFound."""
    stmt = select(ArtifactRow).where(ArtifactRow.name == name)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).one_or_none()
    if row is None:
        raise ArtifactNotFound(f"no artifact named {name!r}")
    return row


def newest(session: Session, artifact_id: int) -> VersionRow | None:
    stmt = select(VersionRow).where(VersionRow.artifact_id == artifact_id).order_by(*_NEWEST_FIRST).limit(1)
    return session.scalars(stmt).one_or_none()


def page(session: Session, artifact_id: int, *, limit: int | None, offset: int) -> list[VersionRow]:
    """Versions of one artifact, newest first, sorted in SQL on the (artifact, semver) index."""
    stmt = select(VersionRow).where(VersionRow.artifact_id == artifact_id).order_by(*_NEWEST_FIRST)
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return list(session.scalars(stmt))


def find(session: Session, ref: VersionRef, artifact: ArtifactRow | None = None) -> tuple[ArtifactRow, VersionRow]:
    """Resolve ``ref``. Raises ArtifactNotFound, VersionNotFound, AliasNotFound, AmbiguousRef."""
    art = artifact if artifact is not None else artifact_row(session, ref.artifact)
    if ref.kind is RefKind.LATEST:
        row = newest(session, art.id)
        if row is None:
            raise VersionNotFound(f"artifact {art.name!r} has no versions yet")
        return art, row
    if ref.kind is RefKind.SEMVER:
        v = ref.semver
        row = session.scalars(
            select(VersionRow).where(
                VersionRow.artifact_id == art.id,
                VersionRow.major == v.major,
                VersionRow.minor == v.minor,
                VersionRow.patch == v.patch,
            )
        ).one_or_none()
        if row is None:
            raise VersionNotFound(f"no version {ref}")
        return art, row
    if ref.kind is RefKind.DIGEST:
        # A range scan on (artifact_id, digest): LIKE would not use the index on
        # SQLite (case-insensitive) nor on PostgreSQL (non-C collations).
        low = f"blake3:{ref.value}"
        high = low + "g"  # every hex digit sorts below "g"
        rows = session.scalars(
            select(VersionRow)
            .where(VersionRow.artifact_id == art.id, VersionRow.digest >= low, VersionRow.digest < high)
            .limit(2)
        ).all()
        if not rows:
            raise VersionNotFound(f"no version of {art.name!r} has a digest starting with {low}")
        if len(rows) > 1:
            raise AmbiguousRef(f"{ref} matches several versions; give more digits of the digest")
        return art, rows[0]
    row = session.scalars(
        select(VersionRow)
        .join(AliasRow, AliasRow.version_id == VersionRow.id)
        .where(AliasRow.artifact_id == art.id, AliasRow.name == ref.value)
    ).one_or_none()
    if row is None:
        raise AliasNotFound(f"artifact {art.name!r} has no alias {ref.value!r}")
    return art, row


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


def create(session: Session, new: NewVersion) -> Version:
    """Commit step of a push: insert manifest, version, edges and tags, or return the unchanged latest."""
    art = _lock_or_create_artifact(session, new)
    kind = new.kind or Kind(art.kind)
    targets = sorted({(etype, find(session, ref)[1].id) for etype, ref in new.edges})
    edge_ids = {(etype.value, target_id) for etype, target_id in targets}
    latest = newest(session, art.id)
    files_digest = str(new.manifest.digest)
    latest_semver = SemVer(latest.major, latest.minor, latest.patch) if latest else None

    files_changed = latest is None or latest.files_digest != files_digest
    if latest is not None and not files_changed and not new.major and new.version in (None, latest_semver):
        same_meta = (
            latest.kind == kind.value
            and canonical_json(latest.params) == canonical_json(new.params)
            and canonical_json(latest.metrics) == canonical_json(new.metrics)
            and _edge_ids(session, latest.id) == edge_ids
        )
        if same_meta:
            apply_tags(session, latest.id, new.tags, actor=new.author, at=new.now, reason="set at push")
            return version_record(session, latest, art.name)

    if new.version is not None:
        semver = check_explicit(new.version, latest_semver, exists=_exists(session, art.id, new.version))
    else:
        semver = bump(latest_semver, files_changed=files_changed, major=new.major)

    if session.get(ManifestRow, files_digest) is None:
        session.add(
            ManifestRow(
                digest=files_digest,
                body=new.manifest.to_bytes(),
                size=new.manifest.size,
                file_count=len(new.manifest),
            )
        )
    edge_keys = sorted([etype.value, _key_of(session, target_id)] for etype, target_id in targets)
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
        "edges": edge_keys,
    }
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
        size=new.manifest.size,
        file_count=len(new.manifest),
        new_bytes=new.new_bytes,
        created_at=new.now,
    )
    session.add(row)
    session.flush()  # the unique (artifact, semver) constraint fails here when a race was lost
    session.add_all(EdgeRow(type=etype.value, source_id=row.id, target_id=target_id) for etype, target_id in targets)
    apply_tags(session, row.id, new.tags, actor=new.author, at=new.now, reason="set at push")
    session.flush()
    return version_record(session, row, art.name)


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


def _key_of(session: Session, version_id: int) -> str:
    name, major, minor, patch = session.execute(
        select(ArtifactRow.name, VersionRow.major, VersionRow.minor, VersionRow.patch)
        .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
        .where(VersionRow.id == version_id)
    ).one()
    return f"{name}@{major}.{minor}.{patch}"
