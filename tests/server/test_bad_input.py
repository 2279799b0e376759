"""Bad input on every route that takes it: traversal, digests, names, sizes, JSON; never a 500."""

from __future__ import annotations

import json
from pathlib import Path

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


def _manifest_of(srv: Served, ref: str) -> dict:
    with srv.remote(srv.tokens["admin"]) as reg:
        _, manifest = reg.manifest(ref)
    return json.loads(manifest.to_bytes())


@pytest.mark.parametrize("path", [p for p in TRAVERSALS if not p.startswith("%") and "%" not in p])
def test_manifest_paths_that_leave_the_tree_are_refused(seeded: Served, http: httpx.Client, admin: dict[str, str], path: str) -> None:
    manifest = _manifest_of(seeded, "a/model@1.0.0")
    manifest["files"][0]["path"] = path
    r = http.post("/api/v1/chunks/commit", json={"name": "a/evil", "manifest": manifest}, headers=admin)
    assert r.status_code == 400, (path, r.text)
    assert r.json()["error"]["code"] in ("invalid_path", "invalid_input")
    assert http.get("/api/v1/artifact", params={"name": "a/evil"}, headers=admin).status_code == 404


@pytest.mark.parametrize("path", [p for p in TRAVERSALS if "%" in p])
def test_percent_encoded_manifest_paths_stay_literal_and_confined(
    seeded: Served, http: httpx.Client, admin: dict[str, str], path: str, tmp_path: Path
) -> None:
    manifest = _manifest_of(seeded, "a/model@1.0.0")
    manifest["files"][0]["path"] = path
    r = http.post("/api/v1/chunks/commit", json={"name": "a/encoded", "manifest": manifest}, headers=admin)
    if r.status_code == 400:  # refused outright is fine too
        return
    assert r.status_code == 200, r.text
    dest = tmp_path / "dest" / "inner"
    with seeded.remote(seeded.tokens["admin"]) as reg:
        reg.pull(f"a/encoded@{r.json()['version']}", dest)
    written = [p for p in (tmp_path / "dest").rglob("*") if p.is_file()]
    assert written and all(dest in p.parents for p in written)  # never decoded, never outside dest
    assert not (tmp_path / "x").exists()


BAD_DIGESTS = [
    "sha256:" + "0" * 64,
    "blake3:" + "0" * 63,
    "blake3:" + "0" * 65,
    "blake3:" + "A" * 64,
    "blake3:" + "g" * 64,
    "blake3:../../" + "0" * 58,
    "0" * 64,
    "blake3:",
    "",
    5,
    None,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_digests_that_are_not_blake3_hex_are_refused(seeded: Served, http: httpx.Client, admin: dict[str, str], digest: object) -> None:
    r = http.post("/api/v1/chunks/missing", json={"name": "a/model", "digests": [digest]}, headers=admin)
    assert r.status_code in (400, 422), r.text
    r = http.post("/api/v1/chunks/fetch", json={"ref": "a/model@1.0.0", "digests": [digest]}, headers=admin)
    assert r.status_code in (400, 422), r.text
    manifest = _manifest_of(seeded, "a/model@1.0.0")
    manifest["files"][0]["digest"] = digest
    r = http.post("/api/v1/chunks/commit", json={"name": "a/bad-digest", "manifest": manifest}, headers=admin)
    assert r.status_code in (400, 422), r.text


@pytest.mark.parametrize(
    "route",
    [
        ("GET", "/api/v1/version", "ref"),
        ("GET", "/api/v1/files", "ref"),
        ("GET", "/api/v1/lineage", "ref"),
        ("GET", "/api/v1/chunks/manifest", "ref"),
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
        ("POST", "/api/v1/chunks/missing", {"json": {"name": name, "digests": []}}),
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
    for path in ["/api/v1/chunks/commit", "/api/v1/chunks/missing", "/api/v1/storage/gc", "/api/v1/holds", "/api/v1/admin/webhooks", "/api/v1/signatures"]:
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
    r = http.post("/api/v1/chunks", params={"name": "a/model"}, content=b"x" * (1024 * 1024 + 1), headers=admin)
    assert r.status_code == 413
    r = http.post("/api/v1/chunks/commit", content=b"{" + b" " * (1024 * 1024 + 1), headers=admin)
    assert r.status_code == 413


def test_unknown_routes_and_methods(http: httpx.Client, admin: dict[str, str]) -> None:
    r = http.get("/api/v1/nothing-here", headers=admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert http.patch("/api/v1/aliases", headers=admin).status_code == 405


def test_bad_query_types_are_422_on_any_operation(http: httpx.Client, admin: dict[str, str]) -> None:
    assert http.get("/api/v1/aliases/at", params={"name": "a/model", "alias": "p", "at": "yesterday"}, headers=admin).status_code == 422
    assert http.get("/api/v1/lineage", params={"ref": "a/model", "depth": "deep"}, headers=admin).status_code == 422
    assert http.post("/api/v1/storage/gc", json={"dry_run": "yes"}, headers=admin).status_code == 422
    assert http.post("/api/v1/storage/gc", json={"grace_seconds": [1]}, headers=admin).status_code == 422
