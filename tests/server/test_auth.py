"""Tokens and roles: deny by default on every route, namespaces, expiry, revocation, the recorded actor."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from _servers import Served, bearer, served

import modelkeep
from modelkeep.db.models import utcnow
from modelkeep.errors import Forbidden, Unauthorized
from modelkeep.registry.operations import OPERATIONS, Role

OPEN = {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def _routes(srv: Served) -> list[tuple[str, str]]:
    doc = srv.app.state.full_openapi()  # type: ignore[attr-defined]
    return [(m.upper(), p) for p, ops in doc["paths"].items() if p not in OPEN for m in ops]


def test_every_api_route_refuses_a_request_without_token(srv: Served, http: httpx.Client) -> None:
    routes = _routes(srv)
    assert len(routes) >= len(OPERATIONS) + 8  # operations, chunk transfer, admin, whoami
    for method, path in routes:
        url = path.replace("{webhook_id}", "1")
        r = http.request(method, url, params={"name": "a/model", "ref": "a/model", "path": "x"})
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"


def test_garbage_tokens_are_401(http: httpx.Client) -> None:
    for header in ("Bearer nope", "Bearer", "Basic dXNlcjpwYXNz", "Bearer mk_" + "A" * 43):
        r = http.get("/api/v1/artifacts", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_token_for_namespace_a_on_namespace_b_is_403_without_telling_whether_it_exists(
    seeded: Served, http: httpx.Client
) -> None:
    h = bearer(seeded.tokens["a-contributor"])
    assert http.get("/api/v1/version", params={"ref": "a/model@1.0.0"}, headers=h).status_code == 200
    existing = http.get("/api/v1/version", params={"ref": "b/model@1.0.0"}, headers=h)
    absent = http.get("/api/v1/version", params={"ref": "b/absent@1.0.0"}, headers=h)
    assert existing.status_code == absent.status_code == 403
    assert existing.json() == absent.json()
    assert existing.json()["error"]["code"] == "forbidden"
    # Downloads, lists, deletes, searches alike.
    assert http.get("/api/v1/chunks/manifest", params={"ref": "b/model"}, headers=h).status_code == 403
    assert http.post("/api/v1/chunks/fetch", json={"ref": "b/model", "digests": []}, headers=h).status_code == 403
    assert http.get("/api/v1/versions", params={"name": "b/model"}, headers=h).status_code == 403
    assert http.delete("/api/v1/aliases", params={"name": "b/model", "alias": "x"}, headers=h).status_code == 403
    assert http.get("/api/v1/lineage", params={"ref": "b/model"}, headers=h).status_code == 403
    assert http.get("/api/v1/diff", params={"a": "a/model@1.0.0", "b": "b/model@1.0.0"}, headers=h).status_code == 403


def test_lists_show_only_visible_namespaces(seeded: Served, http: httpx.Client) -> None:
    names = [a["name"] for a in http.get("/api/v1/artifacts", headers=bearer(seeded.tokens["b-viewer"])).json()]
    assert names == ["b/model"]
    r = http.get("/api/v1/artifacts", params={"namespace": "a"}, headers=bearer(seeded.tokens["b-viewer"]))
    assert r.status_code == 403


def test_roles_are_ordered(seeded: Served) -> None:
    with seeded.remote(seeded.tokens["b-viewer"]) as reg:
        assert reg.get("b/model").version == "1.0.0"
        with pytest.raises(Forbidden):
            reg.set_alias("b/model", "production", "1.0.0")
        with pytest.raises(Forbidden):
            reg.gc(dry_run=True)
        with pytest.raises(Forbidden):
            reg.du()
    with seeded.remote(seeded.tokens["a-contributor"]) as reg:
        reg.set_alias("a/model", "staging", "1.0.0")
        with pytest.raises(Forbidden):
            reg.hold("a/model@1.0.0", reason="needs approver")
        with pytest.raises(Forbidden):
            reg.set_retention("a/model", keep_last=3)


def test_the_actor_is_the_tokens_user(seeded: Served, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("alice's")
    with seeded.remote(seeded.tokens["a-contributor"]) as reg:
        v = reg.push(tmp_path / "f", "a/by-alice")
        move = reg.set_alias("a/by-alice", "production", v.version)
    assert v.author == "alice" and move.actor == "alice"
    assert seeded.registry.get("a/by-alice").author == "alice"  # as stored, not as sent back


def test_expired_and_revoked_tokens_are_401(srv: Served) -> None:
    expired = srv.user("carol", {"*": Role.VIEWER}, expires_at=utcnow() - timedelta(seconds=1))
    with srv.remote(expired) as reg, pytest.raises(Unauthorized, match="expired"):
        reg.artifacts()
    live = srv.user("carol")
    with srv.remote(live) as reg:
        reg.artifacts()
        token_id = max(t.id for t in srv.auth.tokens("carol"))
        srv.auth.revoke_token(token_id)
        time.sleep(srv.app.state.mk.settings.auth_cache_seconds)  # type: ignore[attr-defined]  # the bound on revocation
        with pytest.raises(Unauthorized, match="revoked"):
            reg.artifacts()


def test_tokens_are_stored_hashed(srv: Served) -> None:
    from sqlalchemy import create_engine, text

    secret = srv.user("dave")
    engine = create_engine(srv.registry.db_url)
    try:
        with engine.connect() as conn:
            stored = [r[0] for r in conn.execute(text("SELECT token_hash FROM api_tokens"))]
    finally:
        engine.dispose()
    assert secret not in stored and all(len(h) == 64 for h in stored)


def test_admin_routes_and_their_openapi_need_admin(srv: Served, http: httpx.Client) -> None:
    public = http.get("/openapi.json").json()
    assert not any(p.startswith("/api/v1/admin") for p in public["paths"])
    assert "/api/v1/version" in public["paths"]
    assert http.get("/api/v1/admin/openapi.json").status_code == 401
    assert http.get("/api/v1/admin/openapi.json", headers=bearer(srv.tokens["b-viewer"])).status_code == 403
    full = http.get("/api/v1/admin/openapi.json", headers=bearer(srv.tokens["admin"])).json()
    assert "/api/v1/admin/webhooks" in full["paths"]
    assert http.get("/api/v1/admin/webhooks", headers=bearer(srv.tokens["a-contributor"])).status_code == 403


def test_whoami(srv: Served, http: httpx.Client) -> None:
    r = http.get("/api/v1/whoami", headers=bearer(srv.tokens["a-contributor"])).json()
    assert r == {"user": "alice", "grants": {"a": "contributor"}, "auth": True}


def test_no_auth_is_explicit_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"), served(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", auth=False) as srv:
        with srv.remote(None) as reg:
            (tmp_path / "f").write_text("x")
            assert reg.push(tmp_path / "f", "solo").author == "anonymous"
    assert any("authentication is DISABLED" in r.message for r in caplog.records)


def test_open_picks_the_remote_registry(srv: Served) -> None:
    from modelkeep.client.remote import RemoteRegistry

    with modelkeep.open(srv.url) as reg:
        assert isinstance(reg, RemoteRegistry)
        with pytest.raises(Unauthorized):
            reg.artifacts()


def test_four_eyes_approver_role_and_not_the_author(srv: Served, tmp_path: Path) -> None:
    from modelkeep.errors import ApprovalNotAllowed

    author = srv.user("erin", {"four": Role.CONTRIBUTOR})
    (tmp_path / "f").write_text("model")
    with srv.remote(author) as reg:
        v = reg.push(tmp_path / "f", "four/m")
        reg.request_approval(v.ref, comment="please")
        with pytest.raises(Forbidden):  # a contributor is no approver
            reg.approve(v.ref)
    author_as_approver = srv.user("erin", {"four": Role.APPROVER})
    with srv.remote(author_as_approver) as reg, pytest.raises(ApprovalNotAllowed):
        reg.approve(v.ref)  # the approver role, but the author: refused by the registry
    with srv.remote(srv.user("frank", {"four": Role.APPROVER})) as reg:
        approval = reg.approve(v.ref, comment="lgtm")
        assert approval.actor == "frank"
        reg.transition(v.ref, "staging", reason="approved")
        assert reg.stages("four/m")[v.version].value == "staging"


def test_a_forced_transition_needs_admin_where_an_approver_may_transition(srv: Served, tmp_path: Path) -> None:
    from modelkeep.errors import PromotionRefused

    (tmp_path / "f").write_text("m")
    with srv.remote(srv.user("hana", {"force": Role.ADMIN})) as admin:
        v = admin.push(tmp_path / "f", "force/m", metrics={"auc": 0.5})
        admin.set_policy("force/m", "rules:\n  - auc >= 0.9\n")
        admin.transition(v.ref, "staging")
        admin.transition(v.ref, "validation")
    with srv.remote(srv.user("ivan", {"force": Role.APPROVER})) as approver:
        with pytest.raises(PromotionRefused):  # the approver may try; the policy refuses
            approver.transition(v.ref, "production")
        with pytest.raises(Forbidden):  # ...but may not override it
            approver.transition(v.ref, "production", reason="incident 42", force=True)
        assert approver.stages("force/m")[v.version].value == "validation"
    with srv.remote(srv.user("hana", {"force": Role.ADMIN})) as admin:
        admin.transition(v.ref, "production", reason="incident 42", force=True)
        assert admin.stages("force/m")[v.version].value == "production"


def test_error_details_travel_back_as_records(srv: Served, tmp_path: Path) -> None:
    from modelkeep.errors import InvalidPolicy, PromotionRefused
    from modelkeep.registry.types import PolicyReport

    token = srv.user("gina", {"gate": Role.ADMIN})
    with srv.remote(token) as reg:
        (tmp_path / "f").write_text("1")
        v1 = reg.push(tmp_path / "f", "gate/m", metrics={"auc": 0.9})
        (tmp_path / "f").write_text("2")
        v2 = reg.push(tmp_path / "f", "gate/m", metrics={"auc": 0.8})
        with pytest.raises(InvalidPolicy) as bad:
            reg.set_policy("gate/m", "rules:\n  - auc >= 0.9\n  - auc >=\n")
        assert isinstance(bad.value.line, int)
        reg.set_policy("gate/m", "rules:\n  - auc >= 0.85\n")
        for ref in (v1.ref, v2.ref):
            reg.transition(ref, "staging")
            reg.transition(ref, "validation")
        reg.transition(v1.ref, "production")
        with pytest.raises(PromotionRefused) as refused:
            reg.transition(v2.ref, "production")
    assert isinstance(refused.value.report, PolicyReport) and not refused.value.report.passed
