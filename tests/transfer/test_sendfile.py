"""Upload bodies sent from the files by the kernel: used where it applies, refused bytes never stored."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from modelkeep.client import _sendfile, transfer
from modelkeep.client._http import Http
from modelkeep.client._sendfile import FileChanged, FilePoster
from modelkeep.errors import ArtifactNotFound


def _blob(root: Path, size: int = 5_000_000) -> Path:  # over SPAN_MIN: sent from the file
    root.mkdir()
    (root / "blob.bin").write_bytes(os.urandom(size))
    return root


def _posts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the bodies FilePoster sends."""
    sent: list[int] = []
    original = FilePoster.post

    def post(self, target, body, headers):  # type: ignore[no-untyped-def]
        sent.append(len(body))
        return original(self, target, body, headers)

    monkeypatch.setattr(FilePoster, "post", post)
    return sent


def _after_each_scan(monkeypatch: pytest.MonkeyPatch, change) -> None:  # type: ignore[no-untyped-def]
    """Call ``change(path)`` on each pushed file once it has been scanned, before its batch goes out."""
    scan = transfer._Uploader.scan

    def scan_then_change(self, path, rel):  # type: ignore[no-untyped-def]
        entry = scan(self, path, rel)
        change(path)
        return entry

    monkeypatch.setattr(transfer._Uploader, "scan", scan_then_change)


def test_a_plain_http_push_is_sent_from_the_files_and_pulls_back_the_same(served, tmp_path, monkeypatch):
    sent = _posts(monkeypatch)
    src = _blob(tmp_path / "src")
    r = transfer.upload(served.http, src, "team/blob", batch_bytes=1_000_000, jobs=2)
    assert len(sent) >= 3 and sum(sent) == r.wire_bytes
    assert r.sent_bytes == r.total_bytes == 5_000_000
    out = tmp_path / "out"
    transfer.download(served.http, "team/blob@latest", out)
    assert (out / "blob.bin").read_bytes() == (src / "blob.bin").read_bytes()
    # the connections were kept for the next requests, not one per batch
    assert 0 < len(served.http._poster._idle) <= 2


