"""A served registry per module (SQLite, local store) and an httpx client helper."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from _servers import Served, served

from modelkeep.registry.operations import Role


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("server")
    with served(f"sqlite:///{root / 'r.db'}", root / "store", max_json_bytes=64 * 1024, max_upload_bytes=1024 * 1024) as s:
        s.tokens["admin"] = s.user("root", {"*": Role.ADMIN})
        s.tokens["a-contributor"] = s.user("alice", {"a": Role.CONTRIBUTOR})
        s.tokens["b-viewer"] = s.user("bob", {"b": Role.VIEWER})
        yield s


@pytest.fixture
def http(srv: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def seeded(srv: Served, tmp_path_factory: pytest.TempPathFactory) -> Served:
    """Artifacts a/model (1.0.0) and b/model (1.0.0), pushed by the admin."""
    src = tmp_path_factory.mktemp("src")
    (src / "w.bin").write_bytes(b"weights")
    with srv.remote(srv.tokens["admin"]) as reg:
        for name in ("a/model", "b/model"):
            reg.push(src, name, kind="model")
    return srv
