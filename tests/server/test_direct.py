"""The direct path of the Registry operations answers exactly as their FastAPI routes do."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
from _servers import bearer, fresh_postgres, served

import modelkeep
from modelkeep.registry.operations import Role
from modelkeep.server.app import create_app
from modelkeep.server.settings import ServerSettings


def test_direct_and_fastapi_paths_give_the_same_answers(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"weights")
    with served(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store", max_json_bytes=1024) as srv:
        admin = srv.user("root", {"*": Role.ADMIN})
        viewer = srv.user("bob", {"a": Role.VIEWER})
        with srv.remote(admin) as reg:
            reg.push(src, "a/model", kind="model")
            reg.set_alias("a/model", "production", "1.0.0")
        requests = [
            ("GET", "/api/v1/version", {"params": {"ref": "a/model@production"}}, admin),
            ("GET", "/api/v1/version", {"params": {"ref": "a/model@production"}}, viewer),
            ("GET", "/api/v1/version", {"params": {"ref": "b/model@1.0.0"}}, viewer),  # 403
            ("GET", "/api/v1/version", {"params": {"ref": "a/absent@1.0.0"}}, viewer),  # 404
            ("GET", "/api/v1/version", {"params": {"ref": "a/model", "bogus": "1"}}, viewer),  # 422
            ("GET", "/api/v1/version", {"params": {"ref": "a/model"}}, None),  # 401
            ("GET", "/api/v1/version", {"params": {"ref": "a/model"}}, "mk_nope"),  # 401
            ("GET", "/api/v1/versions", {"params": {"name": "a/model", "limit": "x"}}, viewer),  # 422
            ("PUT", "/api/v1/tags", {"content": b"{not json"}, admin),  # 422
            ("PUT", "/api/v1/tags", {"content": b"x" * 2048}, admin),  # 413
            ("GET", "/api/v1/artifacts", {}, viewer),
        ]

        def answers() -> list[tuple[int, bytes]]:
            out = []
            with httpx.Client(base_url=srv.url, timeout=30) as http:
                for method, path, kwargs, token in requests:
                    r = http.request(method, path, headers=bearer(token) if token else {}, **kwargs)
                    out.append((r.status_code, r.content))
            return out

        direct = answers()
        app = srv.app
        saved, app.direct = app.direct, None  # type: ignore[attr-defined]
        try:
            routed = answers()
        finally:
            app.direct = saved  # type: ignore[attr-defined]
        assert [s for s, _ in direct] == [200, 200, 403, 404, 422, 401, 401, 422, 422, 413, 200]
        assert direct == routed
        with httpx.Client(base_url=srv.url) as http:
            metrics = http.get("/metrics").text
        # the direct path labels requests by route template, like the routed one
        assert 'modelkeep_http_requests_total{method="GET",route="/api/v1/version",status="200"}' in metrics
        assert 'modelkeep_http_requests_total{method="GET",route="/api/v1/version",status="403"}' in metrics



class _Registry:  # all create_app needs of a registry
    def as_actor(self, actor: str) -> _Registry:
        return self


def _runs_on_the_loop(db_url: str, *, point: bool) -> bool:
    app = create_app(_Registry(), ServerSettings(db_url=db_url))  # type: ignore[arg-type]
    ctx = app.state.mk

    async def check() -> bool:
        loop_thread = threading.get_ident()
        return await ctx.read(lambda: threading.get_ident() == loop_thread, point=point)

    try:
        return asyncio.run(check())
    finally:
        ctx.auth.close()


def test_point_reads_run_on_the_event_loop_on_sqlite(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert _runs_on_the_loop(db, point=True)
    assert not _runs_on_the_loop(db, point=False)  # other reads: a worker thread


def test_every_read_runs_in_a_thread_on_postgresql() -> None:
    with fresh_postgres() as db:
        assert not _runs_on_the_loop(db, point=True)  # it waits on the network: never on the loop


def test_answers_are_rendered_as_the_standard_library_renders_them(tmp_path: Path) -> None:
    import json

    from modelkeep.registry.wire import to_wire
    from modelkeep.server.routes._operation import WireJSON

    reg = modelkeep.open(tmp_path / "home")
    try:
        (tmp_path / "w.bin").write_bytes(b"weights")
        v = reg.push(
            tmp_path / "w.bin", "team/m", kind="model", message="é ✓ \"quoted\"\n",
            params={"lr": 0.001, "big": 2**62, "nested": {"k": [1, 2.5, None, True]}}, metrics={"acc": 0.93},
            tags={"owner": "ана"},
        )
        body = to_wire(v)
    finally:
        reg.close()
    stdlib = json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
    assert WireJSON(body).body == stdlib
