"""The ``registry`` fixture: one Registry suite over every implementation.

* ``embedded-sqlite``: EmbeddedRegistry on SQLite and a local store;
* ``embedded-postgres``: EmbeddedRegistry on a fresh PostgreSQL database (skipped,
  with the reason, when MODELKEEP_TEST_POSTGRES_URL is unset);
* ``remote``: RemoteRegistry talking to a real uvicorn server on 127.0.0.1 at a
  free port, backed by PostgreSQL when available (else SQLite) and S3 (moto's
  standalone server, when installed; else a local folder), with an admin token.

The registries live for the session (tests use names of their own); every one
records the actor ``tester``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import modelkeep
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.operations import Role
from _servers import POSTGRES_ENV, fresh_postgres, served

MakeTree = Callable[..., Path]  # the make_tree fixture (tests/conftest.py)


@pytest.fixture(scope="session", params=["embedded-sqlite", "embedded-postgres", "remote"])
def registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[modelkeep.Registry]:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded-sqlite":
        with EmbeddedRegistry(f"sqlite:///{root / 'r.db'}", f"file://{root / 'store'}", "tester") as reg:
            yield reg
    elif request.param == "embedded-postgres":
        with fresh_postgres() as url, EmbeddedRegistry(url, f"file://{root / 'store'}", "tester") as reg:
            yield reg
    else:
        with _database(root) as db_url, served(db_url, _store(request, root)) as srv:
            token = srv.user("tester", {"*": Role.ADMIN})
            with srv.remote(token) as reg:
                yield reg


def _store(request: pytest.FixtureRequest, root: Path) -> str | Path:
    """S3 (moto's real HTTP endpoint) when moto is installed, else a local folder."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return root / "store"
    from s3_support import make_bucket

    endpoint = request.getfixturevalue("s3_endpoint")
    return f"s3://{make_bucket(endpoint)}/registry?endpoint={endpoint}"


def _database(root: Path):  # type: ignore[no-untyped-def]
    if os.environ.get(POSTGRES_ENV):
        return fresh_postgres()
    from contextlib import nullcontext

    return nullcontext(f"sqlite:///{root / 'server.db'}")


@pytest.fixture
def ns() -> str:
    """A namespace of this test's own: names never collide across tests sharing a registry."""
    return f"t{uuid.uuid4().hex[:10]}"

