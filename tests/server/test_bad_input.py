"""Bad input on every route that takes it: traversal, digests, names, sizes, JSON; never a 500."""

from __future__ import annotations

import httpx
import pytest
from _servers import Served, bearer


@pytest.fixture
def admin(srv: Served) -> dict[str, str]:
    return bearer(srv.tokens["admin"])


TRAVERSALS = [
    "..",
    "../x",
    "a/../../x",
    "/etc/passwd",
    "%2e%2e/x",
    "%2E%2E%2Fx",
    "%252e%252e/x",
    "%252e%252e%252fx",
    "a%2f..%2f..%2fx",
    "..\\x",
    "a\\..\\x",
    "%5c..%5cx",
    "a\x00b",
    "a%00b",
    "C:/x",
]


def _upload(http: httpx.Client, headers: dict[str, str], name: str = "a/upload") -> str:
    r = http.post("/api/v1/uploads", json={"name": name}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["id"]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_upload_paths_that_leave_the_tree_are_refused(srv: Served, http: httpx.Client, admin: dict[str, str], path: str) -> None:
    upload = _upload(http, admin)
    r = http.put(f"/api/v1/uploads/{upload}/files", params={"path": path}, content=b"x", headers=admin)
    assert r.status_code == 400, (path, r.text)
    assert r.json()["error"]["code"] == "invalid_path"
    assert not any(p.name == "x" for p in srv.app.state.mk.staging.rglob("*") if p.is_file())  # type: ignore[attr-defined]


@pytest.mark.parametrize("upload_id", ["..", "../../etc", "%2e%2e", "0" * 31, "g" * 32])
def test_upload_ids_are_checked(http: httpx.Client, admin: dict[str, str], upload_id: str) -> None:
    r = http.put(f"/api/v1/uploads/{upload_id}/files", params={"path": "ok"}, content=b"x", headers=admin)
    assert r.status_code in (404, 405)  # ".." segments are resolved by the client: no such route


@pytest.mark.parametrize(
    "route",
    [
        ("GET", "/api/v1/version", "ref"),
        ("GET", "/api/v1/files", "ref"),
        ("GET", "/api/v1/lineage", "ref"),
        ("GET", "/api/v1/archive", "ref"),
        ("GET", "/api/v1/tags/history", "ref"),
        ("GET", "/api/v1/signatures", "ref"),
    ],
)
@pytest.mark.parametrize(
    "ref",
    [
        "a/model@blake3:zz",
        "a/model@blake3:12",
        "a/model@sha256:" + "0" * 64,
        "../etc/passwd",
        "a/../model",
        "/a/model",
        "a\\model",
        "a/mo\x00del",
        "%2e%2e/model",
        "A/Model",
        "a/ﬁle",  # NFKC would fold the ligature to "file": refused, never normalized
        "a/modèle",
    ],
)
def test_refs_that_are_not_names_are_400(http: httpx.Client, admin: dict[str, str], route: tuple[str, str, str], ref: str) -> None:
    method, path, param = route
    r = http.request(method, path, params={param: ref}, headers=admin)
    assert r.status_code == 400, (ref, r.text)
    assert r.json()["error"]["code"] in ("invalid_ref", "invalid_name", "invalid_input")


@pytest.mark.parametrize("name", ["A/model", "a/Model", "a/ﬁle", "a/mode\u0301l", "a/../b", "a/b/c", "", "a/" + "x" * 65])
def test_names_differing_in_case_or_unicode_form_are_refused(http: httpx.Client, admin: dict[str, str], name: str) -> None:
    for method, path, kwargs in [
        ("GET", "/api/v1/versions", {"params": {"name": name}}),
        ("GET", "/api/v1/artifact", {"params": {"name": name}}),
        ("PUT", "/api/v1/aliases", {"json": {"name": name, "alias": "prod", "version": "1.0.0"}}),
        ("POST", "/api/v1/uploads", {"json": {"name": name}}),
    ]:
        r = http.request(method, path, headers=admin, **kwargs)
        assert r.status_code == 400, (method, path, name, r.text)
        assert r.json()["error"]["code"] == "invalid_name"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b'{"name": 5, "alias": "x", "version": "1.0.0"}', b'{"alias": "x"}', b"\xff\xfe", b'{"name": "a/m", "alias": "p", "version": "1.0.0", "extra": 1}'],
)
def test_malformed_json_is_422(http: httpx.Client, admin: dict[str, str], body: bytes) -> None:
    r = http.put("/api/v1/aliases", content=body, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "malformed_request"


def test_malformed_json_on_every_body_route_is_422(http: httpx.Client, admin: dict[str, str]) -> None:
    for path in ["/api/v1/uploads", "/api/v1/storage/gc", "/api/v1/holds", "/api/v1/admin/webhooks", "/api/v1/signatures"]:
        r = http.post(path, content=b"{oops", headers={**admin, "Content-Type": "application/json"})
        assert r.status_code == 422, (path, r.text)


@pytest.mark.parametrize("params", [{"name": "a/model", "limit": "many"}, {"name": "a/model", "offset": "1.5"}, {"name": "a/model", "bogus": "1"}])
def test_bad_query_values_are_422(http: httpx.Client, admin: dict[str, str], params: dict[str, str]) -> None:
    r = http.get("/api/v1/versions", params=params, headers=admin)
    assert r.status_code == 422, r.text


def test_oversized_bodies_are_413(srv: Served, http: httpx.Client, admin: dict[str, str]) -> None:
    big = b'{"name": "a/m", "alias": "p", "version": "' + b"1" * (64 * 1024) + b'"}'
    r = http.put("/api/v1/aliases", content=big, headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunked():  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b" " * 1024

    r = http.put("/api/v1/aliases", content=chunked(), headers={**admin, "Content-Type": "application/json"})
    assert r.status_code == 413
    upload = _upload(http, admin)
    r = http.put(f"/api/v1/uploads/{upload}/files", params={"path": "big"}, content=b"x" * (1024 * 1024 + 1), headers=admin)
    assert r.status_code == 413
    r = http.put(f"/api/v1/uploads/{upload}/files", params={"path": "fits"}, content=b"x" * 1024, headers=admin)
    assert r.status_code == 200


def test_another_users_upload_is_forbidden(srv: Served, http: httpx.Client, admin: dict[str, str]) -> None:
    upload = _upload(http, admin, "a/theirs")
    alice = bearer(srv.tokens["a-contributor"])
    r = http.put(f"/api/v1/uploads/{upload}/files", params={"path": "x"}, content=b"x", headers=alice)
    assert r.status_code == 403
    assert http.post(f"/api/v1/uploads/{upload}/commit", json={}, headers=alice).status_code == 403


def test_unknown_routes_and_methods(http: httpx.Client, admin: dict[str, str]) -> None:
    r = http.get("/api/v1/nothing-here", headers=admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert http.patch("/api/v1/aliases", headers=admin).status_code == 405
