"""Unit of work: one database transaction per registry call.

``uow.read(fn)`` and ``uow.write(fn)`` call ``fn(session)`` inside one
transaction and commit it. ``fn`` must convert rows into plain records before
returning: rows never leave the unit of work.

A write that loses a race is retried from the start, in a *fresh* transaction
(re-reading everything, so the next version number is computed again):

* ``IntegrityError`` — two writers allocated the same version number, created
  the same artifact or alias, or stored the same manifest at the same moment;
* serialization failure / deadlock on PostgreSQL (SQLSTATE 40001, 40P01);
* ``database is locked`` on SQLite, once the busy timeout has run out.

Errors raised on purpose by ``fn`` (ModelkeepError) are never retried. After
the last attempt the database error is raised as StorageError (lock contention)
or ConflictError (a constraint that kept failing), with the cause chained.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from modelkeep.db.engine import WRITE_OPTION
from modelkeep.errors import ConflictError, StorageError

__all__ = ["UnitOfWork"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


class UnitOfWork:
    """Runs functions of a Session in transactions, retrying lost write races."""

    def __init__(self, sessions: sessionmaker[Session], *, attempts: int = 8) -> None:
        self._sessions = sessions
        self._engine: Engine = sessions.kw["bind"]
        self._attempts = attempts
        # PostgreSQL reads at READ COMMITTED: every statement sees its own snapshot,
        # inside a transaction or not, so a BEGIN and a COMMIT around a bare read
        # are two round trips that buy nothing (of five per alias resolution).
        # SQLite's BEGIN gives the read one snapshot across its statements: kept.
        self._rows_engine = (
            self._engine.execution_options(isolation_level="AUTOCOMMIT")
            if self._engine.dialect.name == "postgresql"
            else self._engine
        )

    def read(self, fn: Callable[[Session], T]) -> T:
        try:
            with self._sessions() as session, session.begin():
                return fn(session)
        except sa_exc.OperationalError as exc:
            raise _translate(exc) from exc

    def read_rows(self, fn: Callable[[Connection], T]) -> T:
        """``read`` on a bare connection, for hot reads written against SQLAlchemy Core.

        On PostgreSQL without a transaction (see ``__init__``): ``fn`` must not
        count on one snapshot across its statements, which READ COMMITTED never
        gave anyway.
        """
        try:
            with self._rows_engine.connect() as conn, conn.begin():
                return fn(conn)
        except sa_exc.OperationalError as exc:
            raise _translate(exc) from exc

    def write(self, fn: Callable[[Session], T]) -> T:
        last: sa_exc.DBAPIError | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                with self._sessions() as session:
                    # The option reaches the engine's "begin" hook: BEGIN IMMEDIATE on SQLite.
                    session.connection(execution_options={WRITE_OPTION: True})
                    result = fn(session)
                    session.commit()
                    return result
            except (sa_exc.IntegrityError, sa_exc.OperationalError) as exc:
                if not _retryable(exc):
                    raise _translate(exc) from exc
                last = exc
                log.debug("write transaction lost a race (attempt %d/%d): %s", attempt, self._attempts, exc.orig)
                time.sleep(min(0.2, 0.005 * 2**attempt) * random.random())
        assert last is not None
        raise _translate(last) from last


def _retryable(exc: sa_exc.DBAPIError) -> bool:
    if isinstance(exc, sa_exc.IntegrityError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _RETRY_SQLSTATES:
        return True
    return "database is locked" in str(exc.orig)


def _translate(exc: sa_exc.DBAPIError) -> Exception:
    if isinstance(exc, sa_exc.IntegrityError):
        return ConflictError(f"a concurrent change kept conflicting with this one: {exc.orig}")
    return StorageError(f"database error: {exc.orig}")
