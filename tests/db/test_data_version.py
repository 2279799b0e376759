"""DataVersion: SQLite's data version, changed by every commit of any connection or process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _servers import fresh_postgres
from sqlalchemy import text

from modelkeep.db.engine import DataVersion, PgRevision, make_engine, revision_source
from modelkeep.registry.embedded import EmbeddedRegistry


def test_every_commit_changes_it_and_nothing_else_does(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        version = DataVersion.of(engine)
        assert version is not None
        seen = version()
        assert version() == seen
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM t").all()  # a read
        assert version() == seen
        with engine.begin() as conn:  # a commit in this process, on another connection
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert version() != seen
        seen = version()
        with engine.connect() as conn:  # rolled back: nothing changed
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            conn.rollback()
        assert version() == seen
        script = f"import sqlite3; c = sqlite3.connect({str(path)!r}); c.execute('INSERT INTO t VALUES (3)'); c.commit()"
        subprocess.run([sys.executable, "-c", script], check=True)
        assert version() != seen
        version.close()
    finally:
        engine.dispose()


def test_a_forked_child_asks_on_a_connection_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x INTEGER)").connection.commit()
    engine = make_engine(f"sqlite:///{path}")
    version = DataVersion.of(engine)
    assert version is not None
    before = version()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        ok = False
        try:
            first = version()
            c = sqlite3.connect(path)
            c.execute("INSERT INTO t VALUES (1)")
            c.commit()
            ok = version() != first
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert version() != before  # the parent's own connection saw the child's commit
    version.close()
    engine.dispose()


def test_none_for_sqlite_in_memory() -> None:
    memory = make_engine("sqlite://")
    assert DataVersion.of(memory) is None and revision_source(memory) is None
    memory.dispose()


def test_postgresql_revision_counts_committed_transactions_once_each(tmp_path: Path) -> None:
    with fresh_postgres() as url:
        registry = EmbeddedRegistry(url, f"file://{tmp_path / 'store'}", "tester")  # migrates the database
        try:
            engine = make_engine(url)
            revision = revision_source(engine)
            assert isinstance(revision, PgRevision)
            seen = revision()
            assert isinstance(seen, int) and revision() == seen
            registry.versions  # noqa: B018 - a read of the registry: nothing committed
            with engine.connect() as conn:
                conn.execute(text("SELECT count(*) FROM artifacts")).all()
            assert revision() == seen
            with engine.connect() as conn:  # rolled back: nothing committed
                conn.execute(text("INSERT INTO users (name, created_at, created_by) VALUES ('x', now(), 't')"))
                conn.rollback()
            assert revision() == seen
            with engine.begin() as conn:  # one transaction of three rows: one step
                for name in ("u1", "u2", "u3"):
                    conn.execute(text("INSERT INTO users (name, created_at, created_by) VALUES (:n, now(), 't')"), {"n": name})
            assert revision() == seen + 1
            (tmp_path / "f.txt").write_text("x")
            registry.push(tmp_path / "f.txt", "team/model")  # the registry's own writes count too
            assert revision() > seen + 1
            revision.close()
            engine.dispose()
        finally:
            registry.close()


def test_every_postgresql_table_bumps_the_revision(tmp_path: Path) -> None:
    """A table a later migration adds without the trigger would let kept answers go stale."""
    with fresh_postgres() as url:
        EmbeddedRegistry(url, f"file://{tmp_path / 'store'}", "tester").close()
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars())
                triggered = set(
                    conn.execute(
                        text(
                            "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                            "WHERE t.tgname = 'modelkeep_revision'"
                        )
                    ).scalars()
                )
        finally:
            engine.dispose()
        assert len(tables) > 10
        assert tables - triggered == {"alembic_version", "registry_revision"}


def test_a_postgresql_revision_that_cannot_be_read_answers_none_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fresh_postgres() as url:
        EmbeddedRegistry(url, f"file://{tmp_path / 'store'}", "tester").close()
        engine = make_engine(url)
        revision = revision_source(engine)
        assert isinstance(revision, PgRevision)
        try:
            first = revision()
            assert first is not None
            with engine.connect() as conn:  # its connection dies (a database restart, a proxy)
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                                  "AND datname = current_database() AND query LIKE '%registry_revision%'"))
            assert revision() is None  # nothing kept meanwhile
            assert revision() is None  # and no new connection per call while it is failing
            monkeypatch.setattr(PgRevision, "RETRY_SECONDS", 0.0)
            assert revision() == first  # a new connection, the same number
        finally:
            revision.close()
            engine.dispose()
