"""The schema comes only from the migrations, and the migrations match the typed rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from modelkeep.db.engine import make_engine, normalize_url
from modelkeep.db.models import Base
from modelkeep.db.schema import current_revision, head_revision, include_object, upgrade
from modelkeep.errors import InvalidURI


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'schema.db'}"
    # A database of its own: the registry tests share the session database.
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(request.getfixturevalue("postgres_url"))
    name = f"{base.database}_schema"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return base.set(database=name).render_as_string(hide_password=False)


def test_upgrade_creates_the_schema_the_models_describe(fresh_url: str) -> None:
    engine = make_engine(fresh_url)
    try:
        assert inspect(engine).get_table_names() == []
        assert upgrade(engine) is True
        assert upgrade(engine) is False  # already at head: nothing runs
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            opts = {"compare_type": True, "include_object": include_object}  # as the migrations compare
            diff = compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_urls() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(InvalidURI, match="unsupported database scheme 'mysql'"):
        normalize_url("mysql://h/db")
    with pytest.raises(InvalidURI, match="not a database URL"):
        normalize_url("registry.db")


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'r.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000
    finally:
        engine.dispose()
