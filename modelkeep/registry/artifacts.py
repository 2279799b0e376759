"""Artifact listings: each artifact with its version count and newest version, in one query."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from modelkeep.db.models import ArtifactRow, VersionRow
from modelkeep.errors import ArtifactNotFound
from modelkeep.registry.records import semver_of
from modelkeep.registry.types import Artifact, Kind

__all__ = ["summaries"]


def summaries(
    session: Session, *, name: str | None = None, namespace: str | None = None, kind: Kind | None = None
) -> list[Artifact]:
    """Artifacts sorted by name, filtered by exact name, namespace and kind. Raises ArtifactNotFound for ``name``."""
    count = (
        select(func.count(VersionRow.id))
        .where(VersionRow.artifact_id == ArtifactRow.id, VersionRow.deleted_at.is_(None))
        .correlate(ArtifactRow)
        .scalar_subquery()
    )
    # Correlated "newest version id": walks the (artifact, major, minor, patch) index backwards.
    newest_id = (
        select(VersionRow.id)
        .where(VersionRow.artifact_id == ArtifactRow.id, VersionRow.deleted_at.is_(None))
        .order_by(VersionRow.major.desc(), VersionRow.minor.desc(), VersionRow.patch.desc())
        .limit(1)
        .correlate(ArtifactRow)
        .scalar_subquery()
    )
    latest = aliased(VersionRow)
    stmt = (
        select(ArtifactRow, count, latest.major, latest.minor, latest.patch)
        .outerjoin(latest, latest.id == newest_id)
        .order_by(ArtifactRow.name)
    )
    if name is not None:
        stmt = stmt.where(ArtifactRow.name == name)
    if namespace is not None:
        stmt = stmt.where(ArtifactRow.namespace == namespace)
    if kind is not None:
        stmt = stmt.where(ArtifactRow.kind == kind.value)
    out = [
        Artifact(
            name=a.name,
            kind=Kind(a.kind),
            created_at=a.created_at,
            created_by=a.created_by,
            version_count=int(n),
            latest=semver_of(ma, mi, pa) if ma is not None else None,
        )
        for a, n, ma, mi, pa in session.execute(stmt)
    ]
    if name is not None and not out:
        raise ArtifactNotFound(f"no artifact named {name!r}")
    return out
