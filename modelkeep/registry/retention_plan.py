"""Retention plans: which live versions a rule deletes, every reason why, and carrying it out.

A version in scope (an artifact with a rule) is kept when any of these holds:

* it is among the newest ``keep_last`` live versions (by semver);
* it is younger than ``keep_days`` days, or than ``min_days`` days (the minimum period);
* ``keep_production`` is on and the ``production`` alias ever pointed at it (alias history);
* an alias points at it now, or an active legal hold names it;
* a lineage edge of any type (``contains`` of a bundle included) leads to it from a
  kept version, of any artifact, found transitively (a fixpoint: keeping a version
  keeps what it was made from).

Everything else is deleted. :func:`apply` computes the plan with the same code,
inside the write transaction that marks the tombstones, so a plan and the apply
that follows it agree as long as nothing changed in between. Apply takes the
locks of the artifact rows in scope (in name order), which also serializes it
with alias moves and holds on those artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from modelkeep.db.models import AliasMoveRow, AliasRow, ArtifactRow, EdgeRow, RetentionRuleRow, VersionRow
from modelkeep.errors import InvalidInput
from modelkeep.registry import audit
from modelkeep.registry.records import semver_of
from modelkeep.registry.retention import active_holds, rule
from modelkeep.registry.types import RetentionDecision, RetentionPlan, RetentionRule, VersionKey

__all__ = ["apply", "plan", "scope"]

_IN_CHUNK = 500
_NEWEST_FIRST = (VersionRow.major.desc(), VersionRow.minor.desc(), VersionRow.patch.desc())
PRODUCTION = "production"


def scope(session: Session, name: str | None, *, lock: bool) -> list[ArtifactRow]:
    """The artifacts a plan covers: ``name`` alone, or every artifact with a rule; sorted by name."""
    stmt = select(ArtifactRow).order_by(ArtifactRow.name)
    if name is not None:
        stmt = stmt.where(ArtifactRow.name == name)
    else:
        stmt = stmt.where(ArtifactRow.id.in_(select(RetentionRuleRow.artifact_id)))
    if lock:
        stmt = stmt.with_for_update()
    return list(session.scalars(stmt))


def plan(session: Session, arts: Sequence[ArtifactRow], now: datetime) -> tuple[RetentionPlan, list[VersionRow]]:
    """The decisions for every live version of ``arts``, and the rows to delete."""
    entries: list[tuple[ArtifactRow, VersionRow]] = []
    keep: dict[int, list[str]] = {}
    misses: dict[int, list[str]] = {}
    for art in arts:
        r = rule(session, art)
        rows = list(
            session.scalars(
                select(VersionRow)
                .where(VersionRow.artifact_id == art.id, VersionRow.deleted_at.is_(None))
                .order_by(*_NEWEST_FIRST)
            )
        )
        produced = _production_ids(session, art) if r is not None and r.keep_production else set()
        for i, row in enumerate(rows):
            entries.append((art, row))
            keep[row.id], misses[row.id] = _rule_reasons(r, art.name, i, row, now, produced)
    ids = [row.id for _, row in entries]
    for vid, alias in _aliases(session, ids):
        keep[vid].append(f"alias {alias} points at it")
    for h in active_holds(session, ids):
        keep[h.version_id].append(f"legal hold: {h.reason}")

    first = {vid for vid in ids if not keep[vid]}
    candidates = set(first)
    edges = _edges_into(session, candidates)
    changed = True
    while changed:  # keeping a version keeps what it points at, transitively
        changed = False
        for etype, src_id, src_key, tgt_id in edges:
            if tgt_id in candidates and src_id not in candidates:
                candidates.discard(tgt_id)
                changed = True
    for etype, src_id, src_key, tgt_id in edges:
        if tgt_id in first and tgt_id not in candidates and src_id not in candidates:
            what = f"member of bundle {src_key}" if etype == "contains" else f"{etype} edge from kept {src_key}"
            keep[tgt_id].append(what)

    decisions = []
    doomed = []
    for art, row in entries:
        key = VersionKey(art.name, row.semver)
        if row.id in candidates:
            reasons = (*misses[row.id], "no alias, hold or lineage edge from a kept version")
            decisions.append(RetentionDecision(key, row.created_at, True, reasons))
            doomed.append(row)
        else:
            decisions.append(RetentionDecision(key, row.created_at, False, tuple(keep[row.id])))
    return RetentionPlan(at=now, decisions=tuple(decisions), applied=False), doomed


def apply(
    session: Session, arts: Sequence[ArtifactRow], now: datetime, *, actor: str, reason: str
) -> RetentionPlan:
    """Carry out the plan for ``arts`` (rows locked by :func:`scope`): tombstone each doomed version."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("applying retention needs a reason (recorded on every deleted version)")
    result, doomed = plan(session, arts, now)
    names = {a.id: a.name for a in arts}
    why = {d.version: d.reasons for d in result.decisions}
    for row in doomed:
        row.deleted_at = now
        row.deleted_by = actor
        row.deleted_reason = reason
        key = VersionKey(names[row.artifact_id], row.semver)
        audit.record(
            session,
            action="version.delete",
            actor=actor,
            artifact=key.artifact,
            subject=str(key),
            reason=reason,
            data={"by": "retention", "digest": row.digest, "files_digest": row.files_digest, "why": list(why[key])},
            at=now,
        )
    session.flush()
    return RetentionPlan(at=result.at, decisions=result.decisions, applied=True)


