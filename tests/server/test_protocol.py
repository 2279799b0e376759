"""The server's HTTP protocol hands request body pieces on without copying them, and loses none."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

pytest.importorskip("uvicorn")

from modelkeep.server.protocol import http_protocol, on_body  # noqa: E402


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

    cls = http_protocol()
    assert issubclass(cls, HttpToolsProtocol) and cls.on_body is not HttpToolsProtocol.on_body
