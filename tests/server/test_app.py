"""The app itself: health, readiness, metrics, docs, the error body, the CLI for users and tokens, remote CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from _servers import Served, bearer, served
from typer.testing import CliRunner

from modelkeep.cli.main import app as cli
from modelkeep.errors import ModelkeepError, error_classes
from modelkeep.server.errors import STATUS, status_of


def test_health_readiness_metrics_docs(srv: Served, http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    http.get("/api/v1/artifacts", headers=bearer(srv.tokens["admin"]))
    metrics = http.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'modelkeep_http_requests_total{method="GET",route="/api/v1/artifacts",status="200"}' in metrics.text
    assert http.get("/docs").status_code == 200


def test_readyz_reports_an_unreachable_database(tmp_path: Path) -> None:
    with served(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "store") as srv, httpx.Client(base_url=srv.url) as http:
        srv.app.state.mk.auth._engine.dispose()  # type: ignore[attr-defined]
        (tmp_path / "r.db").unlink()
        (tmp_path / "r.db").mkdir()  # the database file is now a folder: SQLite cannot open it
        r = http.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage"
        assert http.get("/healthz").status_code == 200


def test_every_error_code_has_a_status() -> None:
    for code, cls in error_classes().items():
        exc = cls.__new__(cls)
        ModelkeepError.__init__(exc, "x")
        assert 400 <= status_of(exc) <= 599, code
    assert STATUS["unauthorized"] == 401 and STATUS["forbidden"] == 403 and STATUS["payload_too_large"] == 413


def _mk(env: dict[str, str | None]):  # type: ignore[no-untyped-def]
    runner = CliRunner(env={"MODELKEEP_URI": None, "MODELKEEP_STORE": None, "MODELKEEP_TOKEN": None, "COLUMNS": "200", **env})

    def invoke(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli, list(args), prog_name="mk")
        assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
        return result

    return invoke


def test_create_admin_tokens_and_the_cli_against_a_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = f"sqlite:///{tmp_path / 'r.db'}"
    mk = _mk({"MODELKEEP_HOME": str(home)})
    secret = mk("server", "create-admin", "root", "--db", db).stdout.strip()
    assert secret.startswith("mk_") and len(secret) > 40
    mk("server", "--db", db, "user", "add", "bob")
    mk("server", "grant", "bob", "viewer", "--namespace", "team", "--db", db)
    bob = mk("server", "token", "create", "bob", "--expires-days", "1", "--db", db).stdout.strip()
    listed = mk("server", "token", "ls", "--db", db).stdout
    assert "root" in listed and "bob" in listed and secret not in listed and bob not in listed
    mk("server", "grant", "bob", "wizard", "--db", db, code=2)

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"weights")
    with served(db, tmp_path / "store") as srv:
        as_root = _mk({"MODELKEEP_URI": srv.url, "MODELKEEP_TOKEN": secret, "MODELKEEP_HOME": str(home)})
        out = as_root("push", str(tmp_path / "m"), "team/m", "--kind", "model").stdout
        assert "1.0.0" in out
        as_root("alias", "set", "team/m", "production", "1.0.0")
        assert "team/m" in as_root("ls").stdout
        as_root("pull", "team/m@production", str(tmp_path / "out"))
        assert (tmp_path / "out" / "w.bin").read_bytes() == b"weights"
        as_bob = _mk({"MODELKEEP_URI": srv.url, "MODELKEEP_TOKEN": bob, "MODELKEEP_HOME": str(home)})
        assert "production" in as_bob("show", "team/m").stdout
        denied = as_bob("alias", "rm", "team/m", "production", code=7)
        assert "error:" in denied.stderr and "contributor" in denied.stderr
        as_bob("show", "team/absent", code=3)
        listed_json = mk("server", "token", "ls", "--user", "bob", "--json", "--db", db).stdout
        token_id = str(json.loads(listed_json)[0]["id"])
        mk("server", "token", "revoke", token_id, "--db", db)
        time.sleep(srv.app.state.mk.settings.auth_cache_seconds)  # type: ignore[attr-defined]  # the bound on revocation
        as_bob("show", "team/m", code=7)
        nobody = _mk({"MODELKEEP_URI": srv.url, "MODELKEEP_HOME": str(home)})
        assert "authentication required" in nobody("ls", code=7).stderr


def test_server_refuses_a_remote_database(tmp_path: Path) -> None:
    mk = _mk({"MODELKEEP_HOME": str(tmp_path)})
    mk("server", "create-admin", "x", "--db", "http://elsewhere:8080", code=2)


@pytest.mark.skipif(os.name != "posix", reason="POSIX process handling")
def test_mk_server_command_starts_and_stops(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MODELKEEP_HOME": str(tmp_path / "home")}
    env.pop("MODELKEEP_URI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelkeep", "server", "--host", "127.0.0.1", "--port", str(port), "--no-auth"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with httpx.Client() as http:
                    if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    assert "authentication is DISABLED" in stderr


def test_settings_carry_the_token_without_showing_it() -> None:
    from modelkeep.config import Settings

    s = Settings.from_env({"MODELKEEP_URI": "https://registry:8080", "MODELKEEP_TOKEN": "mk_secret"})
    assert s.remote and s.token == "mk_secret" and "mk_secret" not in repr(s)
    assert Settings.from_env({"MODELKEEP_TOKEN": "a"}, token="b").token == "b"
    assert not Settings.from_env({}).remote and Settings.from_env({}).token is None