def _rule_reasons(
    r: RetentionRule | None, name: str, index: int, row: VersionRow, now: datetime, produced: set[int]
) -> tuple[list[str], list[str]]:
    """(reasons to keep, rule parts it fails) for one version."""
    if r is None:
        return [f"no retention rule for {name}"], []
    keep: list[str] = []
    miss: list[str] = []
    age = now - row.created_at
    if r.keep_last is not None:
        (keep if index < r.keep_last else miss).append(
            f"among the newest {r.keep_last}" if index < r.keep_last else f"not among the newest {r.keep_last}"
        )
    if r.keep_days is not None:
        young = age < timedelta(days=r.keep_days)
        (keep if young else miss).append(
            f"younger than {r.keep_days} days" if young else f"older than {r.keep_days} days"
        )
    if r.keep_production:
        (keep if row.id in produced else miss).append(
            "reached production" if row.id in produced else "never reached production"
        )
    if r.min_days is not None and age < timedelta(days=r.min_days):
        keep.append(f"inside the minimum retention period of {r.min_days} days")
    return keep, miss


def _production_ids(session: Session, art: ArtifactRow) -> set[int]:
    stmt = select(AliasMoveRow.new_version_id).where(
        AliasMoveRow.artifact_id == art.id, AliasMoveRow.alias == PRODUCTION, AliasMoveRow.new_version_id.is_not(None)
    )
    return {vid for vid in session.scalars(stmt)}


def _aliases(session: Session, ids: list[int]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for i in range(0, len(ids), _IN_CHUNK):
        stmt = select(AliasRow.version_id, AliasRow.name).where(AliasRow.version_id.in_(ids[i : i + _IN_CHUNK]))
        out.extend((vid, name) for vid, name in session.execute(stmt.order_by(AliasRow.name)))
    return out


def _edges_into(session: Session, targets: set[int]) -> list[tuple[str, int, VersionKey, int]]:
    """(type, source id, source key, target id) of edges from live versions into ``targets``."""
    src = aliased(VersionRow)
    ids = sorted(targets)
    out = []
    for i in range(0, len(ids), _IN_CHUNK):
        stmt = (
            select(EdgeRow.type, src.id, ArtifactRow.name, src.major, src.minor, src.patch, EdgeRow.target_id)
            .join(src, src.id == EdgeRow.source_id)
            .join(ArtifactRow, ArtifactRow.id == src.artifact_id)
            .where(EdgeRow.target_id.in_(ids[i : i + _IN_CHUNK]), src.deleted_at.is_(None))
            .order_by(EdgeRow.id)
        )
        for etype, sid, name, a, b, c, tid in session.execute(stmt):
            out.append((etype, sid, VersionKey(name, semver_of(a, b, c)), tid))
    return out
