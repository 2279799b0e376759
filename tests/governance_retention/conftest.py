"""Registries for the retention and signature tests: SQLite in tmp_path, or a fresh PostgreSQL database.

Each PostgreSQL test gets a database of its own (created from the one
MODELKEEP_TEST_POSTGRES_URL names, dropped afterwards), so the audit chain and
the retention tables of other tests never show up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _servers import fresh_postgres

from modelkeep.registry.embedded import EmbeddedRegistry

MakeTree = Callable[..., Path]  # the make_tree fixture (tests/conftest.py)


def _fresh_postgres(request: pytest.FixtureRequest) -> str:
    """A database of this test's own (skipped when no server is configured), dropped after it."""
    cm = fresh_postgres()
    url = cm.__enter__()
    request.addfinalizer(lambda: cm.__exit__(None, None, None))
    return url


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

