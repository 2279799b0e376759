"""Lifecycle stages, promotion and rollback: one transaction per stage change.

Stages: ``none → staging → validation → production → archived`` by default;
the artifact's policy may allow other transitions (``registry/policies.py``).
Every change is a ``stage.change`` audit event with actor, time and reason.

Promotion (a change to ``production``), under the artifact row lock:

1. the production alias must still point where the caller saw it
   (``expected``: a compare-and-set, so of two promotions racing, the second
   gets ConflictError and the alias history shows one move);
2. the policy is evaluated against the candidate and the current production
   version; a refusal raises PromotionRefused carrying the full report, and
   nothing changes (the transaction rolls back);
3. the candidate's stage becomes ``production``, the ``production`` alias
   moves to it, and the version it replaced is archived (or, with
   ``previous_production: keep``, stays in production).

``force`` (with a reason) overrides a refused policy or a transition the
artifact does not allow; it is recorded as a ``promotion.override`` event
holding the report.

Rollback returns the production alias to a version that served in production
before (by default the previous one, from the alias history, skipping
versions already rolled back from). It is not gated by the policy, since the
target passed it when it was promoted, but it takes the same recorded path:
stage changes, the alias move and a ``promotion.rollback`` event.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from modelkeep.db.models import AliasMoveRow, AliasRow, ArtifactRow, AuditEventRow, VersionRow, VersionStageRow
from modelkeep.errors import ConflictError, InvalidInput, PromotionRefused, TransitionNotAllowed, VersionNotFound
from modelkeep.registry import aliases as _aliases
from modelkeep.registry import approvals as _approvals
from modelkeep.registry import audit, policies
from modelkeep.registry import versions as _versions
from modelkeep.registry.evidence import evaluations_of
from modelkeep.registry.names import VersionRef
from modelkeep.registry.records import version_records
from modelkeep.registry.signatures import has_valid_signature
from modelkeep.registry.types import PolicyReport, Stage, Transition, VersionKey

__all__ = ["PRODUCTION_ALIAS", "check", "guard_alias", "of_artifact", "production", "rollback", "stage_of", "transition"]

PRODUCTION_ALIAS = "production"

_PRODUCTION = (
    select(VersionRow)
    .join(AliasRow, AliasRow.version_id == VersionRow.id)
    .where(AliasRow.artifact_id == bindparam("aid"), AliasRow.name == PRODUCTION_ALIAS)
)


def stage_of(session: Session, version_id: int) -> Stage:
    row = session.get(VersionStageRow, version_id)  # the identity map answers a second read
    return Stage(row.stage) if row is not None else Stage.NONE


def of_artifact(session: Session, art_id: int) -> list[tuple[str, Stage]]:
    """(semver, stage) of every version of an artifact that left ``none``."""
    stmt = (
        select(VersionRow.major, VersionRow.minor, VersionRow.patch, VersionStageRow.stage)
        .join(VersionStageRow, VersionStageRow.version_id == VersionRow.id)
        .where(VersionStageRow.artifact_id == art_id)
    )
    return [(f"{a}.{b}.{c}", Stage(s)) for a, b, c, s in session.execute(stmt)]


def production(session: Session, art_id: int) -> VersionRow | None:
    """The version the production alias points at, or None."""
    return session.scalars(_PRODUCTION, {"aid": art_id}).one_or_none()


def _set_stage(
    session: Session,
    art: ArtifactRow,
    version: VersionRow,
    stage: Stage,
    *,
    actor: str,
    at: datetime,
    reason: str,
    **data: object,
) -> Stage:
    row = session.get(VersionStageRow, version.id)
    before = Stage(row.stage) if row is not None else Stage.NONE
    if row is None:
        session.add(VersionStageRow(version_id=version.id, artifact_id=art.id, stage=stage.value, updated_at=at, updated_by=actor))
        session.flush()  # into the identity map: a later get() in this transaction must see it
    else:
        row.stage = stage.value
        row.updated_at = at
        row.updated_by = actor
    audit.record(
        session,
        action="stage.change",
        actor=actor,
        artifact=art.name,
        subject=f"{art.name}@{version.semver}",
        reason=reason,
        data={"version": version.semver, "from": before.value, "to": stage.value, **data},
        at=at,
    )
    return before


def guard_alias(session: Session, art: ArtifactRow, alias: str) -> None:
    """Refuse a plain move of ``production`` on an artifact with a policy: promotion gates it."""
    if alias == PRODUCTION_ALIAS and policies.spec_of(session, art.id)[0] is not None:
        raise TransitionNotAllowed(
            f"production of {art.name} is governed by its promotion policy: it moves only by promotion or rollback",
            hint=f"mk promote {art.name}@VERSION --reason ..., or mk rollback {art.name} --reason ...",
        )


def check(session: Session, art: ArtifactRow, candidate: VersionRow) -> PolicyReport:
    """What the policy says now about promoting ``candidate`` (changes nothing)."""
    revision, spec = policies.spec_of(session, art.id)
    return _evaluate(session, art, spec, revision, candidate, production(session, art.id))


def _evaluate(
    session: Session,
    art: ArtifactRow,
    spec: policies.PolicySpec,
    revision: int | None,
    candidate: VersionRow,
    current: VersionRow | None,
) -> PolicyReport:
    rows = [candidate] if current is None else [candidate, current]
    records = version_records(session, rows, {art.id: art.name})  # both in one query
    approvals = _approvals.state(session, candidate.id) if spec.required_approvals else policies.ApprovalState()
    signed = None
    if spec.signed_by:
        signed = has_valid_signature(session, candidate, [k.encode() for k in spec.signed_by])
    evaluations = None
    if spec.require_evaluation or spec.slice_gap is not None:
        evaluations = (
            evaluations_of(session, candidate.id),
            evaluations_of(session, current.id) if current is not None else [],
        )
    return policies.evaluate(
        spec, revision, records[0], records[1] if current is not None else None, approvals, signed, evaluations
    )


def transition(
    session: Session,
    art: ArtifactRow,
    version: VersionRow,
    stage: Stage,
    *,
    actor: str,
    at: datetime,
    reason: str,
    force: bool = False,
    expected: str | None = None,
) -> Transition:
    """Move ``version`` to ``stage`` (the artifact row must be locked by the caller).

    ``expected``: for promotions, the semver the production alias must point at
    now ("" = no production version). Raises TransitionNotAllowed,
    PromotionRefused, ConflictError, InvalidInput (force without a reason).
    """
    if force and not reason.strip():
        raise InvalidInput("an override (--force) needs a reason saying why (--reason)")
    key = VersionKey(art.name, version.semver)
    # Rows held here stay in the session's (weak) identity map: _set_stage reads them again for free.
    held = [session.get(VersionStageRow, version.id)]
    before = Stage(held[0].stage) if held[0] is not None else Stage.NONE
    if before is stage:
        raise ConflictError(f"{key} is already in {stage.value}")
    revision, spec = policies.spec_of(session, art.id)
    allowed = spec.transitions.get(before, frozenset())
    overridden: list[str] = []
    if stage not in allowed:
        if not force:
            can = ", ".join(sorted(s.value for s in allowed)) or "none"
            raise TransitionNotAllowed(
                f"{key} is in {before.value}; {before.value} → {stage.value} is not allowed for {art.name} "
                f"(from {before.value}: {can})",
                hint="an admin may override with --force --reason",
            )
        overridden.append(f"transition {before.value} → {stage.value}")

    current = production(session, art.id)
    if current is not None:
        held.append(session.get(VersionStageRow, current.id))
    if stage is Stage.PRODUCTION:
        now = current.semver if current is not None else ""
        if expected is not None and now != expected:
            saw = expected or "no production version"
            raise ConflictError(
                f"production of {art.name} is {now or 'unset'} now, not {saw} as when this promotion began: "
                "another promotion won; check again and retry"
            )
        report = _evaluate(session, art, spec, revision, version, current)
        if not report.passed:
            if not force:
                failed = ", ".join(r.rule for r in report.failures)
                raise PromotionRefused(
                    f"policy r{revision} refuses {key} for production: {failed}",
                    report=report,
                    hint="fix what failed, or an admin overrides with --force --reason",
                )
            overridden.append("policy: " + ", ".join(r.rule for r in report.failures))
    else:
        report = None
        if current is not None and current.id == version.id:
            raise ConflictError(
                f"{key} is what production points at; promote another version or mk rollback {art.name} first"
            )
    if overridden:
        audit.record(
            session,
            action="promotion.override",
            actor=actor,
            artifact=art.name,
            subject=str(key),
            reason=reason,
            data={
                "version": version.semver,
                "to": stage.value,
                "overridden": overridden,
                "failed": [r.rule for r in report.failures] if report is not None else [],
            },
            at=at,
        )
    move = None
    archived: list[str] = []
    # Only writes from here on, and the reads below see nothing they write: one flush at
    # commit batches the events and updates the audit head once, instead of once per read.
    with session.no_autoflush:
        _set_stage(session, art, version, stage, actor=actor, at=at, reason=reason)
        if stage is Stage.PRODUCTION:
            move = _aliases.move(session, art, PRODUCTION_ALIAS, version, expected=None, actor=actor, at=at, reason=reason)
            if current is not None and current.id != version.id and spec.previous_production == "archive":
                if stage_of(session, current.id) is Stage.PRODUCTION:
                    _set_stage(
                        session, art, current, Stage.ARCHIVED, actor=actor, at=at, reason=f"replaced by {version.semver}"
                    )
                    archived.append(current.semver)
    return Transition(key, before, stage, actor, at, reason, bool(overridden), report, move, tuple(archived))


def rollback(
    session: Session,
    art: ArtifactRow,
    target: VersionRef | None,
    *,
    actor: str,
    at: datetime,
    reason: str,
    expected: str | None = None,
) -> Transition:
    """Point production back at ``target`` or at the previous production version (artifact row locked).

    ``expected``: the semver production must point at now, as for a promotion, so two
    rollbacks started at once go back one version, not two.
    """
    current = production(session, art.id)
    if current is None:
        raise ConflictError(f"{art.name} has no production version to roll back from")
    if expected is not None and current.semver != expected:
        raise ConflictError(
            f"production of {art.name} is {current.semver} now, not {expected} as when this rollback began: "
            "someone else moved it; check again and retry"
        )
    served = _served(session, art.id)
    if target is not None:
        _, row = _versions.find(session, target, art)
        if row.id == current.id:
            raise ConflictError(f"{art.name}@{row.semver} is already production")
        if row.id not in served:
            raise TransitionNotAllowed(
                f"{art.name}@{row.semver} never served in production; rollback only returns to a version that did",
                hint=f"promote it instead: mk promote {art.name}@{row.semver}",
            )
    else:
        left = _rolled_back_from(session, art.name)
        row = None
        for vid in reversed(served):
            candidate = session.get(VersionRow, vid)
            if vid != current.id and candidate is not None and candidate.semver not in left and _live(candidate):
                row = candidate
                break
        if row is None:
            raise VersionNotFound(f"{art.name} has no earlier production version to roll back to")
    key = VersionKey(art.name, row.semver)
    audit.record(
        session,
        action="promotion.rollback",
        actor=actor,
        artifact=art.name,
        subject=f"{art.name}@{PRODUCTION_ALIAS}",
        reason=reason,
        data={"from": current.semver, "to": row.semver},
        at=at,
    )
    before = _set_stage(session, art, row, Stage.PRODUCTION, actor=actor, at=at, reason=reason, rollback=True)
    move = _aliases.move(session, art, PRODUCTION_ALIAS, row, expected=None, actor=actor, at=at, reason=reason)
    archived: tuple[str, ...] = ()
    if stage_of(session, current.id) is Stage.PRODUCTION:
        _set_stage(
            session, art, current, Stage.ARCHIVED, actor=actor, at=at, reason=f"rolled back to {row.semver}", rollback=True
        )
        archived = (current.semver,)
    return Transition(key, before, Stage.PRODUCTION, actor, at, reason, False, None, move, archived, rollback=True)


def _live(row: VersionRow) -> bool:
    return row.deleted_at is None


def _served(session: Session, art_id: int) -> list[int]:
    """Ids of the versions the production alias pointed at, oldest first, each once at its last time."""
    stmt = (
        select(AliasMoveRow.new_version_id)
        .where(AliasMoveRow.artifact_id == art_id, AliasMoveRow.alias == PRODUCTION_ALIAS)
        .order_by(AliasMoveRow.at, AliasMoveRow.id)
    )
    order = [vid for vid in session.scalars(stmt) if vid is not None]
    return list(dict.fromkeys(reversed(order)))[::-1]


def _rolled_back_from(session: Session, name: str) -> set[str]:
    stmt = select(AuditEventRow.data).where(AuditEventRow.artifact == name, AuditEventRow.action == "promotion.rollback")
    return {json.loads(d).get("from") for d in session.scalars(stmt)}
