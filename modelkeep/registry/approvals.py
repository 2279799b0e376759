"""Four-eyes approvals: requests, approvals and rejections of versions, with comments.

Each decision is an ``approvals`` row and an audit event. A *round* starts at a
version's latest ``request`` (or at its first decision when none was made): a
new request clears earlier approvals and rejections. The author of a version
may not approve or reject it, and when the artifact's policy lists
``approvers`` only they may. (The server's roles will refine who the actor is;
until then it is the configured user name, ``Settings.user``.)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.db.models import ApprovalRow, ArtifactRow, VersionRow, VersionStageRow
from modelkeep.errors import ApprovalNotAllowed, ConflictError, InvalidInput
from modelkeep.registry import audit
from modelkeep.registry.policies import ApprovalState, PolicySpec, spec_of
from modelkeep.registry.types import Approval, PendingApproval, Stage, VersionKey

__all__ = ["REQUEST", "APPROVE", "REJECT", "decide", "history", "pending", "request", "state"]

REQUEST, APPROVE, REJECT = "request", "approve", "reject"
MAX_COMMENT = 4096


def _round(session: Session, version_id: int) -> list[ApprovalRow]:
    rows = list(session.scalars(select(ApprovalRow).where(ApprovalRow.version_id == version_id).order_by(ApprovalRow.id)))
    starts = [i for i, r in enumerate(rows) if r.decision == REQUEST]
    return rows[starts[-1] :] if starts else rows


def state(session: Session, version_id: int) -> ApprovalState:
    rows = _round(session, version_id)
    approved = tuple(dict.fromkeys(r.actor for r in rows if r.decision == APPROVE))
    rejected = tuple((r.actor, r.comment) for r in rows if r.decision == REJECT)
    return ApprovalState(approved, rejected)


def _check_comment(comment: str) -> str:
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise InvalidInput(f"a comment is a string of at most {MAX_COMMENT} characters")
    return comment


def request(
    session: Session, art: ArtifactRow, version: VersionRow, key: VersionKey, *, actor: str, at: datetime, comment: str
) -> Approval:
    """Open a new approval round for ``version``."""
    _check_comment(comment)
    return _add(session, art, version, key, REQUEST, actor=actor, at=at, comment=comment)


def decide(
    session: Session,
    art: ArtifactRow,
    version: VersionRow,
    key: VersionKey,
    decision: str,
    *,
    actor: str,
    at: datetime,
    comment: str,
) -> Approval:
    """Approve or reject ``version`` as ``actor``. Raises ApprovalNotAllowed, ConflictError (twice)."""
    if decision not in (APPROVE, REJECT):
        raise InvalidInput(f"decision must be {APPROVE!r} or {REJECT!r}")
    _check_comment(comment)
    if decision == REJECT and not comment.strip():
        raise InvalidInput("a rejection needs a comment saying why (--comment)")
    if actor == version.author:
        raise ApprovalNotAllowed(
            f"{actor} is the author of {key} and cannot {decision} it: four-eyes means someone else does"
        )
    _, spec = spec_of(session, art.id)
    if spec.approvers and actor not in spec.approvers:
        raise ApprovalNotAllowed(
            f"{actor} may not {decision} versions of {art.name}: the policy names {', '.join(spec.approvers)}"
        )
    current = state(session, version.id)
    if decision == APPROVE and actor in current.approved_by:
        raise ConflictError(f"{actor} already approved {key} in this round")
    return _add(session, art, version, key, decision, actor=actor, at=at, comment=comment)


def _add(
    session: Session,
    art: ArtifactRow,
    version: VersionRow,
    key: VersionKey,
    decision: str,
    *,
    actor: str,
    at: datetime,
    comment: str,
) -> Approval:
    session.add(
        ApprovalRow(version_id=version.id, artifact_id=art.id, decision=decision, actor=actor, at=at, comment=comment)
    )
    audit.record(
        session,
        action=f"approval.{decision}",
        actor=actor,
        artifact=art.name,
        subject=str(key),
        reason=comment,
        data={"version": key.version, "decision": decision},
        at=at,
    )
    return Approval(key, decision, actor, at, comment)


def history(session: Session, version_id: int, key: VersionKey) -> list[Approval]:
    rows = session.scalars(select(ApprovalRow).where(ApprovalRow.version_id == version_id).order_by(ApprovalRow.id))
    return [Approval(key, r.decision, r.actor, r.at, r.comment) for r in rows]


def pending(session: Session, art: ArtifactRow | None) -> list[PendingApproval]:
    """Versions with an open request: not rejected, short of approvals, not yet in production or archived."""
    stmt = (
        select(ApprovalRow.version_id, ArtifactRow)
        .join(ArtifactRow, ArtifactRow.id == ApprovalRow.artifact_id)
        .where(ApprovalRow.decision == REQUEST)
        .distinct()
    )
    if art is not None:
        stmt = stmt.where(ApprovalRow.artifact_id == art.id)
    out: list[PendingApproval] = []
    specs: dict[int, PolicySpec] = {}
    for version_id, artifact in session.execute(stmt):
        version = session.get(VersionRow, version_id)
        if version is None or version.deleted_at is not None:
            continue
        stage = session.get(VersionStageRow, version_id)
        if stage is not None and stage.stage in (Stage.PRODUCTION, Stage.ARCHIVED):
            continue
        rows = _round(session, version_id)
        if not rows or rows[0].decision != REQUEST or any(r.decision == REJECT for r in rows):
            continue
        if artifact.id not in specs:
            specs[artifact.id] = spec_of(session, artifact.id)[1]
        spec = specs[artifact.id]
        approved = tuple(
            a
            for a in dict.fromkeys(r.actor for r in rows if r.decision == APPROVE)
            if a != version.author and (not spec.approvers or a in spec.approvers)
        )
        required = max(spec.required_approvals, 1)
        if len(approved) >= required:
            continue
        req = rows[0]
        out.append(
            PendingApproval(
                VersionKey(artifact.name, version.semver),
                req.actor,
                req.at,
                req.comment,
                approved,
                required,
                spec.approvers,
            )
        )
    out.sort(key=lambda p: (p.requested_at, str(p.version)))
    return out
