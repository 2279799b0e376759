"""Several clients at once through one server: distinct versions, nothing lost, on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

from _servers import fresh_postgres, served

from modelkeep.registry.operations import Role


def test_clients_pushing_the_same_artifact_at_once_get_distinct_versions(tmp_path: Path) -> None:
    with fresh_postgres() as db_url, served(db_url, tmp_path / "store") as srv:
        token = srv.user("ci", {"team": Role.CONTRIBUTOR})
        results: list[str] = []
        errors: list[BaseException] = []

        def push(i: int) -> None:
            src = tmp_path / f"src{i}"
            src.mkdir()
            (src / "w.bin").write_bytes(f"weights {i}".encode() * 1000)
            try:
                with srv.remote(token) as reg:
                    results.append(reg.push(src, "team/m").version)
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)

        threads = [threading.Thread(target=push, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert sorted(results) == sorted(set(results)) and len(results) == 4
        with srv.remote(token) as reg:
            assert sorted(v.version for v in reg.versions("team/m")) == sorted(results)
            assert all(v.author == "ci" for v in reg.versions("team/m"))