def test_small_files_are_copied_and_only_large_ones_held_open(served, tmp_path, monkeypatch):
    src = tmp_path / "dataset"
    src.mkdir()
    files = {f"part-{i:04d}.json": os.urandom(1_000 + i) for i in range(300)}
    files["weights.bin"] = os.urandom(transfer.SPAN_MIN + 1)
    for name, data in files.items():
        (src / name).write_bytes(data)
    opened: list[str] = []
    original = transfer._Source.__init__

    def counting(self, path):  # type: ignore[no-untyped-def]
        opened.append(Path(path).name)
        original(self, path)

    monkeypatch.setattr(transfer._Source, "__init__", counting)
    sent = _posts(monkeypatch)
    r = transfer.upload(served.http, src, "team/dataset", batch_bytes=1_000_000)
    assert opened == ["weights.bin"]  # 300 small files, none held open
    assert sum(sent) == r.wire_bytes and r.sent_bytes == r.total_bytes
    out = tmp_path / "out"
    transfer.download(served.http, "team/dataset@latest", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_a_file_changed_after_its_scan_is_refused_and_nothing_is_committed(served, tmp_path, monkeypatch):
    src = _blob(tmp_path / "src")
    # same size, other bytes, before anything is sent
    _after_each_scan(monkeypatch, lambda path: Path(path).write_bytes(os.urandom(5_000_000)))
    with pytest.raises(FileChanged, match="changed while being pushed"):
        transfer.upload(served.http, src, "team/changed", batch_bytes=8_000_000)
    with pytest.raises(ArtifactNotFound):
        served.registry.get("team/changed")
    assert served.registry.store.stats().chunks == 0  # the whole batch was refused


def test_a_file_that_shrank_after_its_scan_is_refused(served, tmp_path, monkeypatch):
    src = _blob(tmp_path / "src")
    _after_each_scan(monkeypatch, lambda path: os.truncate(path, 1_000_000))
    with pytest.raises(FileChanged, match="shrank"):
        transfer.upload(served.http, src, "team/shrunk", batch_bytes=8_000_000)
    with pytest.raises(ArtifactNotFound):
        served.registry.get("team/shrunk")
    # the connection that carried half a request was dropped: the next push works
    monkeypatch.undo()
    ok = _blob(tmp_path / "ok")
    assert transfer.upload(served.http, ok, "team/ok").sent_bytes == 5_000_000


def test_httpx_sends_where_the_kernel_cannot(served, tmp_path, monkeypatch):
    sent = _posts(monkeypatch)
    http = Http(served.url, transport=httpx.HTTPTransport())  # a transport of the caller's: every request through it
    try:
        assert http._poster is None
        r = transfer.upload(http, _blob(tmp_path / "src"), "team/httpx", batch_bytes=1_000_000)
    finally:
        http.close()
    assert not sent and r.sent_bytes == 5_000_000
    assert served.registry.get("team/httpx").size == 5_000_000


def test_where_the_poster_applies(monkeypatch):
    client = httpx.Client(headers={"Authorization": "Bearer mk_x", "X-Other": "1"})
    try:
        for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(var, raising=False)
        poster = FilePoster.of("http://127.0.0.1:8080/base", client, own_transport=False)
        assert poster is not None and poster._headers["authorization"] == "Bearer mk_x" and "x-other" not in poster._headers
        assert FilePoster.of("https://models.example:8443", client, own_transport=False) is None
        assert FilePoster.of("http://127.0.0.1:8080", client, own_transport=True) is None
        monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
        assert FilePoster.of("http://10.0.0.5:8080", client, own_transport=False) is None
        monkeypatch.setenv("NO_PROXY", "10.0.0.5")
        assert FilePoster.of("http://10.0.0.5:8080", client, own_transport=False) is not None
    finally:
        client.close()
    assert _sendfile.FileChanged.__mro__[1].__name__ == "InvalidPath"  # callers catch it as a bad input path


def test_a_kept_connection_the_server_closed_is_replaced(tmp_path):
    """A server that closes each connection after answering (as an idle keep-alive timeout does)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    bodies: list[bytes] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                bodies.append(body)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    (tmp_path / "f").write_bytes(b"0123456789")
    f = open(tmp_path / "f", "rb", buffering=0)
    poster = FilePoster("127.0.0.1", port, "", {}, 10.0)
    try:
        body = _sendfile.FileSpans(b"head:", [(f, 2, 5)])
        assert poster.post("/x", body, {})[0] == 200
        assert len(poster._idle) == 1  # kept: the answer did not say it would close
        thread.join(0.2)  # the server has closed it meanwhile
        assert poster.post("/x", body, {})[0] == 200  # on a new connection, without an error
        assert bodies == [b"head:23456", b"head:23456"]
    finally:
        poster.close()
        f.close()
        listener.close()
        thread.join(5)


def test_a_server_without_the_in_place_protocol_reads_bodies_as_a_stream(tmp_path, monkeypatch):
    """uvicorn's pure-Python h11 protocol (no httptools): the upload route reads request.stream()."""
    from _servers import serve_in_thread

    from modelkeep.registry.embedded import EmbeddedRegistry
    from modelkeep.server.app import create_app
    from modelkeep.server.routes import chunks
    from modelkeep.server.settings import ServerSettings

    streamed: list[int] = []
    fill = chunks._fill

    async def counting_fill(request, limit, out):  # type: ignore[no-untyped-def]
        streamed.append(len(out))
        return await fill(request, limit, out)

    monkeypatch.setattr(chunks, "_fill", counting_fill)

    db = f"sqlite:///{tmp_path / 'r.db'}"
    registry = EmbeddedRegistry(db, f"file://{tmp_path / 'store'}", "server")
    try:
        app = create_app(registry, ServerSettings(db_url=db, auth=False))
        with serve_in_thread(app, http="h11") as url:
            http = Http(url)
            try:
                src = _blob(tmp_path / "src")
                r = transfer.upload(http, src, "team/h11", batch_bytes=1_000_000)
                assert r.sent_bytes == 5_000_000 and sum(streamed) == r.wire_bytes
                transfer.download(http, "team/h11@latest", tmp_path / "out")
            finally:
                http.close()
        assert (tmp_path / "out" / "blob.bin").read_bytes() == (src / "blob.bin").read_bytes()
    finally:
        registry.close()
