"""DataVersion: SQLite's data version, changed by every commit of any connection or process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from _servers import fresh_postgres

from modelkeep.db.engine import DataVersion, make_engine


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


def test_none_where_it_would_not_be_cheap_or_not_shared() -> None:
    memory = make_engine("sqlite://")
    assert DataVersion.of(memory) is None
    memory.dispose()
    with fresh_postgres() as url:
        pg = make_engine(url)
        assert DataVersion.of(pg) is None
        pg.dispose()
