"""The audit trail: one append-only, hash-chained list of events per registry.

Every mutation of the registry calls :func:`record` inside its own write
transaction, so the event commits (or rolls back) with the change it describes.

Chain format (version 1). Event ``n`` stores ``previous`` = digest of event
``n - 1`` (64 zero hex digits for event 1) and ``digest`` = BLAKE3 of the
canonical JSON array::

    [1, seq, at, actor, action, artifact, subject, reason, data, previous]

``at`` is ISO 8601 UTC with microseconds (``2026-03-01T12:00:00.000000+00:00``),
``artifact`` is null for registry-wide events, ``data`` is a JSON object, and
canonical JSON means sorted keys, no spaces, UTF-8 (``registry/canon.py``).
``data`` is stored as that canonical text, so verification hashes the stored
bytes as they are, without decoding them.

Appending is serialized by the single ``audit_head`` row (newest seq and
digest), read ``FOR UPDATE`` on PostgreSQL; on SQLite every write transaction
already holds the database write lock (``BEGIN IMMEDIATE``). ``seq`` is the
primary key, so a writer that skipped the lock fails on the constraint and
the unit of work retries it in a fresh transaction. :func:`record` must run in
a write transaction (``UnitOfWork.write``), never in a read one.

Events have no foreign keys: they name artifacts and versions by name, and
survive the deletion of what they describe.

:func:`verify` walks the chain in order and names the first event that is not
what was recorded: edited in place, deleted, inserted or moved (reordered).
Anyone who can write the database AND knows this format can rewrite the whole
chain consistently; keep the head digest (``mk audit verify`` prints it)
somewhere else to detect that too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import blake3
from json.encoder import encode_basestring as _quote  # the C escaper json.dumps uses (ensure_ascii=False)
from sqlalchemy import select
from sqlalchemy.orm import Session

from modelkeep.db.models import AuditEventRow, AuditHeadRow, utcnow
from modelkeep.errors import IntegrityError, InvalidInput
from modelkeep.registry.canon import json_value
from modelkeep.registry.types import AuditProblem, AuditReport, Event, GcReport
from modelkeep.store.digest import Digest

__all__ = [
    "FORMAT",
    "GENESIS",
    "Event",
    "event_digest",
    "events",
    "record",
    "record_gc",
    "verify",
]

FORMAT = 1
GENESIS = "blake3:" + "0" * 64
"""The ``previous`` digest of the first event."""

_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_HEAD_KEY = "modelkeep.audit_head"
_COLUMNS = (
    AuditEventRow.seq,
    AuditEventRow.at,
    AuditEventRow.actor,
    AuditEventRow.action,
    AuditEventRow.artifact,
    AuditEventRow.subject,
    AuditEventRow.reason,
    AuditEventRow.data,
    AuditEventRow.previous,
    AuditEventRow.digest,
)
_RAW = (
    "SELECT seq, at, actor, action, artifact, subject, reason, data, previous, digest FROM audit_events ORDER BY seq"
)
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def event_digest(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    artifact: str | None,
    subject: str,
    reason: str,
    data: Mapping[str, Any],
    previous: str,
) -> str:
    """``blake3:<hex>`` of the canonical form of one event (see the module docstring)."""
    return _digest(seq, _iso(at), actor, action, artifact, subject, reason, _dumps(data), previous)


def _digest(
    seq: int, at: str, actor: str, action: str, artifact: str | None, subject: str, reason: str, data: str, previous: str
) -> str:
    """The same, from the stored text of ``data`` (canonical JSON) and the ISO form of ``at``.

    Built by concatenation: ``_dumps`` of the whole array would give the same bytes,
    but verifying 100,000 events must not decode and re-encode every ``data``.
    """
    art = "null" if artifact is None else _quote(artifact)
    body = f'[{FORMAT},{seq},{_quote(at)},{_quote(actor)},{_quote(action)},{art},{_quote(subject)},{_quote(reason)},{data},"{previous}"]'
    return "blake3:" + blake3.blake3(body.encode()).hexdigest()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _stored_iso(at: Any) -> str:
    """ISO form of an ``at`` as the driver returns it: SQLite gives the stored text, PostgreSQL a datetime."""
    if isinstance(at, str):  # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) on SQLite
        return at.replace(" ", "T", 1) + "+00:00"
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat(timespec="microseconds")


def record(
    db: Session,
    *,
    action: str,
    actor: str,
    artifact: str | None,
    subject: str,
    reason: str = "",
    data: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> Event:
    """Append one event to the chain inside the caller's (write) transaction.

    ``action`` is a dotted lowercase name (``version.create``, ``alias.move``,
    ``retention.hold``); ``artifact`` the full artifact name or None for
    registry-wide events; ``subject`` what changed (``team/fraud@1.2.0``);
    ``data`` any JSON object (normalized: tuples become lists). ``at`` defaults
    to now and must be timezone-aware. Raises InvalidInput on bad arguments.
    """
    if not isinstance(action, str) or len(action) > 64 or not _ACTION.fullmatch(action):
        raise InvalidInput(f"audit action must be a dotted lowercase name like 'alias.move', got {action!r}")
    for what, value, limit in (("actor", actor, 255), ("subject", subject, 255)):
        if not isinstance(value, str) or not value or len(value) > limit:
            raise InvalidInput(f"audit {what} must be a non-empty string of at most {limit} characters, got {value!r}")
    if artifact is not None and not isinstance(artifact, str):
        raise InvalidInput(f"audit artifact must be a name or None, got {type(artifact).__name__}")
    if not isinstance(reason, str):
        raise InvalidInput(f"audit reason must be a string, got {type(reason).__name__}")
    payload = json_value(data, "audit data")
    when = utcnow() if at is None else at
    if when.tzinfo is None:
        raise InvalidInput("audit time must be timezone-aware (e.g. datetime.now(UTC))")
    when = when.astimezone(UTC)

    text = _dumps(payload)
    head = _locked_head(db)
    seq = head.seq + 1
    previous = head.digest
    digest = _digest(seq, _iso(when), actor, action, artifact, subject, reason, text, previous)
    db.add(
        AuditEventRow(
            seq=seq,
            at=when,
            actor=actor,
            action=action,
            artifact=artifact,
            subject=subject,
            reason=reason,
            data=text,
            previous=previous,
            digest=digest,
        )
    )
    head.seq = seq
    head.digest = digest
    return Event(seq, when, actor, action, artifact, subject, reason, payload, Digest.parse(previous), Digest.parse(digest))


def record_gc(db: Session, report: GcReport, *, actor: str) -> Event:
    """The ``gc.run`` event of a store garbage collection (registry-wide: no artifact)."""
    return record(
        db,
        action="gc.run",
        actor=actor,
        artifact=None,
        subject="store",
        data={
            "packs_deleted": report.packs_deleted,
            "packs_repacked": report.packs_repacked,
            "chunks_deleted": report.chunks_deleted,
            "bytes_freed": report.bytes_freed,
            "packs_kept_young": report.packs_kept_young,
        },
    )


def _locked_head(db: Session) -> AuditHeadRow:
    """The head row, locked for the rest of the transaction; read once per transaction."""
    txn = db.get_transaction()
    cached = db.info.get(_HEAD_KEY)
    if cached is not None and cached[0] is txn:
        return cached[1]
    head = db.scalars(select(AuditHeadRow).where(AuditHeadRow.id == 1).with_for_update()).one_or_none()
    if head is None:
        raise IntegrityError("the audit head row is missing: the audit table was tampered with (mk audit verify)")
    db.info[_HEAD_KEY] = (txn, head)
    return head


def events(
    db: Session,
    *,
    artifact: str | None = None,
    since: datetime | None = None,
    after: int | None = None,
    limit: int | None = None,
) -> list[Event]:
    """Events in chain order. ``limit`` keeps the first ``limit`` events after ``after`` when
    it is given (paging forward), else the newest ``limit`` of those that match."""
    stmt = select(*_COLUMNS)
    if artifact is not None:
        stmt = stmt.where(AuditEventRow.artifact == artifact)
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput("since must be a timezone-aware datetime")
        stmt = stmt.where(AuditEventRow.at >= since)
    if after is not None:
        stmt = stmt.where(AuditEventRow.seq > after)
    if limit is not None and limit < 0:
        raise InvalidInput("limit must not be negative")
    if limit is not None and after is not None:
        rows = list(db.execute(stmt.order_by(AuditEventRow.seq).limit(limit)))
    elif limit is not None:
        rows = list(db.execute(stmt.order_by(AuditEventRow.seq.desc()).limit(limit)))
        rows.reverse()
    else:
        rows = list(db.execute(stmt.order_by(AuditEventRow.seq)))
    return [_event(r) for r in rows]


def _event(r: Any) -> Event:
    seq, at, actor, action, artifact, subject, reason, data, previous, digest = r
    return Event(
        seq, at, actor, action, artifact, subject, reason, json.loads(data), Digest.parse(previous), Digest.parse(digest)
    )


def verify(db: Session) -> AuditReport:
    """Walk the whole chain; report the first event that is not what was recorded."""
    head = db.execute(select(AuditHeadRow.seq, AuditHeadRow.digest).where(AuditHeadRow.id == 1)).one_or_none()
    expected_seq = 1
    prev = GENESIS
    checked = 0
    problem: AuditProblem | None = None
    rows = _stream(db)
    pending: tuple | None = None
    for r in rows:
        if pending is not None:  # a bad row whose kind depends on the one after it
            problem = _classify_bad_content(db, pending, r)
            break
        seq, at, actor, action, artifact, subject, reason, data, previous, digest = r
        if seq != expected_seq:
            problem = AuditProblem(
                expected_seq,
                "deleted",
                f"event {expected_seq} is missing" if seq == expected_seq + 1 else f"events {expected_seq}..{seq - 1} are missing",
            )
            break
        if previous != prev:
            problem = _classify_broken_link(db, r, prev)
            break
        if _digest(seq, _stored_iso(at), actor, action, artifact, subject, reason, data, previous) != digest:
            pending = (r, prev)
            continue
        checked += 1
        prev = digest
        expected_seq += 1
    else:
        if pending is not None:
            problem = _classify_bad_content(db, pending, None)
    head_seq, head_digest = head if head is not None else (0, GENESIS)
    if problem is None:
        last = expected_seq - 1
        if head is None:
            problem = AuditProblem(last + 1, "deleted", "the audit head row is missing")
        elif head_seq > last:
            problem = AuditProblem(
                last + 1, "deleted", f"the newest events {last + 1}..{head_seq} are missing (the head names event {head_seq})"
            )
        elif head_seq < last:
            problem = AuditProblem(
                head_seq + 1, "inserted", f"events {head_seq + 1}..{last} were added after the head (event {head_seq})"
            )
        elif head_digest != prev:
            problem = AuditProblem(last, "edited", f"event {last} does not match the digest the head holds")
    return AuditReport(checked, head_seq, Digest.parse(head_digest), problem)


def _stream(db: Session) -> Iterator[Any]:
    """DBAPI rows of this transaction's connection, in pages: no per-row processing by SQLAlchemy
    (``_stored_iso`` reads ``at`` as the driver gives it)."""
    cursor = db.connection().connection.cursor()
    try:
        cursor.execute(_RAW)
        while rows := cursor.fetchmany(10_000):
            yield from rows
    finally:
        cursor.close()


def _seq_of_digest(db: Session, digest: str) -> int | None:
    return db.scalar(select(AuditEventRow.seq).where(AuditEventRow.digest == digest).limit(1))


def _classify_broken_link(db: Session, r: Any, prev: str) -> AuditProblem:
    """Event ``seq`` is intact in itself but was chained after another event than ``seq - 1``."""
    seq, previous = r[0], r[8]
    if previous == GENESIS:
        return AuditProblem(1, "inserted", f"event {seq} claims to be the first event: events before it were inserted")
    origin = _seq_of_digest(db, previous)
    if origin is None:
        if _intact(r):  # event seq is as recorded: the one before it was replaced
            return AuditProblem(
                seq - 1, "edited", f"event {seq - 1} is not the event that event {seq} followed: it was edited"
            )
        return AuditProblem(seq, "deleted", f"the event that event {seq} followed is gone (deleted before {seq})")
    if origin < seq - 1:
        return AuditProblem(
            origin + 1, "inserted", f"events {origin + 1}..{seq - 1} were inserted between events {origin} and {seq}"
        )
    return AuditProblem(seq, "reordered", f"event {seq} was recorded after event {origin}, not after event {seq - 1}")


def _intact(r: Any) -> bool:
    seq, at, actor, action, artifact, subject, reason, data, previous, digest = r
    return _digest(seq, _stored_iso(at), actor, action, artifact, subject, reason, data, previous) == digest


def _classify_bad_content(db: Session, bad: tuple, after: Any) -> AuditProblem:
    """Event ``seq`` does not hash to its digest: edited in place, or forged and slipped in."""
    r, prev = bad
    seq = r[0]
    if after is not None and after[8] == prev:
        return AuditProblem(seq, "inserted", f"event {seq} is not part of the chain: event {seq + 1} follows event {seq - 1}")
    if r[8] != prev:
        # can't happen: the link is checked first; kept so the classification is total
        return _classify_broken_link(db, r, prev)
    copied = db.scalar(select(AuditEventRow.seq).where(AuditEventRow.digest == r[9], AuditEventRow.seq != seq).limit(1))
    if copied is not None:
        return AuditProblem(seq, "inserted", f"event {seq} is a forged copy: it holds the digest of event {copied}")
    return AuditProblem(seq, "edited", f"event {seq} ({r[3]} {r[5]}) does not match its digest: it was edited")
