"""Chunk-level pushes against a server on PostgreSQL: concurrent clients, and a server killed mid-push."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from modelkeep.client import transfer
from modelkeep.client._http import Http
from modelkeep.client.cache import ChunkCache
from modelkeep.errors import StorageError
from modelkeep.registry.embedded import EmbeddedRegistry

from .conftest import serve_registry


def _files(root: Path, seed: int, size: int = 400_000) -> Path:
    root.mkdir(parents=True)
    (root / "weights.bin").write_bytes(os.urandom(size))
    (root / "seed.txt").write_text(str(seed))
    return root


def test_two_clients_push_the_same_artifact_at_once(postgres_url, tmp_path):
    name = f"team/m{uuid.uuid4().hex[:8]}"
    with serve_registry(postgres_url, f"file://{tmp_path / 'store'}") as served:
        sources = {(c, i): _files(tmp_path / f"src-{c}-{i}", c * 10 + i) for c in range(2) for i in range(3)}
        results: dict[tuple[int, int], transfer.PushResult] = {}
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def client(c: int) -> None:
            http = Http(served.url)
            try:
                start.wait()
                for i in range(3):
                    results[(c, i)] = transfer.upload(http, sources[(c, i)], name, message=f"client {c} push {i}")
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)
            finally:
                http.close()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        versions = {r.version.version for r in results.values()}
        assert len(versions) == 6  # distinct versions, none lost
        listed = served.registry.versions(name)
        assert {v.version for v in listed} == versions
        cache = ChunkCache(tmp_path / "cache")
        for (c, i), r in results.items():  # every version holds exactly its own files
            out = tmp_path / f"out-{c}-{i}"
            transfer.download(served.http, f"{name}@{r.version.version}", out, cache=cache)
            assert (out / "weights.bin").read_bytes() == (sources[(c, i)] / "weights.bin").read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(db_url: str, store_url: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelkeep", "server", "--host", "127.0.0.1", "--port", str(port),
         "--db", db_url, "--store", store_url, "--no-auth", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError("server did not start in 30 s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


class KillAfter:
    """Forwards requests; kills the server (SIGKILL) just before chunk upload number ``n``."""

    def __init__(self, http: Http, proc: subprocess.Popen, n: int) -> None:
        self.http, self.proc, self.n, self.uploads = http, proc, n, 0

    def request(self, method: str, path: str, **kw):  # type: ignore[no-untyped-def]
        if path == "/api/v1/chunks":
            self.uploads += 1
            if self.uploads == self.n:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.http.request(method, path, **kw)


def test_server_killed_mid_push_leaves_no_version_and_the_retry_succeeds(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer.time, "sleep", lambda s: None)  # retries against a dead server: no waiting
    name = f"team/k{uuid.uuid4().hex[:8]}"
    store_url = f"file://{tmp_path / 'store'}"
    src = _files(tmp_path / "src", 1, size=6_000_000)
    port = _free_port()
    proc = _start_server(postgres_url, store_url, port)
    http = Http(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(StorageError):
            transfer.upload(KillAfter(http, proc, 4), src, name, batch_bytes=1_000_000, jobs=1)
        _stop(proc)
        with EmbeddedRegistry(postgres_url, store_url, "check") as reg:
            assert name not in {a.name for a in reg.artifacts()}  # no partial version
        proc = _start_server(postgres_url, store_url, port)
        r = transfer.upload(http, src, name, batch_bytes=1_000_000)
        assert r.version.version == "1.0.0"
        assert r.sent_bytes <= r.total_bytes - 2_500_000  # the three acknowledged batches stayed
        out = tmp_path / "out"
        transfer.download(http, f"{name}@1.0.0", out, cache=ChunkCache(tmp_path / "cache"))
        assert (out / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
    finally:
        http.close()
        _stop(proc)
