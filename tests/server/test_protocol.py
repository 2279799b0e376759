"""The server's HTTP protocol hands request body pieces on without copying them, and loses none."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("uvicorn")

from modelkeep.server.protocol import ClientGone, http_protocol, on_body, receive_into  # noqa: E402


class _Flow:
    def __init__(self) -> None:
        self.paused = 0

    def pause_reading(self) -> None:
        self.paused += 1


def _protocol(complete: bool = False) -> SimpleNamespace:
    cycle = SimpleNamespace(body=bytearray(), response_complete=complete, message_event=asyncio.Event())
    parser = SimpleNamespace(should_upgrade=lambda: False)
    return SimpleNamespace(parser=parser, _should_upgrade=lambda: False, cycle=cycle, flow=_Flow())


def test_a_piece_nobody_waits_for_is_handed_on_as_it_is():
    p = _protocol()
    piece = b"x" * 100
    on_body(p, piece, high_water=1000)
    assert p.cycle.body is piece  # no copy
    assert bytes(p.cycle.body) is piece  # what uvicorn's receive() hands the application
    assert p.cycle.message_event.is_set() and p.flow.paused == 0


def test_pieces_that_arrive_before_the_application_reads_are_joined_in_order():
    p = _protocol()
    for part in (b"ab", b"cd", b"ef"):
        on_body(p, part, high_water=3)
    assert bytes(p.cycle.body) == b"abcdef"
    assert p.flow.paused == 2  # above the high-water mark: reading pauses, as uvicorn does


def test_a_finished_response_takes_no_more_body():
    p = _protocol(complete=True)
    on_body(p, b"late", high_water=1000)
    assert p.cycle.body == bytearray() and not p.cycle.message_event.is_set()


def test_the_protocol_is_httptools_when_installed():
    pytest.importorskip("httptools")
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    make = http_protocol()
    assert issubclass(make.protocol, HttpToolsProtocol) and make.protocol.on_body is not HttpToolsProtocol.on_body


# -- bodies received in place, through a real server -------------------------------------


class _Digests:
    """An ASGI app answering each POST with the SHA-256 of its body, received with receive_into."""

    def __init__(self) -> None:
        self.gone: list[BaseException] = []
        self.in_place = 0

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        from starlette.requests import Request

        length = int(dict(scope["headers"]).get(b"content-length", b"0"))
        out = memoryview(bytearray(length))
        try:
            got = await receive_into(Request(scope, receive), out)
        except ClientGone as exc:
            self.gone.append(exc)
            return
        assert got is not None
        self.in_place += 1
        answer = f"{len(got)} {hashlib.sha256(got).hexdigest()}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


def _answer(reader) -> bytes:  # type: ignore[no-untyped-def]
    """The body of the next answer on ``reader`` (the socket's file), which must be a 200."""
    status = reader.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    length = 0
    while (line := reader.readline()) != b"\r\n":
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return reader.read(length)


def _post_head(length: int, extra: str = "") -> bytes:
    return f"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


@pytest.fixture
def digests():  # type: ignore[no-untyped-def]
    pytest.importorskip("httptools")
    from _servers import serve_in_thread

    app = _Digests()
    with serve_in_thread(app) as url:
        yield app, int(url.rsplit(":", 1)[1])


def test_bodies_received_in_place_arrive_whole_and_the_connection_goes_on(digests):  # type: ignore[no-untyped-def]
    app, port = digests
    big = os.urandom(5_000_000)
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as reader:
        # the head with the body's first bytes (taken by the parser), the rest in pieces, with pauses
        sock.sendall(_post_head(len(big)) + big[:1000])
        time.sleep(0.05)
        for at in range(1000, len(big), 700_000):
            sock.sendall(big[at : at + 700_000])
            time.sleep(0.01)
        assert _answer(reader) == f"{len(big)} {hashlib.sha256(big).hexdigest()}".encode()
        # a small body in the same packet as its head, then a second request right behind a body
        small = b"tiny body"
        sock.sendall(_post_head(len(small)) + small + _post_head(3) + b"abc")
        assert _answer(reader) == f"{len(small)} {hashlib.sha256(small).hexdigest()}".encode()
        assert _answer(reader) == f"3 {hashlib.sha256(b'abc').hexdigest()}".encode()
        # a client that waits for 100 Continue before its body
        sock.sendall(_post_head(len(big), "Expect: 100-continue\r\n"))
        assert reader.readline().startswith(b"HTTP/1.1 100") and reader.readline() == b"\r\n"
        sock.sendall(big)
        assert _answer(reader) == f"{len(big)} {hashlib.sha256(big).hexdigest()}".encode()
    assert app.in_place == 4 and not app.gone


def test_a_client_gone_mid_body_is_told_to_the_route_and_others_are_served(digests):  # type: ignore[no-untyped-def]
    app, port = digests
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(_post_head(1_000_000) + b"x" * 300_000)
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while not app.gone and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(app.gone) == 1
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as reader:
        sock.sendall(_post_head(5) + b"hello")
        assert _answer(reader) == f"5 {hashlib.sha256(b'hello').hexdigest()}".encode()
