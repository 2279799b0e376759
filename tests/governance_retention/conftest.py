"""Registries for the retention and signature tests: SQLite in tmp_path, or a fresh PostgreSQL database.

Each PostgreSQL test gets a database of its own (created from the one
MODELKEEP_TEST_POSTGRES_URL names, dropped afterwards), so the audit chain and
the retention tables of other tests never show up.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from modelkeep.db.engine import normalize_url
from modelkeep.registry.embedded import EmbeddedRegistry

POSTGRES_ENV = "MODELKEEP_TEST_POSTGRES_URL"
MakeTree = Callable[..., Path]


def _fresh_postgres(request: pytest.FixtureRequest) -> str:
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is unset: PostgreSQL tests need a server (see .ci/run)")
    admin_url = make_url(normalize_url(base))
    name = f"mk_ret_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return admin_url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return _fresh_postgres(request)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[EmbeddedRegistry]:
    """A registry over a real local store (gc frees real pack files)."""
    reg = EmbeddedRegistry(db_url, f"file://{tmp_path / 'store'}", "alice")
    yield reg
    reg.close()


@pytest.fixture
def local(sqlite_url: str, tmp_path: Path) -> Iterator[EmbeddedRegistry]:
    """SQLite only: for the paths whose PostgreSQL variant adds nothing but time."""
    reg = EmbeddedRegistry(sqlite_url, f"file://{tmp_path / 'store'}", "alice")
    yield reg
    reg.close()


@pytest.fixture
def make_tree(tmp_path: Path) -> MakeTree:
    """``make_tree({"a.txt": "text", "w.bin": b"bytes"}, name="src")`` writes files, returns the folder."""

    def make(files: dict[str, str | bytes], name: str = "src") -> Path:
        root = tmp_path / "trees" / name
        for rel, content in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                p.write_text(content)
            else:
                p.write_bytes(content)
        root.mkdir(parents=True, exist_ok=True)
        return root

    return make
