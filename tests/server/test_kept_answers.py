"""Ref resolutions are answered from kept encodings only while the database has not changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from _servers import bearer, fresh_postgres, served

from modelkeep.registry.embedded import EmbeddedRegistry
from modelkeep.registry.operations import Role


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    (d / "w.bin").write_bytes(b"weights 1")
    return d


def _counting_reads(registry: EmbeddedRegistry) -> list[object]:
    """Record every ``get`` the server's registry (and each per-request view of it) serves."""
    calls: list[object] = []
    original = registry.get

    def get(ref):  # type: ignore[no-untyped-def]
        calls.append(ref)
        return original(ref)

    registry.get = get  # type: ignore[method-assign]  # views copy the instance's attributes
    return calls


def _seeded(srv, src: Path) -> tuple[str, list[object]]:  # type: ignore[no-untyped-def]
    """a/model 1.0.0 and 1.1.0 with production on 1.0.0: an admin token, and the server's reads counted from now."""
    admin = srv.user("root", {"*": Role.ADMIN})
    with srv.remote(admin) as reg:
        reg.push(src, "a/model")
        (src / "w.bin").write_bytes(b"weights 2")
        reg.push(src, "a/model")
        reg.set_alias("a/model", "production", "1.0.0")
    return admin, _counting_reads(srv.registry)


def _production(http: httpx.Client) -> dict:  # type: ignore[type-arg]
    r = http.get("/api/v1/version", params={"ref": "a/model@production"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_resolution_is_read_once_until_any_process_commits(tmp_path: Path, src: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    with served(db, tmp_path / "store") as srv:
        admin, calls = _seeded(srv, src)
        with httpx.Client(base_url=srv.url, headers=bearer(admin), timeout=30) as http:

            def production() -> dict:  # type: ignore[type-arg]
                return _production(http)

            assert production()["version"] == "1.0.0"
            assert production()["version"] == "1.0.0"
            assert len(calls) == 1  # the second answer was the kept one

            # Another replica (its own registry on the same database, its own process) moves the alias.
            script = (
                "from modelkeep.registry.embedded import EmbeddedRegistry as R; "
                f"r = R({db!r}, 'file://{tmp_path / 'store'}', 'other'); "
                "r.set_alias('a/model', 'production', '1.1.0'); r.close()"
            )
            subprocess.run([sys.executable, "-c", script], check=True)
            assert production()["version"] == "1.1.0"
            assert len(calls) == 2

            # A commit in this process, through the server, shows at once too.
            r = http.put("/api/v1/tags", json={"ref": "a/model@1.1.0", "key": "team", "value": "fraud"})
            assert r.status_code == 200, r.text
            assert production()["tags"] == {"team": "fraud"}

            # A different ref is a different answer; a miss is never kept.
            assert http.get("/api/v1/version", params={"ref": "a/model@1.0.0"}).json()["version"] == "1.0.0"
            assert http.get("/api/v1/version", params={"ref": "a/model@staging"}).status_code == 404
            other = EmbeddedRegistry(db, f"file://{tmp_path / 'store'}", "other")
            try:
                other.set_alias("a/model", "staging", "1.0.0")
            finally:
                other.close()
            assert http.get("/api/v1/version", params={"ref": "a/model@staging"}).json()["version"] == "1.0.0"


def test_a_kept_answer_is_still_authorized(tmp_path: Path, src: Path) -> None:
    # auth_cache_seconds=0: every request asks the database for its token
    with served(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", auth_cache_seconds=0) as srv:
        admin = srv.user("root", {"*": Role.ADMIN})
        outsider = srv.user("bob", {"b": Role.VIEWER})
        viewer = srv.user("carol", {"a": Role.VIEWER})
        with srv.remote(admin) as reg:
            reg.push(src, "a/model")
            reg.set_alias("a/model", "production", "1.0.0")
        calls = _counting_reads(srv.registry)
        params = {"ref": "a/model@production"}
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            assert http.get("/api/v1/version", params=params, headers=bearer(admin)).status_code == 200
            assert http.get("/api/v1/version", params=params, headers=bearer(viewer)).status_code == 200
            assert len(calls) == 1
            denied = http.get("/api/v1/version", params=params, headers=bearer(outsider))
            assert denied.status_code == 403 and "1.0.0" not in denied.text
            assert http.get("/api/v1/version", params=params).status_code == 401
            (carol,) = srv.auth.tokens("carol")
            srv.auth.revoke_token(carol.id)
            assert http.get("/api/v1/version", params=params, headers=bearer(viewer)).status_code == 401
            assert len(calls) == 1


def test_postgresql_keeps_answers_until_any_replica_commits(src: Path, tmp_path: Path) -> None:
    with fresh_postgres() as url, served(url, tmp_path / "store") as srv:
        admin, calls = _seeded(srv, src)
        with httpx.Client(base_url=srv.url, headers=bearer(admin), timeout=30) as http:

            def production() -> str:
                return str(_production(http)["version"])

            assert production() == production() == "1.0.0"
            assert len(calls) == 1
            other = EmbeddedRegistry(url, f"file://{tmp_path / 'store'}", "other")  # another replica
            try:
                other.set_alias("a/model", "production", "1.1.0")
            finally:
                other.close()
            assert production() == "1.1.0"
            assert len(calls) == 2
