"""The governance part of EmbeddedRegistry: stages, promotion policies, approvals, rollback.

A mixin over the registry's unit of work (``self._uow``) and actor
(``self._user``); the rules themselves live in ``stages.py``, ``policies.py``
and ``approvals.py``. Contract docstrings are on ``Registry`` (``api.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelkeep.db.models import utcnow
from modelkeep.errors import InvalidInput
from modelkeep.registry import approvals as _approvals
from modelkeep.registry import policies as _policies
from modelkeep.registry import stages as _stages
from modelkeep.registry import versions as _versions
from modelkeep.registry.names import VersionRef, check_name
from modelkeep.registry.types import Approval, PendingApproval, Policy, PolicyReport, Stage, Transition, VersionKey

if TYPE_CHECKING:
    from modelkeep.db.uow import UnitOfWork

__all__ = ["Governance"]


class Governance:
    _uow: UnitOfWork
    _user: str

    # -- stages ---------------------------------------------------------------------

    def transition(
        self,
        ref: str,
        stage: Stage | str,
        *,
        reason: str = "",
        force: bool = False,
        expected_production: str | None = None,
    ) -> Transition:
        parsed = VersionRef.parse(ref)
        target = _stage(stage)
        _check_reason(reason)
        if target is Stage.PRODUCTION and expected_production is None:
            # What production is as this promotion begins: a concurrent one that moves it
            # first makes this one fail instead of silently moving the alias twice.
            expected_production = self._uow.read(lambda db: _production_semver(db, parsed.artifact))
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, parsed.artifact, lock=True)
            _, row = _versions.find(db, parsed, art)
            return _stages.transition(
                db, art, row, target, actor=self._user, at=now, reason=reason, force=force, expected=expected_production
            )

        return self._uow.write(run)

    def rollback(self, name: str, *, to: str | None = None, reason: str = "") -> Transition:
        check_name(name)
        _check_reason(reason)
        target = None
        if to is not None:
            target = VersionRef.parse(to) if "@" in to else VersionRef.of(name, to)
            if target.artifact != name:
                raise InvalidInput(f"{to} is not a version of {name!r}")
        expected = self._uow.read(lambda db: _production_semver(db, name)) or None
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, name, lock=True)
            return _stages.rollback(db, art, target, actor=self._user, at=now, reason=reason, expected=expected)

        return self._uow.write(run)

    def stages(self, name: str) -> dict[str, Stage]:
        check_name(name)

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, name)
            return {semver: stage for semver, stage in _stages.of_artifact(db, art.id)}

        return self._uow.read(run)

    # -- policies -------------------------------------------------------------------

    def set_policy(self, name: str, document: str, *, reason: str = "") -> Policy:
        check_name(name)
        _check_reason(reason)
        _policies.parse(document)  # refuse a bad document before taking any lock
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, name, lock=True)
            return _policies.save(db, art, document, actor=self._user, at=now, reason=reason)

        return self._uow.write(run)

    def policy(self, name: str) -> Policy | None:
        check_name(name)
        return self._uow.read(lambda db: _policies.current(db, _versions.artifact_row(db, name)))

    def policy_history(self, name: str) -> list[Policy]:
        check_name(name)
        return self._uow.read(lambda db: _policies.history(db, _versions.artifact_row(db, name)))

    def check_policy(self, ref: str) -> PolicyReport:
        parsed = VersionRef.parse(ref)

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, parsed.artifact)
            _, row = _versions.find(db, parsed, art)
            return _stages.check(db, art, row)

        return self._uow.read(run)

    # -- approvals ------------------------------------------------------------------

    def request_approval(self, ref: str, *, comment: str = "") -> Approval:
        return self._approval(ref, _approvals.REQUEST, comment)

    def approve(self, ref: str, *, comment: str = "") -> Approval:
        return self._approval(ref, _approvals.APPROVE, comment)

    def reject(self, ref: str, *, comment: str) -> Approval:
        return self._approval(ref, _approvals.REJECT, comment)

    def _approval(self, ref: str, decision: str, comment: str) -> Approval:
        parsed = VersionRef.parse(ref)
        now = utcnow()

        def run(db):  # type: ignore[no-untyped-def]
            art = _versions.artifact_row(db, parsed.artifact, lock=True)
            _, row = _versions.find(db, parsed, art)
            key = VersionKey(art.name, row.semver)
            if decision == _approvals.REQUEST:
                return _approvals.request(db, art, row, key, actor=self._user, at=now, comment=comment)
            return _approvals.decide(db, art, row, key, decision, actor=self._user, at=now, comment=comment)

        return self._uow.write(run)

    def approvals(self, ref: str) -> list[Approval]:
        parsed = VersionRef.parse(ref)

        def run(db):  # type: ignore[no-untyped-def]
            name, row = _versions.find(db, parsed)
            return _approvals.history(db, row.id, VersionKey(name, row.semver))

        return self._uow.read(run)

    def pending_approvals(self, name: str | None = None) -> list[PendingApproval]:
        if name is not None:
            check_name(name)
        return self._uow.read(
            lambda db: _approvals.pending(db, _versions.artifact_row(db, name) if name is not None else None)
        )


def _production_semver(db, name: str) -> str:  # type: ignore[no-untyped-def]
    art = _versions.artifact_row(db, name)
    row = _stages.production(db, art.id)
    return row.semver if row is not None else ""


def _stage(stage: Stage | str) -> Stage:
    try:
        return Stage(stage)
    except ValueError:
        raise InvalidInput(f"unknown stage {stage!r} ({', '.join(s.value for s in Stage)})") from None


def _check_reason(reason: str) -> None:
    if not isinstance(reason, str):
        raise InvalidInput(f"reason must be a string, got {type(reason).__name__}")

