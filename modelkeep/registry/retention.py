"""Retention rules and legal holds: what retention may delete, stored with full history.

A rule is a small JSON document per artifact, saved as a new revision on every
change (the highest revision is in force; earlier ones stay as history)::

    {"format": 1, "keep_last": 5, "keep_days": 30, "keep_production": true, "min_days": 7}

``None`` / ``false`` turn a part off. A hold is a row per version with a
reason; it is active until released (the release is recorded on the same row).
What the rules and holds decide is computed in ``retention_plan.py``.
Every change appends an audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelkeep.db.models import ArtifactRow, RetentionHoldRow, RetentionRuleRow, VersionRow
from modelkeep.errors import HoldNotFound, InvalidInput
from modelkeep.registry import audit
from modelkeep.registry.types import RetentionHold, RetentionRule, VersionKey

__all__ = ["FORMAT", "active_holds", "hold", "holds", "release", "rule", "rule_history", "set_rule"]

FORMAT = 1
_PARTS = ("keep_last", "keep_days", "keep_production", "min_days")


def _count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{what} must be a whole number of at least 1, got {value!r}")
    return value


def set_rule(
    session: Session,
    art: ArtifactRow,
    *,
    keep_last: int | None,
    keep_days: int | None,
    keep_production: bool,
    min_days: int | None,
    actor: str,
    at: datetime,
    reason: str,
) -> RetentionRule:
    """Save a new revision of the rule of ``art`` (row locked by the caller). Raises InvalidInput."""
    if not isinstance(keep_production, bool):
        raise InvalidInput(f"keep_production must be true or false, got {keep_production!r}")
    doc = {
        "format": FORMAT,
        "keep_last": _count(keep_last, "keep_last"),
        "keep_days": _count(keep_days, "keep_days"),
        "keep_production": keep_production,
        "min_days": _count(min_days, "min_days"),
    }
    if doc["keep_last"] is None and doc["keep_days"] is None and not keep_production:
        raise InvalidInput(
            "a retention rule must keep something: give keep_last, keep_days or keep_production",
            hint="e.g. mk retention set NAME --keep-last 10 --keep-days 30 --keep-production",
        )
    last = session.scalar(select(func.max(RetentionRuleRow.revision)).where(RetentionRuleRow.artifact_id == art.id))
    row = RetentionRuleRow(
        artifact_id=art.id, revision=(last or 0) + 1, document=doc, actor=actor, at=at, reason=reason
    )
    session.add(row)
    session.flush()  # two concurrent saves: the loser fails on (artifact, revision) and is retried
    audit.record(
        session,
        action="retention.rule",
        actor=actor,
        artifact=art.name,
        subject=art.name,
        reason=reason,
        data={"revision": row.revision, "rule": doc},
        at=at,
    )
    return _rule(row, art.name)


def rule(session: Session, art: ArtifactRow) -> RetentionRule | None:
    row = session.scalars(
        select(RetentionRuleRow)
        .where(RetentionRuleRow.artifact_id == art.id)
        .order_by(RetentionRuleRow.revision.desc())
        .limit(1)
    ).one_or_none()
    return _rule(row, art.name) if row is not None else None


def rule_history(session: Session, art: ArtifactRow) -> list[RetentionRule]:
    stmt = select(RetentionRuleRow).where(RetentionRuleRow.artifact_id == art.id).order_by(RetentionRuleRow.revision)
    return [_rule(r, art.name) for r in session.scalars(stmt)]


def _rule(row: RetentionRuleRow, name: str) -> RetentionRule:
    doc = row.document
    if doc.get("format") != FORMAT or any(p not in doc for p in _PARTS):
        raise InvalidInput(f"retention rule revision {row.revision} of {name!r} has an unknown format")
    return RetentionRule(
        artifact=name,
        revision=row.revision,
        keep_last=doc["keep_last"],
        keep_days=doc["keep_days"],
        keep_production=bool(doc["keep_production"]),
        min_days=doc["min_days"],
        actor=row.actor,
        at=row.at,
        reason=row.reason,
    )


# -- holds -------------------------------------------------------------------------------------


def hold(session: Session, name: str, row: VersionRow, *, actor: str, at: datetime, reason: str) -> RetentionHold:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("a hold needs a reason (e.g. the legal matter it is kept for)")
    h = RetentionHoldRow(version_id=row.id, reason=reason, placed_by=actor, placed_at=at)
    session.add(h)
    session.flush()
    audit.record(
        session,
        action="retention.hold",
        actor=actor,
        artifact=name,
        subject=f"{name}@{row.semver}",
        reason=reason,
        data={"hold": h.id},
        at=at,
    )
    return _hold(h, VersionKey(name, row.semver))


def release(session: Session, name: str, row: VersionRow, *, actor: str, at: datetime, reason: str) -> list[RetentionHold]:
    """Release every active hold on ``row``. Raises InvalidInput (no reason), HoldNotFound."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("releasing a hold needs a reason")
    rows = active_holds(session, [row.id])
    if not rows:
        raise HoldNotFound(f"{name}@{row.semver} has no active hold")
    for h in rows:
        h.released_by = actor
        h.released_at = at
        h.release_reason = reason
    session.flush()
    audit.record(
        session,
        action="retention.release",
        actor=actor,
        artifact=name,
        subject=f"{name}@{row.semver}",
        reason=reason,
        data={"holds": [h.id for h in rows]},
        at=at,
    )
    key = VersionKey(name, row.semver)
    return [_hold(h, key) for h in rows]


def active_holds(session: Session, version_ids: Sequence[int]) -> list[RetentionHoldRow]:
    if not version_ids:
        return []
    stmt = (
        select(RetentionHoldRow)
        .where(RetentionHoldRow.version_id.in_(list(version_ids)), RetentionHoldRow.released_at.is_(None))
        .order_by(RetentionHoldRow.id)
    )
    return list(session.scalars(stmt))


def holds(session: Session, art: ArtifactRow | None, *, include_released: bool) -> list[RetentionHold]:
    stmt = (
        select(RetentionHoldRow, ArtifactRow.name, VersionRow.major, VersionRow.minor, VersionRow.patch)
        .join(VersionRow, VersionRow.id == RetentionHoldRow.version_id)
        .join(ArtifactRow, ArtifactRow.id == VersionRow.artifact_id)
        .order_by(RetentionHoldRow.placed_at, RetentionHoldRow.id)
    )
    if art is not None:
        stmt = stmt.where(ArtifactRow.id == art.id)
    if not include_released:
        stmt = stmt.where(RetentionHoldRow.released_at.is_(None))
    return [_hold(h, VersionKey(n, f"{a}.{b}.{c}")) for h, n, a, b, c in session.execute(stmt)]


def _hold(h: RetentionHoldRow, key: VersionKey) -> RetentionHold:
    return RetentionHold(
        id=h.id,
        version=key,
        reason=h.reason,
        placed_by=h.placed_by,
        placed_at=h.placed_at,
        released_by=h.released_by,
        released_at=h.released_at,
        release_reason=h.release_reason,
    )
