"""Engines and sessions from a database URL (SQLite or PostgreSQL).

SQLite connections run in WAL mode (readers never wait for the writer), with
foreign keys enforced and a 30 s busy timeout: several processes pushing to the
same registry file wait for each other instead of failing. Write transactions
start with ``BEGIN IMMEDIATE`` (see :data:`WRITE_OPTION`), so the write lock is
taken before the first read: a deferred transaction that reads and then tries
to write gets SQLITE_BUSY at once, without waiting for the busy timeout.

PostgreSQL goes through psycopg 3. ``postgresql://`` and ``postgres://`` are
rewritten to ``postgresql+psycopg://``; other drivers are refused.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from modelkeep.errors import InvalidURI

__all__ = [
    "BUSY_TIMEOUT_SECONDS", "WRITE_OPTION", "DataVersion", "PgRevision", "make_engine", "make_sessionmaker", "normalize_url",
    "revision_source",
]

BUSY_TIMEOUT_SECONDS = 30.0
WRITE_OPTION = "modelkeep_write"
"""Connection execution option: truthy on connections that begin a write transaction."""


def normalize_url(url: str) -> str:
    """Return the URL SQLAlchemy should use, or raise InvalidURI naming what is accepted."""
    if not isinstance(url, str) or not url:
        raise InvalidURI("empty database URL (expected sqlite:///path or postgresql://host/db)")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidURI(f"not a database URL: {url!r} (expected sqlite:///path or postgresql://host/db)")
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        url = f"postgresql+psycopg://{rest}"
    elif scheme != "sqlite":
        raise InvalidURI(
            f"unsupported database scheme {scheme!r} (sqlite, postgresql, postgresql+psycopg)"
        )
    try:
        make_url(url)
    except ArgumentError as exc:
        raise InvalidURI(f"malformed database URL {url!r}: {exc}") from None
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (normalized first); SQLite files get their parent folder created."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    return _postgres_engine(url)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows are converted to records inside the unit of
    # work, but attributes must stay readable after the commit that ends it.
    return sessionmaker(engine, expire_on_commit=False, autoflush=True)


PING_AFTER_IDLE_SECONDS = 1.0


def _postgres_engine(url: str) -> Engine:
    """An engine whose connections are pinged when they come out of the pool after lying idle.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip in front of
    every registry call, ~140 us of ~860 for resolving an alias here. A connection
    used a moment ago was alive a moment ago; one idle for over a second (a
    database restarted meanwhile, a proxy that closed it) is pinged first, and a
    dead one is replaced before anyone uses it, as with ``pool_pre_ping``.
    """
    engine = create_engine(url, future=True)

    @event.listens_for(engine, "checkin")
    def _used(_dbapi_conn: Any, record: Any) -> None:
        record.info["modelkeep_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("modelkeep_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return  # new (just connected), or returned a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception:  # noqa: BLE001 - whatever the driver raises for a dead connection
            alive = False
        if not alive:
            raise DisconnectionError("connection lost while idle in the pool")  # the pool connects anew

    return engine


def _sqlite_engine(url: str, database: str | None) -> Engine:
    in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False}}
    if in_memory:
        # one shared connection, or every checkout would see a new empty database
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own
        # implicit BEGIN is deferred and placed late, after the first reads).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
            if not in_memory:
                _enable_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION)
        # Straight to the driver: through exec_driver_sql, this BEGIN cost a fifth
        # of resolving an alias (~80 us of SQLAlchemy's statement machinery).
        conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _enable_wal(cur: Any) -> None:
    # Switching a new database to WAL takes an exclusive lock, and SQLite answers
    # "database is locked" at once, without its busy handler, when another process
    # is doing the same (several processes opening a fresh registry together).
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class DataVersion:
    """A number that changes whenever any connection, in any process, commits to one SQLite file.

    SQLite's ``PRAGMA data_version`` (~2 us), asked on a connection of its own that
    never writes: every commit is then another connection's, which the pragma
    reports whatever process made it. Equal numbers from one ``DataVersion`` mean
    nothing was committed in between, so an answer read after the first is still
    the answer: what lets the server keep an encoded answer until the database
    changes. The connection is opened on first use and again in a forked child
    (a connection must not cross a fork), and used under a lock (the event loop
    and worker threads both ask).
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    @classmethod
    def of(cls, engine: Engine) -> DataVersion | None:
        """One for ``engine``'s SQLite file; None for any other database (PostgreSQL: ``PgRevision``)
        and for SQLite in memory (one connection: no other to ask from)."""
        url = engine.url
        if url.get_backend_name() != "sqlite":
            return None
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return cls(str(Path(database).expanduser()))

    def __call__(self) -> int:
        with self._lock:
            if self._conn is None or self._pid != os.getpid():
                self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                self._pid = os.getpid()
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


class PgRevision:
    """``registry_revision.n`` of a PostgreSQL registry: bumped at the commit of every change.

    Migration ``0006_pg_revision`` keeps it: a deferred trigger on every table adds
    one at commit, once per transaction, so equal numbers mean nothing was
    committed in between, whichever replica wrote. Read with one query on a
    connection of its own (autocommit; opened again in a forked child, used under
    a lock). A failure answers None (nothing is kept meanwhile, every read goes
    to the database) for ``RETRY_SECONDS``, then a new connection is tried.
    """

    RETRY_SECONDS = 1.0

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = 0
        self._failed_at = -1e9

    def __call__(self) -> int | None:
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._pid != os.getpid() or self._conn.closed:
                    if time.monotonic() - self._failed_at < self.RETRY_SECONDS:
                        return None
                    self._conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
                    self._pid = os.getpid()
                row = self._conn.execute("SELECT n FROM registry_revision WHERE id = 1").fetchone()
            except psycopg.Error:
                self._drop()
                self._failed_at = time.monotonic()
                return None
            return None if row is None else int(row[0])

    def _drop(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def revision_source(engine: Engine) -> DataVersion | PgRevision | None:
    """What tells the revision of ``engine``'s registry database, or None (SQLite in memory)."""
    if engine.url.get_backend_name() == "postgresql":
        return PgRevision(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    return DataVersion.of(engine)
