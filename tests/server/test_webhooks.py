"""Webhooks: signed deliveries from the background worker, retries with backoff, the log, redirects, addresses."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from _servers import Served, bearer, served

from modelkeep.errors import InvalidInput
from modelkeep.registry.operations import Role
from modelkeep.server.webhooks import check_address


class Receiver:
    """A local HTTP endpoint that records requests and answers with the next scripted status."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[Served]:
    with served(
        f"sqlite:///{tmp_path / 'r.db'}",
        tmp_path / "store",
        webhook_allow_private=True,
        webhook_attempts=3,
        webhook_backoff_seconds=0.01,
    ) as srv:
        srv.tokens["admin"] = srv.user("root", {"*": Role.ADMIN})
        yield srv


def _subscribe(srv: Served, url: str, events: list[str], namespace: str = "*") -> dict:
    with httpx.Client(base_url=srv.url) as http:
        r = http.post(
            "/api/v1/admin/webhooks",
            json={"url": url, "events": events, "namespace": namespace},
            headers=bearer(srv.tokens["admin"]),
        )
    assert r.status_code == 200, r.text
    return r.json()


def _deliveries(srv: Served, webhook_id: int) -> list[dict]:
    with httpx.Client(base_url=srv.url) as http:
        r = http.get(f"/api/v1/admin/webhooks/{webhook_id}/deliveries", headers=bearer(srv.tokens["admin"]))
    assert r.status_code == 200
    return list(reversed(r.json()))


def _push_and_alias(srv: Served, tmp_path: Path, name: str = "team/m") -> None:
    (tmp_path / "f").write_text("w")
    with srv.remote(srv.tokens["admin"]) as reg:
        v = reg.push(tmp_path / "f", name)
        reg.set_alias(name, "production", v.version)


def test_signed_delivery_of_version_created_and_alias_moved(hooked: Served, receiver: Receiver, tmp_path: Path) -> None:
    hook = _subscribe(hooked, receiver.url, ["version.created", "alias.moved"])
    assert hook["secret"] and hook["events"] == ["alias.moved", "version.created"]
    _push_and_alias(hooked, tmp_path)
    assert hooked.app.state.mk.dispatcher.wait_idle(10)  # type: ignore[attr-defined]
    assert [json.loads(b)["event"] for _, b in receiver.requests] == ["version.created", "alias.moved"]
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-modelkeep-signature"], expected)
        payload = json.loads(body)
        assert headers["x-modelkeep-delivery"] == payload["id"] and payload["actor"] == "root"
        assert payload["namespace"] == "team"
    created = json.loads(receiver.requests[0][1])["data"]
    assert (created["artifact"], created["version"]) == ("team/m", "1.0.0")
    moved = json.loads(receiver.requests[1][1])["data"]
    assert (moved["alias"], moved["version"]) == ("production", "1.0.0")
    log = _deliveries(hooked, hook["id"])
    assert [(d["event"], d["ok"], d["status_code"]) for d in log] == [("version.created", True, 200), ("alias.moved", True, 200)]


