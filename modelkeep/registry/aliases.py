"""Aliases: mutable names (``production``, ``staging``…) pointing at one version each.

Every move, including a removal, appends an ``alias_moves`` row (previous and
new target, actor, time, reason), so "what did production point at on March 3rd,
10:00?" is one indexed query on (artifact, alias, at). Moves take the artifact
row lock, so a compare-and-set (``expected``) is atomic against other writers.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, aliased

from modelkeep.db.models import AliasMoveRow, AliasRow, ArtifactRow, VersionRow
from modelkeep.errors import AliasNotFound, ArtifactNotFound, ConflictError, InvalidInput
from modelkeep.registry import audit
from modelkeep.registry.names import check_alias
from modelkeep.registry.records import semver_of
from modelkeep.registry.semver import SemVer
from modelkeep.registry.types import Alias, AliasMove

__all__ = ["at_instant", "current", "history", "move", "remove"]


def move(
    session: Session,
    art: ArtifactRow,
    alias: str,
    target: VersionRow,
    *,
    expected: str | None,
    actor: str,
    at: datetime,
    reason: str,
) -> AliasMove:
    """Point ``alias`` at ``target`` (the artifact row must be locked by the caller)."""
    check_alias(alias)
    row = session.scalars(
        select(AliasRow).where(AliasRow.artifact_id == art.id, AliasRow.name == alias)
    ).one_or_none()
    previous_row = session.get(VersionRow, row.version_id) if row is not None else None
    previous = previous_row.semver if previous_row is not None else None
    if expected is not None:
        _compare(art.name, alias, previous, expected)
    if row is None:
        session.add(AliasRow(artifact_id=art.id, name=alias, version_id=target.id, updated_at=at, updated_by=actor))
    else:
        row.version_id = target.id
        row.updated_at = at
        row.updated_by = actor
    session.add(
        AliasMoveRow(
            artifact_id=art.id,
            alias=alias,
            previous_version_id=previous_row.id if previous_row is not None else None,
            new_version_id=target.id,
            actor=actor,
            at=at,
            reason=reason,
        )
    )
    audit.record(
        session,
        action="alias.set" if previous_row is None else "alias.move",
        actor=actor,
        artifact=art.name,
        subject=f"{art.name}@{alias}",
        reason=reason,
        data={"alias": alias, "version": target.semver, "previous": previous},
        at=at,
    )
    return AliasMove(art.name, alias, target.semver, previous, actor, at, reason)


def _compare(name: str, alias: str, previous: str | None, expected: str) -> None:
    if expected == "":
        if previous is not None:
            raise ConflictError(f"alias {alias!r} of {name!r} already points at {previous}, expected it not to exist")
        return
    try:
        wanted = str(SemVer.parse(expected))
    except InvalidInput:
        raise InvalidInput(f"expected must be a version like '1.4.0' or '' (alias absent), got {expected!r}") from None
    if previous != wanted:
        now = f"points at {previous}" if previous is not None else "does not exist"
        raise ConflictError(f"alias {alias!r} of {name!r} {now}, expected {wanted}")


def remove(session: Session, art: ArtifactRow, alias: str, *, actor: str, at: datetime, reason: str) -> AliasMove:
    row = session.scalars(
        select(AliasRow).where(AliasRow.artifact_id == art.id, AliasRow.name == alias)
    ).one_or_none()
    if row is None:
        raise AliasNotFound(f"artifact {art.name!r} has no alias {alias!r}")
    previous = session.get(VersionRow, row.version_id)
    assert previous is not None  # foreign key
    session.delete(row)
    session.add(
        AliasMoveRow(
            artifact_id=art.id,
            alias=alias,
            previous_version_id=previous.id,
            new_version_id=None,
            actor=actor,
            at=at,
            reason=reason,
        )
    )
    audit.record(
        session,
        action="alias.remove",
        actor=actor,
        artifact=art.name,
        subject=f"{art.name}@{alias}",
        reason=reason,
        data={"alias": alias, "version": None, "previous": previous.semver},
        at=at,
    )
    return AliasMove(art.name, alias, None, previous.semver, actor, at, reason)


def current(session: Session, art: ArtifactRow) -> list[Alias]:
    stmt = (
        select(AliasRow.name, VersionRow.major, VersionRow.minor, VersionRow.patch, AliasRow.updated_at, AliasRow.updated_by)
        .join(VersionRow, VersionRow.id == AliasRow.version_id)
        .where(AliasRow.artifact_id == art.id)
        .order_by(AliasRow.name)
    )
    return [Alias(art.name, n, semver_of(a, b, c), at, by) for n, a, b, c, at, by in session.execute(stmt)]


def history(session: Session, art: ArtifactRow, alias: str | None) -> list[AliasMove]:
    new_v = aliased(VersionRow)
    old_v = aliased(VersionRow)
    stmt = (
        select(AliasMoveRow, new_v.major, new_v.minor, new_v.patch, old_v.major, old_v.minor, old_v.patch)
        .outerjoin(new_v, new_v.id == AliasMoveRow.new_version_id)
        .outerjoin(old_v, old_v.id == AliasMoveRow.previous_version_id)
        .where(AliasMoveRow.artifact_id == art.id)
        .order_by(AliasMoveRow.at, AliasMoveRow.id)
    )
    if alias is not None:
        stmt = stmt.where(AliasMoveRow.alias == alias)
    out = []
    for m, na, nb, nc, oa, ob, oc in session.execute(stmt):
        new = semver_of(na, nb, nc) if na is not None else None
        old = semver_of(oa, ob, oc) if oa is not None else None
        out.append(AliasMove(art.name, m.alias, new, old, m.actor, m.at, m.reason))
    return out


# Two steps, each one index lookup on (artifact_id, alias, at): the time of the last move at
# or before the instant, then the last move at that time. A single ORDER BY at, id
# LIMIT 1 made PostgreSQL join and sort every earlier move (20k moves: 9 ms, now < 1 ms).
_AID = select(ArtifactRow.id).where(ArtifactRow.name == bindparam("name")).scalar_subquery()
_LAST_AT = (
    select(AliasMoveRow.at)
    .where(
        AliasMoveRow.artifact_id == _AID,
        AliasMoveRow.alias == bindparam("alias"),
        AliasMoveRow.at <= bindparam("at"),
    )
    .order_by(AliasMoveRow.at.desc())  # not max(): with stale statistics PostgreSQL aggregated every row
    .limit(1)
    .scalar_subquery()
)
_AT_INSTANT = (
    select(VersionRow.major, VersionRow.minor, VersionRow.patch, AliasMoveRow.new_version_id)
    .select_from(AliasMoveRow)
    .outerjoin(VersionRow, VersionRow.id == AliasMoveRow.new_version_id)
    .where(
        AliasMoveRow.artifact_id == _AID,
        AliasMoveRow.alias == bindparam("alias"),
        AliasMoveRow.at == _LAST_AT,
    )
    .order_by(AliasMoveRow.id.desc())
    .limit(1)
)


def at_instant(session: Session, name: str, alias: str, at: datetime) -> str | None:
    """The semver ``alias`` of artifact ``name`` pointed to at ``at``: the last move at or before it.

    One query; the artifact is looked up on its own only to explain a miss (ArtifactNotFound).
    """
    if at.tzinfo is None:
        raise InvalidInput("alias_at needs a timezone-aware datetime (e.g. datetime.now(UTC))")
    found = session.execute(_AT_INSTANT, {"name": name, "alias": alias, "at": at}).one_or_none()
    if found is None:
        if session.scalar(select(ArtifactRow.id).where(ArtifactRow.name == name)) is None:
            raise ArtifactNotFound(f"no artifact named {name!r}")
        return None
    if found[3] is None:
        return None
    return semver_of(found[0], found[1], found[2])
