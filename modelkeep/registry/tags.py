"""Version tags: mutable key/value labels beside an immutable version, with history.

Every change (set, change, removal) appends a ``tag_changes`` row with actor,
time, previous value and reason; setting a tag to the value it already has
records nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.db.models import TagChangeRow, TagRow, VersionRow
from modelkeep.errors import InvalidInput, TagNotFound
from modelkeep.registry import audit
from modelkeep.registry.names import check_tag_key
from modelkeep.registry.types import TagChange, VersionKey

__all__ = ["MAX_VALUE", "apply_tags", "check_tags", "history", "set_tag"]

MAX_VALUE = 4096


def check_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Validated copy of ``tags``. Raises InvalidName (key) or InvalidInput (value)."""
    if not tags:
        return {}
    return {check_tag_key(k): _check_value(k, v) for k, v in tags.items()}


def _check_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"tag {key!r}: value must be a string, got {type(value).__name__}")
    if len(value) > MAX_VALUE:
        raise InvalidInput(f"tag {key!r}: value longer than {MAX_VALUE} characters")
    return value


def apply_tags(
    session: Session,
    version_id: int,
    tags: Mapping[str, str],
    *,
    subject: str,
    actor: str,
    at: datetime,
    reason: str,
    known_new: bool = False,
) -> None:
    """Set each of ``tags`` (validated) on a version, recording the ones that change.

    ``subject`` names the version in the audit trail (``team/fraud@1.2.0``).

    ``known_new``: the version was just inserted, so it has no tags to read first.
    """
    if not tags:
        return
    current = (
        {}
        if known_new
        else {
            t.key: t
            for t in session.scalars(select(TagRow).where(TagRow.version_id == version_id, TagRow.key.in_(tags)))
        }
    )
    for key in sorted(tags):
        value = tags[key]
        row = current.get(key)
        if row is not None and row.value == value:
            continue
        previous = row.value if row is not None else None
        if row is None:
            session.add(TagRow(version_id=version_id, key=key, value=value))
        else:
            row.value = value
        session.add(
            TagChangeRow(
                version_id=version_id,
                key=key,
                value=value,
                previous=previous,
                actor=actor,
                at=at,
                reason=reason,
            )
        )
        _audit(session, subject, key, value, previous, actor=actor, at=at, reason=reason)


def _audit(
    session: Session, subject: str, key: str, value: str | None, previous: str | None, *, actor: str, at: datetime, reason: str
) -> None:
    audit.record(
        session,
        action="tag.remove" if value is None else "tag.set",
        actor=actor,
        artifact=subject.rpartition("@")[0],
        subject=subject,
        reason=reason,
        data={"key": key, "value": value, "previous": previous},
        at=at,
    )


def set_tag(
    session: Session,
    version: VersionRow,
    key_of: VersionKey,
    key: str,
    value: str | None,
    *,
    actor: str,
    at: datetime,
    reason: str,
) -> TagChange:
    """Set or (``value`` None) remove one tag. Raises TagNotFound when removing an absent tag."""
    check_tag_key(key)
    row = session.scalars(select(TagRow).where(TagRow.version_id == version.id, TagRow.key == key)).one_or_none()
    previous = row.value if row is not None else None
    if value is None:
        if row is None:
            raise TagNotFound(f"version {key_of} has no tag {key!r}")
        session.delete(row)
    else:
        _check_value(key, value)
        if row is None:
            session.add(TagRow(version_id=version.id, key=key, value=value))
        else:
            row.value = value
    if value != previous:
        session.add(
            TagChangeRow(
                version_id=version.id, key=key, value=value, previous=previous, actor=actor, at=at, reason=reason
            )
        )
        _audit(session, str(key_of), key, value, previous, actor=actor, at=at, reason=reason)
    return TagChange(key_of, key, value, previous, actor, at, reason)


def history(session: Session, version_id: int, key_of: VersionKey, key: str | None) -> list[TagChange]:
    stmt = select(TagChangeRow).where(TagChangeRow.version_id == version_id)
    if key is not None:
        stmt = stmt.where(TagChangeRow.key == check_tag_key(key))
    stmt = stmt.order_by(TagChangeRow.at, TagChangeRow.id)
    return [
        TagChange(key_of, r.key, r.value, r.previous, r.actor, r.at, r.reason) for r in session.scalars(stmt)
    ]
