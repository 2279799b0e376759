"""The token cache: a known token skips the database, and every change still takes effect within the bound."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from _servers import bearer, served

from modelkeep.db.models import utcnow
from modelkeep.errors import Unauthorized
from modelkeep.registry.operations import Role
from modelkeep.server.auth import AuthStore, TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def auth(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = AuthStore(f"sqlite:///{tmp_path / 'r.db'}")
    store.create_user("alice", by="test")
    store.grant("alice", "a", Role.VIEWER, by="test")
    yield store
    store.close()


def test_a_known_token_is_answered_from_memory_until_the_ttl(auth: AuthStore) -> None:
    clock = Clock()
    cache = TokenCache(auth, ttl=1.0, clock=clock)
    token_id, secret = auth.create_token("alice")
    assert cache.get(secret) is None  # never seen: the caller asks the database
    assert cache.authenticate(secret).user == "alice"
    auth.revoke_token(token_id)
    clock.now += 0.99
    assert cache.get(secret).user == "alice"  # type: ignore[union-attr]  # within the bound
    clock.now += 0.01
    assert cache.get(secret) is None  # the bound reached: back to the database, which refuses
    with pytest.raises(Unauthorized, match="revoked"):
        cache.authenticate(secret)


def test_an_entry_never_outlives_its_token(auth: AuthStore) -> None:
    clock = Clock()
    cache = TokenCache(auth, ttl=60.0, clock=clock)
    _, secret = auth.create_token("alice", expires_at=utcnow() + timedelta(seconds=5))
    cache.authenticate(secret)
    clock.now += 4.0
    assert cache.get(secret) is not None
    clock.now += 1.0
    assert cache.get(secret) is None


def test_failures_are_not_remembered_and_the_size_is_bounded(auth: AuthStore) -> None:
    cache = TokenCache(auth, ttl=60.0, size=2)
    with pytest.raises(Unauthorized):
        cache.authenticate("mk_" + "A" * 43)
    assert cache.get("mk_" + "A" * 43) is None
    secrets = [auth.create_token("alice")[1] for _ in range(3)]
    for s in secrets:
        cache.authenticate(s)
    assert cache.get(secrets[0]) is None  # the oldest was dropped
    assert cache.get(secrets[1]) is not None and cache.get(secrets[2]) is not None


def test_ttl_zero_turns_the_cache_off(auth: AuthStore) -> None:
    cache = TokenCache(auth, ttl=0)
    _, secret = auth.create_token("alice")
    cache.authenticate(secret)
    assert cache.get(secret) is None


@pytest.mark.parametrize("ttl", [0.0, 0.5])
def test_a_served_registry_refuses_a_revoked_token_and_a_removed_grant_within_the_bound(
    tmp_path: Path, ttl: float
) -> None:
    with served(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", auth_cache_seconds=ttl) as srv:
        token = srv.user("carol", {"*": Role.VIEWER})
        other = srv.user("dave", {"*": Role.VIEWER})
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            assert http.get("/api/v1/artifacts", headers=bearer(token)).status_code == 200
            assert http.get("/api/v1/whoami", headers=bearer(other)).json()["grants"] == {"*": "viewer"}
            srv.auth.revoke_token(max(t.id for t in srv.auth.tokens("carol")))
            srv.auth.grant("dave", "*", None, by="test")
            time.sleep(ttl)
            refused = http.get("/api/v1/artifacts", headers=bearer(token))
            assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
            assert http.get("/api/v1/whoami", headers=bearer(other)).json()["grants"] == {}
            assert http.get("/api/v1/artifact", params={"name": "x/y"}, headers=bearer(other)).status_code == 403


def test_concurrent_requests_with_an_unknown_token_share_one_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from starlette.requests import Request

    from modelkeep.server.app import create_app
    from modelkeep.server.settings import ServerSettings

    class _Registry:
        def as_actor(self, actor: str) -> _Registry:
            return self

    db = f"sqlite:///{tmp_path / 'r.db'}"
    app = create_app(_Registry(), ServerSettings(db_url=db))  # type: ignore[arg-type]
    ctx = app.state.mk
    try:
        ctx.auth.create_user("alice", by="test")
        _, secret = ctx.auth.create_token("alice")
        calls = []
        lookup = AuthStore.lookup

        def counting(self: AuthStore, s: str | None):  # type: ignore[no-untyped-def]
            calls.append(s)
            time.sleep(0.05)  # a slow database: every request arrives while the lookup runs
            return lookup(self, s)

        monkeypatch.setattr(AuthStore, "lookup", counting)

        def request(token: str) -> Request:
            return Request({"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]})

        async def many(token: str) -> list[object]:
            return await asyncio.gather(*(ctx.caller(request(token)) for _ in range(32)), return_exceptions=True)

        assert {p.user for p in asyncio.run(many(secret))} == {"alice"}  # type: ignore[attr-defined]
        assert len(calls) == 1
        refused = asyncio.run(many("mk_" + "B" * 43))
        assert all(isinstance(r, Unauthorized) for r in refused) and len(calls) == 2
        assert not ctx._lookups  # nothing left behind
    finally:
        ctx.auth.close()
