"""``mk server --workers N``: forked processes on one socket serve one registry, and stop together."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
if not hasattr(os, "fork") or not Path("/proc/self/task").is_dir():
    pytest.skip("forked workers and /proc are Linux's", allow_module_level=True)

import httpx  # noqa: E402
from _servers import fresh_postgres  # noqa: E402

from modelkeep.client import transfer  # noqa: E402
from modelkeep.client._http import Http  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _start(tmp_path: Path, workers: int, db: str | None = None) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelkeep", "server", "--host", "127.0.0.1", "--port", str(port),
             "--db", db or f"sqlite:///{tmp_path / 'reg.db'}", "--store", f"file://{tmp_path / 'store'}",
             "--no-auth", "--log-level", "warning", "--workers", str(workers)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200 and len(_children(proc.pid)) == workers:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError("server did not start in 30 s")


def _gone(pids: list[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "zombie" not in Path(f"/proc/{p}/status").read_text().lower() for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'reg.db'}"
    else:
        with fresh_postgres() as url:
            yield url


def test_workers_serve_one_registry_and_stop_together(tmp_path, db_url):
    proc, port = _start(tmp_path, 2, db_url)
    workers = _children(proc.pid)
    try:
        src = tmp_path / "src"
        src.mkdir()
        data = os.urandom(3_000_000)
        (src / "weights.bin").write_bytes(data)
        # Many small batches over several connections: uploads and the commit land
        # on both workers, so each must find on disk the chunks the other wrote.
        clients = [Http(f"http://127.0.0.1:{port}") for _ in range(3)]
        try:
            r = transfer.upload(clients[0], src, "team/model", batch_bytes=200_000, jobs=3)
            assert r.version.version == "1.0.0" and r.total_bytes == len(data)
            clients[1].request("PUT", "/api/v1/aliases", json={"name": "team/model", "alias": "production", "version": "1.0.0"})
            for i in range(20):  # a new connection each time: either worker answers
                got = httpx.get(f"http://127.0.0.1:{port}/api/v1/version", params={"ref": "team/model@production"})
                assert got.status_code == 200 and got.json()["version"] == "1.0.0", got.text
            transfer.download(clients[2], "team/model@production", tmp_path / "out", cache=None)
            assert (tmp_path / "out" / "weights.bin").read_bytes() == data
        finally:
            for c in clients:
                c.close()
        os.kill(proc.pid, signal.SIGTERM)  # the parent passes it on
        assert proc.wait(20) == 0
        assert _gone(workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_worker_that_dies_takes_the_server_down_with_a_failure(tmp_path):
    proc, _ = _start(tmp_path, 2)
    workers = _children(proc.pid)
    try:
        os.kill(workers[0], signal.SIGKILL)
        assert proc.wait(20) == 1  # not left serving with half its workers
        assert _gone(workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