def test_failures_are_retried_with_backoff_and_logged(hooked: Served, receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [500, 503]
    hook = _subscribe(hooked, receiver.url, ["version.created"])
    _push_and_alias(hooked, tmp_path)
    assert hooked.app.state.mk.dispatcher.wait_idle(10)  # type: ignore[attr-defined]
    log = _deliveries(hooked, hook["id"])
    assert [(d["attempt"], d["ok"], d["status_code"]) for d in log] == [(1, False, 500), (2, False, 503), (3, True, 200)]
    assert len({d["event_id"] for d in log}) == 1
    assert len({h["x-modelkeep-delivery"] for h, _ in receiver.requests}) == 1  # the same event, redelivered


def test_redirects_are_not_followed(hooked: Served, receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [302, 302, 302]
    hook = _subscribe(hooked, receiver.url, ["version.created"])
    _push_and_alias(hooked, tmp_path)
    assert hooked.app.state.mk.dispatcher.wait_idle(10)  # type: ignore[attr-defined]
    log = _deliveries(hooked, hook["id"])
    assert [d["ok"] for d in log] == [False, False, False]
    assert all("not followed" in d["error"] for d in log)
    assert len(receiver.requests) == 3  # only the subscriber's URL was ever called


def test_namespace_and_event_filters(hooked: Served, receiver: Receiver, tmp_path: Path) -> None:
    _subscribe(hooked, receiver.url, ["alias.moved"], namespace="other")
    _push_and_alias(hooked, tmp_path)
    assert hooked.app.state.mk.dispatcher.wait_idle(10)  # type: ignore[attr-defined]
    assert receiver.requests == []


def test_internal_addresses_are_refused_unless_allowed(srv: Served, receiver: Receiver) -> None:
    with httpx.Client(base_url=srv.url) as http:
        for url in (receiver.url, "http://10.0.0.8/x", "http://[::1]:9/x", "http://169.254.169.254/", "ftp://example.com/x"):
            r = http.post(
                "/api/v1/admin/webhooks", json={"url": url, "events": ["version.created"]}, headers=bearer(srv.tokens["admin"])
            )
            assert r.status_code == 400, url
        r = http.post(
            "/api/v1/admin/webhooks", json={"url": "https://x.example/h", "events": ["nope"]}, headers=bearer(srv.tokens["admin"])
        )
        assert r.status_code in (400, 422)
    for url in ("http://127.0.0.1/", "http://192.168.1.1/", "http://0.0.0.0/", "http://user:pw@93.184.216.34/"):
        with pytest.raises(InvalidInput):
            check_address(url, allow_private=False)
    assert check_address("http://93.184.216.34/", allow_private=False) == "http://93.184.216.34/"
    assert check_address("http://127.0.0.1/", allow_private=True) == "http://127.0.0.1/"
    pinned = check_address("http://localhost.:8080/h?x=1", allow_private=True)
    assert pinned == "http://localhost.:8080/h?x=1"  # allowed: left as given


def test_http_deliveries_connect_to_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))]])
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: next(answers))  # the resolver, not the unit under test
    assert check_address("http://hooks.example:8080/h?x=1", allow_private=False) == "http://93.184.216.34:8080/h?x=1"
    assert check_address("https://93.184.216.34/h", allow_private=False) == "https://93.184.216.34/h"


def test_webhook_admin_routes(hooked: Served, receiver: Receiver) -> None:
    hook = _subscribe(hooked, receiver.url, ["stage.changed", "approval.requested"])
    with httpx.Client(base_url=hooked.url, headers=bearer(hooked.tokens["admin"])) as http:
        listed = http.get("/api/v1/admin/webhooks").json()
        assert [h["id"] for h in listed] == [hook["id"]] and listed[0]["secret"] is None
        assert http.delete(f"/api/v1/admin/webhooks/{hook['id']}").status_code == 200
        assert http.get("/api/v1/admin/webhooks").json() == []
        assert http.delete(f"/api/v1/admin/webhooks/{hook['id']}").status_code == 404


def test_stage_changed_and_approval_requested(hooked: Served, receiver: Receiver, tmp_path: Path) -> None:
    _subscribe(hooked, receiver.url, ["stage.changed", "approval.requested"], namespace="team")
    (tmp_path / "f").write_text("w")
    with hooked.remote(hooked.tokens["admin"]) as reg:
        v = reg.push(tmp_path / "f", "team/m")
        reg.request_approval(v.ref)
        reg.transition(v.ref, "staging", reason="qa")
    assert hooked.app.state.mk.dispatcher.wait_idle(10)  # type: ignore[attr-defined]
    assert [json.loads(b)["event"] for _, b in receiver.requests] == ["approval.requested", "stage.changed"]
