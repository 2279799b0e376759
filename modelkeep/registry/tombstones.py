"""Tombstones: versions deleted by retention whose rows remain.

A tombstoned version (``versions.deleted_at`` set) keeps its row, metadata,
tags, signatures and audit events, but it no longer resolves, is hidden from
listings, and its manifest no longer counts as live for gc. This module is the
one place that explains a miss on such a version and lists tombstones; it only
needs the database rows, so ``versions.find`` can call it without a cycle.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.db.models import ArtifactRow, VersionRow
from modelkeep.errors import VersionDeleted
from modelkeep.registry.names import RefKind, VersionRef
from modelkeep.registry.types import Tombstone, VersionKey
from modelkeep.store.digest import Digest

__all__ = ["deleted_error", "listing", "raise_if_deleted"]


def deleted_error(name: str, row: VersionRow) -> VersionDeleted:
    assert row.deleted_at is not None
    reason = f": {row.deleted_reason}" if row.deleted_reason else ""
    return VersionDeleted(
        f"{name}@{row.semver} was deleted on {_when(row.deleted_at)} by {row.deleted_by}{reason}",
        hint=f"mk retention deleted {name} lists deleted versions",
    )


def raise_if_deleted(session: Session, ref: VersionRef) -> None:
    """Raise VersionDeleted when ``ref`` (a semver or digest prefix) names a tombstoned version."""
    stmt = (
        select(VersionRow)
        .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
        .where(ArtifactRow.name == ref.artifact, VersionRow.deleted_at.is_not(None))
    )
    if ref.kind is RefKind.SEMVER:
        v = ref.semver
        stmt = stmt.where(VersionRow.major == v.major, VersionRow.minor == v.minor, VersionRow.patch == v.patch)
    elif ref.kind is RefKind.DIGEST:
        low = f"blake3:{ref.value}"
        stmt = stmt.where(VersionRow.digest >= low, VersionRow.digest < low + "g")
    else:
        return
    rows = session.scalars(stmt.limit(2)).all()
    if len(rows) == 1:
        raise deleted_error(ref.artifact, rows[0])


def listing(session: Session, art: ArtifactRow) -> list[Tombstone]:
    stmt = (
        select(VersionRow)
        .where(VersionRow.artifact_id == art.id, VersionRow.deleted_at.is_not(None))
        .order_by(VersionRow.deleted_at.desc(), VersionRow.id.desc())
    )
    return [
        Tombstone(
            version=VersionKey(art.name, r.semver),
            digest=Digest.parse(r.digest),
            created_at=r.created_at,
            deleted_at=r.deleted_at,  # type: ignore[arg-type]
            deleted_by=r.deleted_by or "",
            reason=r.deleted_reason or "",
        )
        for r in session.scalars(stmt)
    ]


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")
