"""PostgreSQL connections idle in the pool are pinged before use; a dead one is replaced unseen."""

from __future__ import annotations

import pytest
from _servers import fresh_postgres
from sqlalchemy import text

from modelkeep.db import engine as engine_mod
from modelkeep.db.engine import make_engine


def test_a_connection_killed_while_idle_is_replaced_before_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_postgres() as url:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            other = make_engine(url)  # another client kills the pooled connection's backend
            try:
                with other.connect() as admin:
                    assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
            finally:
                other.dispose()
            monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE_SECONDS", 0.0)  # both count as idle now
            for _ in range(3):  # whichever pooled connection comes out, the query works
                with engine.connect() as conn:
                    pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
                    assert pid != first
        finally:
            engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_postgres() as url:
        engine = make_engine(url)
        pings: list[object] = []
        original = engine.dialect.do_ping
        monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or original(c))
        try:
            for _ in range(5):
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            assert pings == []
            monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE_SECONDS", 0.0)
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            assert len(pings) == 1
        finally:
            engine.dispose()
