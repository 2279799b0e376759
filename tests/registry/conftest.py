"""A real embedded registry per test: SQLite in tmp_path, or a private PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from modelkeep.registry.audit import GENESIS
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.store import open_store

MakeTree = Callable[..., Path]  # the make_tree fixture (tests/conftest.py)

_TABLES = "audit_events, approvals, policies, version_stages, tag_changes, tags, alias_moves, aliases, edges, versions, manifests, artifacts"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    url = request.getfixturevalue("postgres_url")  # skips, with the reason, when unset
    yield url
    engine = create_engine(url)  # the session's database is shared: empty it for the next test
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
        conn.execute(text("UPDATE audit_head SET seq = 0, digest = :g"), {"g": GENESIS})
    engine.dispose()


@pytest.fixture
def registry(db_url: str) -> Iterator[EmbeddedRegistry]:
    store = open_store(f"memory://{uuid.uuid4().hex}")
    reg = EmbeddedRegistry(db_url, store, "tester")
    yield reg
    reg.close()
    store.close()

