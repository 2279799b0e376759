"""Shared by the server and contract tests: a server in a thread, fresh databases, a served registry, tokens."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn

import modelkeep
from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.operations import Role
from modelkeep.server.app import create_app
from modelkeep.server.auth import AuthStore
from modelkeep.server.protocol import http_protocol
from modelkeep.server.settings import ServerSettings

POSTGRES_ENV = "MODELKEEP_TEST_POSTGRES_URL"


@contextmanager
def serve_in_thread(app: Any, http: Any = None) -> Iterator[str]:
    """Start ``app`` (under ``http``, uvicorn's protocol; default: the server's own), yield its base URL, stop it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", ws="none", http=http or http_protocol())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL database of its own, dropped afterwards; skips when none is configured."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is unset: PostgreSQL tests need a server (see .ci/run)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from modelkeep.db.engine import normalize_url

    admin_url = make_url(normalize_url(base))
    name = f"modelkeep_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Served:
    """A registry served over HTTP, with its auth store for making users and tokens."""

    url: str
    registry: EmbeddedRegistry
    auth: AuthStore
    app: object
    tokens: dict[str, str] = field(default_factory=dict)

    def user(self, name: str, grants: dict[str, Role] | None = None, **token_args: object) -> str:
        """Create user ``name`` with ``grants`` (namespace -> role) and return a new token of it."""
        if name not in self.auth.users():
            self.auth.create_user(name, by="test")
        for ns, role in (grants or {}).items():
            self.auth.grant(name, ns, role, by="test")
        _, secret = self.auth.create_token(name, **token_args)  # type: ignore[arg-type]
        return secret

    def remote(self, token: str | None) -> modelkeep.Registry:
        # cache_gb=0: pulls in tests leave nothing in the user's ~/.cache/modelkeep
        return modelkeep.open(modelkeep.Settings.from_env({}, db_url=self.url, token=token, cache_gb="0"))


@contextmanager
def served(db_url: str, store: Path | str, **settings: object) -> Iterator[Served]:
    """A registry on ``db_url`` and ``store`` (a folder, or a store URL such as s3://…) served over HTTP."""
    registry = EmbeddedRegistry(db_url, store if isinstance(store, str) else f"file://{store}", "server-process")
    auth = AuthStore(db_url)
    try:
        app = create_app(registry, ServerSettings(db_url=db_url, **settings))  # type: ignore[arg-type]
        with serve_in_thread(app) as url:
            yield Served(url, registry, auth, app)
    finally:
        auth.close()
        registry.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
